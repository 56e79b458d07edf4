// How the console writes statuses, money, times and durations.

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { DeadLetterReason, OrderStatus } from "../../../../clients/typescript/src/index.js";

/** The statuses in their life-cycle order: the board's columns. */
export const statuses: readonly OrderStatus[] = [
  OrderStatus.CREATED,
  OrderStatus.APPROVED,
  OrderStatus.PAID,
  OrderStatus.SHIPPED,
  OrderStatus.REJECTED,
  OrderStatus.CANCELLED,
];

/** statusName is the status as the API names it, without its prefix: "CREATED". */
export function statusName(s: OrderStatus): string {
  return OrderStatus[s] ?? `status ${s}`;
}

/** reasonName describes why a consumer gave up on an event. */
export function reasonName(r: DeadLetterReason): string {
  switch (r) {
    case DeadLetterReason.MAX_DELIVERIES:
      return "out of delivery attempts";
    case DeadLetterReason.TERMINATED:
      return "terminated by a client";
    default:
      return DeadLetterReason[r] ?? `reason ${r}`;
  }
}

const moneyFormats = new Map<string, Intl.NumberFormat>();

/** money writes an amount in minor units of an ISO 4217 currency. */
export function money(minor: bigint, currency: string): string {
  let f = moneyFormats.get(currency);
  if (!f) {
    try {
      f = new Intl.NumberFormat(undefined, { style: "currency", currency });
    } catch {
      return `${minor} ${currency} (minor units)`;
    }
    moneyFormats.set(currency, f);
  }
  const digits = f.resolvedOptions().maximumFractionDigits ?? 2;
  return f.format(Number(minor) / 10 ** digits);
}

/** time writes a timestamp in the browser's locale and time zone; "—" when unset. */
export function time(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toLocaleString() : "—";
}

/** seconds writes a protobuf Duration's seconds: "30s"; "—" when unset. */
export function seconds(d: { seconds: bigint; nanos: number } | undefined): string {
  if (!d) return "—";
  const s = Number(d.seconds) + d.nanos / 1e9;
  return `${s}s`;
}

/** ago writes how long before now a timestamp was: "3s ago"; "never" when unset. */
export function ago(ts: Timestamp | undefined, now = Date.now()): string {
  if (!ts) return "never";
  const s = Math.max(0, Math.round((now - timestampDate(ts).getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return timestampDate(ts).toLocaleString();
}
