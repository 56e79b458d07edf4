// The console's connection to ordersd: the same origin's HTTP port, over
// the Connect protocol (binary Protobuf; server streams over fetch), with
// the tab's bearer token when one is set.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { OrderService, QueueService } from "../../../../clients/typescript/src/index.js";

/** tokenKey is where the bearer token is kept: sessionStorage, so it lasts as long as the tab. */
const tokenKey = "ordersd.console.token";

export function token(): string {
  return sessionStorage.getItem(tokenKey) ?? "";
}

export function setToken(t: string): void {
  if (t) sessionStorage.setItem(tokenKey, t);
  else sessionStorage.removeItem(tokenKey);
  for (const f of tokenListeners) f();
}

const tokenListeners: (() => void)[] = [];

/** onTokenChange calls f whenever the token is set or cleared. */
export function onTokenChange(f: () => void): void {
  tokenListeners.push(f);
}

const bearer: Interceptor = (next) => (req) => {
  const t = token();
  if (t) req.header.set("Authorization", `Bearer ${t}`);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

export const orders = createClient(OrderService, transport);
export const queues = createClient(QueueService, transport);

/** callTimeoutMs bounds every unary call, so a stalled node shows as an error, not a spinner forever. */
export const callTimeoutMs = 10_000;

/** Problem is a failed call, as the page shows it. */
export interface Problem {
  code: Code;
  /** The API's own message. */
  message: string;
  /** How the console sums it up for this code: "Not allowed", "Order changed", … */
  title: string;
}

/** problem turns any error of a call into the API's code and message. */
export function problem(err: unknown): Problem {
  const e = ConnectError.from(err);
  const message = e.rawMessage || Code[e.code] || "unknown error";
  return { code: e.code, message, title: titles[e.code] ?? codeName(e.code) };
}

/** codeName is a status code as gRPC spells it: PERMISSION_DENIED. */
export function codeName(c: Code): string {
  return (Code[c] ?? String(c)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

const titles: Partial<Record<Code, string>> = {
  [Code.Unauthenticated]: "Sign-in needed (UNAUTHENTICATED)",
  [Code.PermissionDenied]: "Not allowed (PERMISSION_DENIED)",
  [Code.Aborted]: "The order changed (ABORTED)",
  [Code.FailedPrecondition]: "Not possible now (FAILED_PRECONDITION)",
  [Code.InvalidArgument]: "Invalid input (INVALID_ARGUMENT)",
  [Code.NotFound]: "Not found (NOT_FOUND)",
  [Code.Unavailable]: "ordersd is unavailable (UNAVAILABLE)",
  [Code.DeadlineExceeded]: "No answer in time (DEADLINE_EXCEEDED)",
  [Code.ResourceExhausted]: "Too busy (RESOURCE_EXHAUSTED)",
};

/** requestId makes an idempotency key (AIP-155) for one action, safe to retry. */
export function requestId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return "console-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** HealthStatus is one answer of grpc.health.v1.Health/Check. */
export interface HealthStatus {
  status: string;
  /** How long the check took, in milliseconds. */
  latencyMs: number;
}

/**
 * checkHealth asks grpc.health.v1.Health/Check about service ("" for the
 * node as a whole) in Connect's JSON form: the health service is public by
 * default with authentication on, and the TypeScript client does not
 * generate it.
 */
export async function checkHealth(service: string, signal?: AbortSignal): Promise<HealthStatus> {
  const began = performance.now();
  const headers: Record<string, string> = { "Content-Type": "application/json", "Connect-Protocol-Version": "1", "Connect-Timeout-Ms": String(callTimeoutMs) };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const res = await fetch("/grpc.health.v1.Health/Check", { method: "POST", headers, body: JSON.stringify({ service }), signal });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new ConnectError(body.message ?? `HTTP ${res.status}`, codeFromConnect(body.code));
  }
  return { status: body.status ?? "UNKNOWN", latencyMs: performance.now() - began };
}

function codeFromConnect(name: string | undefined): Code {
  const key = (name ?? "unknown").replace(/(^|_)([a-z])/g, (_, _u, c: string) => c.toUpperCase());
  return (Code as unknown as Record<string, Code>)[key] ?? Code.Unknown;
}
