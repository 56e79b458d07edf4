// The client against a real ordersd, over gRPC (--grpc-addr) and over the
// Connect protocol (--http-addr): create, watch, consume and ack, and
// errors with their codes.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

import { AckAction, OrderService, OrderStatus } from "../src/index.js";
import { startOrdersd, type Ordersd } from "./ordersd.js";

let ordersd: Ordersd;
before(async () => {
  ordersd = await startOrdersd();
});
after(async () => {
  await ordersd.stop();
});

const transports: Record<string, () => Transport> = {
  gRPC: () => createGrpcTransport({ baseUrl: ordersd.grpcUrl }),
  Connect: () => createConnectTransport({ baseUrl: ordersd.httpUrl, httpVersion: "1.1" }),
};

for (const [name, transport] of Object.entries(transports)) {
  describe(`over ${name}`, () => {
    let orders: Client<typeof OrderService>;
    before(() => {
      orders = createClient(OrderService, transport());
    });

    test("creates an order, and recognises a retry by its request id", async () => {
      const req = {
        requestId: `ts-create-${name}`,
        customerId: "ts",
        currencyCode: "EUR",
        items: [{ sku: "BOOK-42", quantity: 2n, unitPriceMinor: 1250n }],
      };
      const first = await orders.createOrder(req);
      assert.equal(first.duplicate, false);
      assert.equal(first.order?.status, OrderStatus.CREATED);
      assert.equal(first.order?.totalMinor, 2500n);
      const again = await orders.createOrder(req);
      assert.equal(again.duplicate, true);
      assert.equal(again.order?.orderId, first.order?.orderId);
    });

    test("refuses a bad order id with INVALID_ARGUMENT", async () => {
      await assert.rejects(orders.getOrder({ orderId: "order.1" }), (err: unknown) => {
        assert.equal(ConnectError.from(err).code, Code.InvalidArgument);
        return true;
      });
    });

    test("watches an order: replay, caught up, then the review's approval", async () => {
      const created = await orders.createOrder({
        customerId: "ts", currencyCode: "EUR", items: [{ sku: "S", quantity: 1n, unitPriceMinor: 100n }],
      });
      const orderId = created.order!.orderId;
      const abort = new AbortController();
      const seen: OrderStatus[] = [];
      let caughtUp = false;
      const sequences: bigint[] = [];
      try {
        for await (const res of orders.watchOrders({ orderId, start: { case: "replayAll", value: true } }, { signal: abort.signal })) {
          caughtUp ||= res.caughtUp;
          if (res.event) {
            seen.push(res.event.order!.status);
            sequences.push(res.event.sequence);
          }
          if (caughtUp && seen.length >= 2) break;
        }
      } finally {
        abort.abort();
      }
      assert.deepEqual(seen, [OrderStatus.CREATED, OrderStatus.APPROVED]);
      assert.ok(sequences[0] < sequences[1], `sequences ${sequences} must grow`);
    });

    test("consumes created orders from a durable consumer and acks them", async () => {
      const consumer = `ts-warehouse-${name}`;
      const created = await orders.createOrder({
        customerId: "ts-consume", currencyCode: "EUR", items: [{ sku: "S", quantity: 1n, unitPriceMinor: 100n }],
      });
      const orderId = created.order!.orderId;
      const abort = new AbortController();
      const tokens: string[] = [];
      let found = false;
      try {
        for await (const d of orders.consumeOrders(
          { consumer, statuses: [OrderStatus.CREATED], maxInFlight: 100 },
          { signal: abort.signal },
        )) {
          if (d.heartbeat) continue;
          assert.equal(d.event?.order?.status, OrderStatus.CREATED);
          tokens.push(d.ackToken);
          if (d.event?.order?.orderId === orderId) {
            found = true;
            break;
          }
        }
      } finally {
        abort.abort();
      }
      assert.ok(found, "our order was not delivered");
      const acked = await orders.ackOrders({ acks: tokens.map((ackToken) => ({ ackToken, action: AckAction.ACK })) });
      assert.equal(acked.results.length, tokens.length);
      for (const r of acked.results) assert.ok(r.confirmed, `ack not confirmed: ${r.error}`);

      // Acked: a new session of the consumer does not get our order again.
      const create2 = await orders.createOrder({
        customerId: "ts-consume", currencyCode: "EUR", items: [{ sku: "S", quantity: 1n, unitPriceMinor: 100n }],
      });
      const abort2 = new AbortController();
      try {
        for await (const d of orders.consumeOrders({ consumer, statuses: [OrderStatus.CREATED], maxInFlight: 100 }, { signal: abort2.signal })) {
          if (d.heartbeat) continue;
          assert.notEqual(d.event?.order?.orderId, orderId, "an acked order was delivered again");
          if (d.event?.order?.orderId === create2.order!.orderId) break;
        }
      } finally {
        abort2.abort();
      }
    });
  });
}
