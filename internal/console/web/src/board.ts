// The board: every order event as it is stored (WatchOrders), one column
// per status. It keeps its position (the resume position of the last
// response it handled) in sessionStorage, so pausing, leaving the page,
// reloading the tab or a restart of ordersd all resume after it: nothing
// is missed and nothing shown twice. Memory and DOM are bounded (the last
// cardsPerColumn orders per column), and the DOM changes at most once per
// animation frame however fast events come (the cards at most every
// cardIntervalMs).

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderStatus, type OrderEvent, type WatchOrdersRequestSchema } from "../../../../clients/typescript/src/index.js";
import { h, replace } from "./dom.js";
import { orders, problem } from "./api.js";
import { money, statusName, statuses } from "./format.js";
import { problemBox } from "./problem.js";

/** cardsPerColumn bounds the DOM: older orders leave their column (they stay counted). */
export const cardsPerColumn = 20;
/** cardIntervalMs is the shortest time between two redraws of the cards. */
const cardIntervalMs = 100;
/** heartbeatSeconds is the watch's heartbeat; a stream silent for three of them is taken for dead. */
const heartbeatSeconds = 5;
/** delaySamples bounds the storage-to-screen delays kept for p50/p99. */
const delaySamples = 2048;
const positionKey = "ordersd.console.board";

/** Saved is what survives a reload of the tab. */
interface Saved {
  /** The resume position of the last response handled; "" before the first. */
  position: string;
  /** The last sequence shown, for the status line; "" before the first event. */
  last: string;
  /** When the board began watching, in ms, for a watch that saw no event yet; 0 before it began. */
  since: number;
  paused: boolean;
  customer: string;
  /** Replay every stored event first. */
  replay: boolean;
}

function load(): Saved {
  try {
    const s = JSON.parse(sessionStorage.getItem(positionKey) ?? "");
    if (typeof s.position === "string" && typeof s.last === "string" && typeof s.since === "number") return s;
  } catch {
    // none saved, or unreadable: start afresh
  }
  return { position: "", last: "", since: 0, paused: false, customer: "", replay: false };
}

/** Column is one status's list of cards. */
interface Column {
  status: OrderStatus;
  count: number;
  list: HTMLOListElement;
  countEl: HTMLElement;
  rateEl: HTMLElement;
  /** Events of this status in the current and previous second. */
  now: number;
  prev: number;
}

/** Stats are the board's own figures, shown on it (and read by the console's benchmark). */
export interface BoardStats {
  events: number;
  last: string;
  rate: number;
  delayP50: number;
  delayP99: number;
  frames: number;
  reconnects: number;
}

class Board {
  saved = load();
  columns = new Map<OrderStatus, Column>();
  /** The card of each order on the board: at most one, in the column of its latest status. */
  cards = new Map<string, { el: HTMLLIElement; status: OrderStatus }>();
  pending: OrderEvent[] = [];
  /** Orders changed since the cards were last drawn: their latest event. */
  changed = new Map<string, OrderEvent>();
  cardsAt = 0;
  frame = 0;
  events = 0;
  frames = 0;
  reconnects = 0;
  delays = new Float64Array(delaySamples);
  delayCount = 0;
  second = Math.floor(Date.now() / 1000);
  rate = 0;
  rateNow = 0;
  abort: AbortController | undefined;
  root: HTMLElement | undefined;
  statusEl = h("p", { class: "board-status", role: "status", "aria-live": "polite" });
  figuresEl = h("p", { class: "board-figures" });
  problemEl = h("div");
  pauseButton = h("button", { type: "button", id: "board-pause", onclick: () => (this.saved.paused ? this.resume() : this.pause()) });
  grid = h("div", { class: "board" });

  constructor() {
    for (const s of statuses) {
      const countEl = h("span", { class: "count" }, "0");
      const rateEl = h("span", { class: "rate" }, "0/s");
      const id = `col-${statusName(s).toLowerCase()}`;
      const list = h("ol", { class: "cards", "aria-labelledby": id });
      const section = h(
        "section",
        { class: "column", "data-status": statusName(s) },
        h("h2", { id }, statusName(s), " ", countEl, h("span", { class: "visually-hidden" }, " events"), " ", rateEl),
        list,
      );
      this.grid.append(section);
      this.columns.set(s, { status: s, count: 0, list, countEl, rateEl, now: 0, prev: 0 });
    }
  }

  /**
   * mount shows the board in root. An address may set its filter:
   * #/board?customer=alice watches one customer, #/board?from=start
   * replays every stored event first; without them the board goes on
   * from where it was.
   */
  mount(root: HTMLElement, params: URLSearchParams): () => void {
    this.root = root;
    const wantCustomer = params.get("customer");
    const wantReplay = params.get("from") === "start";
    if ((wantCustomer !== null && wantCustomer !== this.saved.customer) || (wantReplay && !this.saved.replay)) {
      this.reset({ customer: wantCustomer ?? this.saved.customer, replay: wantReplay });
    }
    const customer = h("input", { id: "board-customer", name: "customer", value: this.saved.customer, placeholder: "all customers", autocomplete: "off" });
    const filter = h(
      "form",
      {
        class: "controls",
        onsubmit: (e: Event) => {
          e.preventDefault();
          this.restart({ customer: customer.value.trim(), replay: false });
        },
      },
      h("label", { for: "board-customer" }, "Customer"),
      customer,
      h("button", { type: "submit" }, "Filter"),
      this.pauseButton,
      h("button", { type: "button", onclick: () => this.restart({ customer: customer.value.trim(), replay: true }) }, "Replay from the start"),
    );
    replace(root, h("h1", { tabindex: -1 }, "Board"), filter, this.statusEl, this.figuresEl, this.problemEl, this.grid);
    this.showPause();
    if (!this.saved.paused) void this.watch();
    else this.showStatus();
    const tick = setInterval(() => this.showFigures(), 1000);
    return () => {
      clearInterval(tick);
      this.stop();
      this.root = undefined;
    };
  }

  /** restart clears the board and watches anew with other settings. */
  restart(o: { customer: string; replay: boolean }): void {
    this.reset(o);
    // The address says what the board shows (without a hashchange, which would mount it again).
    const q = new URLSearchParams();
    if (o.customer) q.set("customer", o.customer);
    if (o.replay) q.set("from", "start");
    history.replaceState(null, "", q.size ? `#/board?${q}` : "#/board");
    this.showPause();
    void this.watch();
  }

  /** reset stops the watch and clears the board for other settings. */
  reset(o: { customer: string; replay: boolean }): void {
    this.stop();
    this.saved = { position: "", last: "", since: 0, paused: false, customer: o.customer, replay: o.replay };
    this.save();
    this.pending = [];
    this.changed.clear();
    this.events = 0;
    for (const c of this.columns.values()) {
      c.count = c.now = c.prev = 0;
      replace(c.list);
      replace(c.countEl, "0");
    }
    this.cards.clear();
  }

  pause(): void {
    this.stop();
    this.flush(); // what arrived is shown; the position is that of the last one
    this.saved.paused = true;
    this.save();
    this.showPause();
    this.showStatus();
  }

  resume(): void {
    this.saved.paused = false;
    this.save();
    this.showPause();
    void this.watch();
  }

  stop(): void {
    this.abort?.abort();
    this.abort = undefined;
  }

  save(): void {
    sessionStorage.setItem(positionKey, JSON.stringify(this.saved));
  }

  /** request asks for what follows the last response handled. */
  request(): MessageInitShape<typeof WatchOrdersRequestSchema> {
    const req: MessageInitShape<typeof WatchOrdersRequestSchema> = {
      customerId: this.saved.customer,
      heartbeatInterval: { seconds: BigInt(heartbeatSeconds) },
    };
    if (this.saved.position) req.start = { case: "resumeAfter", value: this.saved.position };
    else if (this.saved.replay) req.start = { case: "replayAll", value: true };
    else req.start = { case: "startTime", value: timestampFromMs(this.saved.since) };
    return req;
  }

  /** watch reads the stream until stopped, reconnecting after each failure with a growing pause. */
  async watch(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    if (!this.saved.since) {
      this.saved.since = Date.now();
      this.save();
    }
    let pauseMs = 250;
    let connecting = true;
    this.showStatus("connecting");
    while (!abort.signal.aborted) {
      const alive = new AbortController();
      const onAbort = () => alive.abort();
      abort.signal.addEventListener("abort", onAbort);
      let silence = setTimeout(() => alive.abort(), 3 * heartbeatSeconds * 1000);
      try {
        for await (const res of orders.watchOrders(this.request(), { signal: alive.signal })) {
          clearTimeout(silence);
          silence = setTimeout(() => alive.abort(), 3 * heartbeatSeconds * 1000);
          if (connecting) {
            connecting = false;
            pauseMs = 250;
            replace(this.problemEl);
            this.showStatus("live");
          }
          if (res.event) this.receive(res.event);
          else if (res.caughtUp) this.showStatus("live");
          // Every response moves the position on (heartbeats too); a
          // reconnect asks for what follows it.
          if (res.resumePosition) this.saved.position = res.resumePosition;
        }
        throw new ConnectError("the stream ended", Code.Unavailable);
      } catch (err) {
        if (abort.signal.aborted) break;
        const p = problem(err);
        replace(this.problemEl, problemBox(err));
        if (p.code === Code.Unauthenticated || p.code === Code.PermissionDenied || p.code === Code.InvalidArgument) {
          this.showStatus("stopped");
          break; // another try would fail the same way
        }
        connecting = true;
        this.reconnects++;
        this.showStatus(`reconnecting in ${(pauseMs / 1000).toFixed(1)} s`);
        await new Promise((r) => setTimeout(r, pauseMs));
        pauseMs = Math.min(pauseMs * 2, 5000);
      } finally {
        clearTimeout(silence);
        abort.signal.removeEventListener("abort", onAbort);
      }
    }
  }

  receive(ev: OrderEvent): void {
    // The screen catches up at the next frame.
    this.saved.last = ev.sequence.toString();
    this.pending.push(ev);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** flush puts the pending events on the screen: one DOM update per frame. */
  flush(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    const batch = this.pending;
    this.pending = [];
    const nowMs = Date.now();
    this.roll(Math.floor(nowMs / 1000));
    for (const ev of batch) {
      const o = ev.order;
      if (!o) continue;
      const c = this.columns.get(o.status);
      if (c) {
        c.count++;
        c.now++;
      }
      this.events++;
      this.rateNow++;
      // The latest event of each order, in the order of their latest change.
      this.changed.delete(o.orderId);
      this.changed.set(o.orderId, ev);
    }
    if (batch.length) {
      this.frames++;
      for (const c of this.columns.values()) c.countEl.textContent = String(c.count);
      this.save();
    }
    if (this.changed.size === 0) return;
    // Counts change every frame; cards at most every cardIntervalMs (no one
    // reads cards replaced 60 times a second, and each costs layout and
    // paint). Until then the next frame looks again.
    if (nowMs - this.cardsAt < cardIntervalMs && !this.saved.paused) {
      this.frame = requestAnimationFrame(() => this.flush());
      return;
    }
    this.cardsAt = nowMs;
    const changed = [...this.changed.values()];
    this.changed.clear();
    // Only the newest cardsPerColumn of each column get a card.
    const shown = new Map<OrderStatus, OrderEvent[]>();
    for (let i = changed.length - 1; i >= 0; i--) {
      const ev = changed[i];
      const list = shown.get(ev.order!.status) ?? [];
      if (list.length < cardsPerColumn) {
        list.push(ev);
        shown.set(ev.order!.status, list);
      }
    }
    for (const ev of changed) {
      const id = ev.order!.orderId;
      this.cards.get(id)?.el.remove();
      this.cards.delete(id);
      // Storage to screen: the event is now wholly shown (count and card).
      if (ev.publishTime) this.delays[this.delayCount++ % delaySamples] = nowMs - timestampMs(ev.publishTime);
    }
    for (const [status, evs] of shown) {
      const c = this.columns.get(status);
      if (!c) continue;
      const frag = document.createDocumentFragment();
      for (const ev of evs) {
        const el = card(ev);
        this.cards.set(ev.order!.orderId, { el, status });
        frag.append(el); // newest first
      }
      c.list.prepend(frag);
      while (c.list.children.length > cardsPerColumn) {
        const last = c.list.lastElementChild as HTMLLIElement;
        this.cards.delete(last.dataset.order ?? "");
        last.remove();
      }
    }
  }

  /** roll moves the per-second counters on to second sec. */
  roll(sec: number): void {
    if (sec === this.second) return;
    const gap = sec - this.second;
    this.second = sec;
    this.rate = gap === 1 ? this.rateNow : 0;
    this.rateNow = 0;
    for (const c of this.columns.values()) {
      c.prev = gap === 1 ? c.now : 0;
      c.now = 0;
      c.rateEl.textContent = `${c.prev}/s`;
    }
  }

  stats(): BoardStats {
    const [p50, p99] = percentiles(this.delays.subarray(0, Math.min(this.delayCount, delaySamples)), [0.5, 0.99]);
    return { events: this.events, last: this.saved.last, rate: this.rate, delayP50: p50, delayP99: p99, frames: this.frames, reconnects: this.reconnects };
  }

  showFigures(): void {
    this.roll(Math.floor(Date.now() / 1000));
    const s = this.stats();
    replace(
      this.figuresEl,
      `${s.events} events shown · ${s.rate} events/s · storage to screen p50 ${fmtMs(s.delayP50)}, p99 ${fmtMs(s.delayP99)}`,
    );
  }

  showPause(): void {
    this.pauseButton.textContent = this.saved.paused ? "Resume" : "Pause";
    this.pauseButton.setAttribute("aria-pressed", String(this.saved.paused));
  }

  showStatus(state?: string): void {
    const where = this.saved.last ? `last sequence ${this.saved.last}` : this.saved.replay ? "from the first event" : `from ${new Date(this.saved.since).toLocaleTimeString()}`;
    const who = this.saved.customer ? `customer ${this.saved.customer}` : "all customers";
    const text = this.saved.paused ? `Paused at ${where}; Resume goes on from there.` : `${state ?? "live"} · ${who} · ${where}`;
    this.statusEl.dataset.state = this.saved.paused ? "paused" : (state ?? "live").split(" ")[0];
    replace(this.statusEl, text);
  }
}

function card(ev: OrderEvent): HTMLLIElement {
  const o = ev.order!;
  return h(
    "li",
    { class: "card", "data-order": o.orderId, "data-sequence": ev.sequence.toString() },
    h("a", { href: `#/order/${encodeURIComponent(o.orderId)}` }, o.orderId),
    h("span", { class: "meta" }, `${o.customerId} · ${money(o.totalMinor, o.currencyCode)} · #${ev.sequence}`),
  );
}

function percentiles(xs: Float64Array, ps: number[]): number[] {
  if (xs.length === 0) return ps.map(() => NaN);
  const sorted = Float64Array.from(xs).sort();
  return ps.map((p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]);
}

function fmtMs(ms: number): string {
  return Number.isNaN(ms) ? "—" : `${Math.round(ms)} ms`;
}

/** board is the one board of the tab: it keeps its columns while other pages are open. */
export const board = new Board();
