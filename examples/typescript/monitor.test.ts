// The monitor program against a real ordersd: it prints every event once,
// in order, resumes after ordersd restarts without a gap or a repeat, and
// a new run goes on after the checkpoint the last one saved.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { OrderService } from "../../clients/typescript/src/index.js";
import { startOrdersd } from "../../clients/typescript/test/ordersd.js";

for (const protocol of ["grpc", "connect"]) {
  test(`the monitor over ${protocol} sees every event once, across a restart of ordersd`, async (t) => {
    const ordersd = await startOrdersd();
    t.after(() => ordersd.stop());
    const orders = createClient(OrderService, createGrpcTransport({ baseUrl: ordersd.grpcUrl }));
    const createSome = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await orders.createOrder({ customerId: "m", currencyCode: "EUR", items: [{ sku: "S", quantity: 1n, unitPriceMinor: 100n }] });
      }
    };
    await createSome(2); // stored before the monitor starts: replayed

    const url = protocol === "grpc" ? ordersd.grpcUrl : ordersd.httpUrl;
    const program = fileURLToPath(new URL("./monitor.js", import.meta.url));
    const checkpoint = join(mkdtempSync(join(tmpdir(), "monitor-")), "monitor.pos");
    const sequences: bigint[] = [];
    const statuses: string[] = [];
    let waiter: { n: number; resolve: () => void } | undefined;
    const run = () => {
      const child = spawn(process.execPath, [program, "--url", url, "--protocol", protocol, "--checkpoint", checkpoint], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      t.after(() => child.kill("SIGTERM"));
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const ev = JSON.parse(line);
        sequences.push(BigInt(ev.sequence));
        statuses.push(ev.order.status);
        if (waiter && sequences.length >= waiter.n) waiter.resolve();
      });
      return child;
    };
    const child = run();
    const printed = (n: number) =>
      new Promise<void>((resolve, reject) => {
        if (sequences.length >= n) return resolve();
        const timer = setTimeout(() => reject(new Error(`printed ${sequences.length} events, want ${n}`)), 30_000);
        waiter = { n, resolve: () => { clearTimeout(timer); resolve(); } };
      });

    // Each order is created, then approved by the review worker: two events.
    await printed(4);
    await createSome(1);
    await printed(6);
    await ordersd.restart();
    await createSome(2);
    await printed(10);
    await new Promise((r) => setTimeout(r, 300)); // nothing more must come
    assert.deepEqual(sequences, Array.from({ length: 10 }, (_, i) => BigInt(i + 1)), "sequences must be 1..10, once each");
    assert.equal(statuses.filter((s) => s === "ORDER_STATUS_CREATED").length, 5);
    assert.equal(statuses.filter((s) => s === "ORDER_STATUS_APPROVED").length, 5);

    // Stopped, then run again: it goes on after its checkpoint.
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
    await createSome(1);
    run();
    await printed(12);
    await new Promise((r) => setTimeout(r, 300)); // nothing more must come
    assert.deepEqual(sequences, Array.from({ length: 12 }, (_, i) => BigInt(i + 1)), "after the checkpoint: 11 and 12, once each");
  });
}
