// The seed article's monitor as an ordersd client: it watches every order
// event as it is stored and prints each as one line of JSON. When the
// stream breaks (ordersd restarts, a node dies, the network drops) it
// reconnects after the resume_position of the last response it handled,
// so it misses nothing and prints nothing twice.
//
//   npm ci && npm run monitor -- --url http://127.0.0.1:50051 --checkpoint monitor.pos
//
// Flags: --url (ordersd's gRPC port, or its HTTP port with --protocol
// connect), --protocol grpc|connect, --checkpoint FILE (save the resume
// position there after each event printed, and start after the one saved
// by a previous run; every stored event when there is none).
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";

import { toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

import { OrderEventSchema, OrderService, type OrderEvent } from "../../clients/typescript/src/index.js";

export interface MonitorOptions {
  transport: Transport;
  /** A saved resume position to go on after; every stored event when undefined. */
  resumeAfter?: string;
  /** Called with each event, in stream order, once. */
  onEvent: (event: OrderEvent) => void;
  /**
   * Called after each response handled with the resume position after it:
   * the checkpoint to save, and to pass back as resumeAfter.
   */
  onPosition?: (position: string) => void;
  /** Called each time the watch has caught up with the live tail. */
  onCaughtUp?: () => void;
  /** Told about each reconnection. */
  onReconnect?: (err: ConnectError, resumeAfter: string | undefined) => void;
  /** Ends the monitor. */
  signal: AbortSignal;
  /** Wait before reconnecting; 1 s by default. */
  retryDelayMs?: number;
}

// Codes after which a new watch after the last position can succeed (a
// refused position is INVALID_ARGUMENT: thrown, never a start afresh).
const retryable = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Unknown, Code.Internal]);

/**
 * monitor watches every event until signal aborts, reconnecting after the
 * resume position of the last response after errors that a new attempt
 * can cure; it throws the others (a bad request, a refused position, a
 * missing permission).
 */
export async function monitor(o: MonitorOptions): Promise<void> {
  const orders = createClient(OrderService, o.transport);
  let position = o.resumeAfter;
  while (!o.signal.aborted) {
    try {
      const start =
        position === undefined ? { case: "replayAll" as const, value: true } : { case: "resumeAfter" as const, value: position };
      for await (const res of orders.watchOrders({ start }, { signal: o.signal })) {
        if (res.event) o.onEvent(res.event);
        if (res.caughtUp) o.onCaughtUp?.();
        // Every response carries one, heartbeats and skip notices too.
        if (res.resumePosition !== "") {
          position = res.resumePosition;
          o.onPosition?.(position);
        }
      }
    } catch (e) {
      const err = ConnectError.from(e);
      if (o.signal.aborted) return;
      if (!retryable.has(err.code)) throw err;
      o.onReconnect?.(err, position);
    }
    // The stream ended or broke: wait, then resume after the last response.
    await new Promise((resolve) => setTimeout(resolve, o.retryDelayMs ?? 1000));
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: "http://127.0.0.1:50051" },
      protocol: { type: "string", default: "grpc" },
      checkpoint: { type: "string" },
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
  const checkpoint = values.checkpoint;
  const saved = checkpoint !== undefined && existsSync(checkpoint) ? readFileSync(checkpoint, "utf8").trim() : "";
  await monitor({
    transport,
    resumeAfter: saved === "" ? undefined : saved,
    signal: abort.signal,
    onEvent: (event) => console.log(toJsonString(OrderEventSchema, event)),
    // Saved after the event is printed, and replaced whole (write, then
    // rename), so a crash leaves the old checkpoint or the new one.
    onPosition: (position) => {
      if (checkpoint === undefined) return;
      writeFileSync(checkpoint + ".tmp", position);
      renameSync(checkpoint + ".tmp", checkpoint);
    },
    onCaughtUp: () => console.error("monitor: caught up; live events follow"),
    onReconnect: (err, resumeAfter) => console.error(`monitor: ${err.message}; resuming after ${resumeAfter ?? "(replay all)"}`),
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`monitor: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}
