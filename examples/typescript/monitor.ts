// The seed article's monitor as an ordersd client: it watches every order
// event as it is stored and prints each as one line of JSON. When the
// stream breaks (ordersd restarts, a node dies, the network drops) it
// reconnects with start_sequence = last sequence + 1, so it misses
// nothing and prints nothing twice.
//
//   npm ci && npm run monitor -- --url http://127.0.0.1:50051
//
// Flags: --url (ordersd's gRPC port, or its HTTP port with --protocol
// connect), --protocol grpc|connect, --from N (start at sequence N, for
// example the last one a previous run printed + 1; every stored event
// when unset).
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";

import { toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

import { OrderEventSchema, OrderService, type OrderEvent } from "../../clients/typescript/src/index.js";

export interface MonitorOptions {
  transport: Transport;
  /** First sequence to watch; every stored event when undefined. */
  from?: bigint;
  /** Called with each event, in stream order, once. */
  onEvent: (event: OrderEvent) => void;
  /** Called each time the watch has caught up with the live tail. */
  onCaughtUp?: () => void;
  /** Told about each reconnection. */
  onReconnect?: (err: ConnectError, next: bigint | undefined) => void;
  /** Ends the monitor. */
  signal: AbortSignal;
  /** Wait before reconnecting; 1 s by default. */
  retryDelayMs?: number;
}

// Codes after which a new watch from the next sequence can succeed.
const retryable = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Unknown, Code.Internal]);

/**
 * monitor watches every event until signal aborts, reconnecting from the
 * last sequence + 1 after errors that a new attempt can cure; it throws
 * the others (a bad request, a missing permission).
 */
export async function monitor(o: MonitorOptions): Promise<void> {
  const orders = createClient(OrderService, o.transport);
  let next = o.from;
  while (!o.signal.aborted) {
    try {
      const start = next === undefined ? { case: "replayAll" as const, value: true } : { case: "startSequence" as const, value: next };
      for await (const res of orders.watchOrders({ start }, { signal: o.signal })) {
        if (res.event) {
          o.onEvent(res.event);
          next = res.event.sequence + 1n;
        }
        if (res.caughtUp) o.onCaughtUp?.();
      }
    } catch (e) {
      const err = ConnectError.from(e);
      if (o.signal.aborted) return;
      if (!retryable.has(err.code)) throw err;
      o.onReconnect?.(err, next);
    }
    // The stream ended or broke: wait, then resume after the last event.
    await new Promise((resolve) => setTimeout(resolve, o.retryDelayMs ?? 1000));
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: "http://127.0.0.1:50051" },
      protocol: { type: "string", default: "grpc" },
      from: { type: "string" },
    },
  });
  const baseUrl = values.url!;
  let transport: Transport;
  switch (values.protocol) {
    case "grpc":
      transport = createGrpcTransport({ baseUrl });
      break;
    case "connect":
      transport = createConnectTransport({ baseUrl, httpVersion: "1.1" });
      break;
    default:
      throw new Error(`--protocol must be grpc or connect, got ${values.protocol}`);
  }
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  process.once("SIGTERM", () => abort.abort());
  await monitor({
    transport,
    from: values.from === undefined ? undefined : BigInt(values.from),
    signal: abort.signal,
    onEvent: (event) => console.log(toJsonString(OrderEventSchema, event)),
    onCaughtUp: () => console.error("monitor: caught up; live events follow"),
    onReconnect: (err, next) => console.error(`monitor: ${err.message}; resuming at sequence ${next ?? "(replay all)"}`),
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`monitor: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}
