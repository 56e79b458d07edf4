// Queues: the QueueService's durable consumers with their backlog,
// refreshed every refreshMs while the page is open; settings can be
// changed and a consumer deleted (after a confirmation). The reserved
// order-review is shown as such: ordersd's flags set it, and it cannot be
// changed or deleted here.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DurationSchema, FieldMaskSchema, type Duration } from "@bufbuild/protobuf/wkt";
import { type Consumer, type UpdateConsumerRequestSchema } from "../../../../clients/typescript/src/index.js";
import { h, replace, stackable } from "./dom.js";
import { callTimeoutMs, queues } from "./api.js";
import { ago, seconds, statusName } from "./format.js";
import { problemBox } from "./problem.js";

const refreshMs = 2000;

export function mountQueues(root: HTMLElement): () => void {
  const abort = new AbortController();
  const table = h("div", { id: "queues" }, "Loading…");
  const editor = h("div", { id: "queue-editor" });
  const updated = h("p", { class: "meta", "aria-live": "off" });
  replace(root, h("h1", { tabindex: -1 }, "Queues"), updated, table, editor);
  let timer = 0;
  /** While a form is open, refreshing would throw away what is being typed: it waits. */
  let editing = false;

  const refresh = async () => {
    clearTimeout(timer);
    try {
      const { consumers } = await queues.listConsumers({}, { signal: abort.signal, timeoutMs: callTimeoutMs });
      if (!editing) replace(table, consumerTable(consumers, edit, confirmDelete));
      replace(updated, `Refreshed ${new Date().toLocaleTimeString()}, every ${refreshMs / 1000} s.`);
    } catch (err) {
      if (abort.signal.aborted) return;
      replace(table, problemBox(err));
    }
    if (!abort.signal.aborted) timer = window.setTimeout(refresh, refreshMs);
  };

  const close = () => {
    editing = false;
    replace(editor);
    void refresh();
  };

  const edit = (c: Consumer) => {
    editing = true;
    replace(editor, settingsForm(c, close));
    editor.querySelector("input")?.focus();
  };

  const confirmDelete = (c: Consumer) => {
    editing = true;
    const result = h("div");
    const yes = h(
      "button",
      {
        type: "button",
        class: "danger",
        id: "confirm-delete",
        onclick: async () => {
          yes.disabled = true;
          try {
            await queues.deleteConsumer({ consumer: c.name }, { timeoutMs: callTimeoutMs });
            close();
          } catch (err) {
            replace(result, problemBox(err));
            yes.disabled = false;
          }
        },
      },
      `Delete ${c.name}`,
    );
    replace(
      editor,
      h(
        "section",
        { class: "confirm", role: "alertdialog", "aria-labelledby": "confirm-h", "aria-describedby": "confirm-d" },
        h("h2", { id: "confirm-h" }, `Delete the consumer ${c.name}?`),
        h("p", { id: "confirm-d" }, "Its redrive queue goes with it; events it holds unacknowledged are not delivered to it again. Its dead letters stay until purged. This cannot be undone."),
        yes,
        " ",
        h("button", { type: "button", onclick: close }, "Keep it"),
        result,
      ),
    );
    yes.focus();
  };

  void refresh();
  return () => {
    abort.abort();
    clearTimeout(timer);
  };
}

function consumerTable(consumers: Consumer[], edit: (c: Consumer) => void, remove: (c: Consumer) => void): HTMLElement {
  if (consumers.length === 0) return h("p", {}, "No durable consumers yet: ConsumeOrders creates one on first use.");
  const cols = ["Consumer", "Events", "Pending", "Waiting for ack", "Redelivered", "Readers", "Last delivery", "Last ack", "Dead letters", "Settings", ""];
  return stackable(h(
    "table",
    { class: "queues" },
    h("caption", {}, `${consumers.length} durable consumers of ORDERS`),
    h("thead", {}, h("tr", {}, ...cols.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      ...consumers.map((c) =>
        h(
          "tr",
          { "data-consumer": c.name },
          h("th", { scope: "row" }, c.name, c.reserved && h("span", { class: "badge" }, "reserved"), c.reserved && h("span", { class: "meta reserved-note" }, "the built-in review; its settings come from ordersd's flags")),
          cell("Events", c.statuses.length ? c.statuses.map(statusName).join(", ") : "all"),
          cell("Pending", c.numPending.toString(), "pending"),
          cell("Waiting for ack", c.numAckPending.toString(), "ack-pending"),
          cell("Redelivered", c.numRedelivered.toString(), "redelivered"),
          cell("Readers", c.numWaiting.toString()),
          cell("Last delivery", ago(c.lastDeliveryTime)),
          cell("Last ack", ago(c.lastAckTime)),
          cell("Dead letters", h("a", { href: `#/dead-letters?consumer=${encodeURIComponent(c.name)}` }, c.deadLetterCount.toString(), h("span", { class: "visually-hidden" }, ` dead letters of ${c.name}`)), "dead-letters"),
          cell("Settings", settingsText(c)),
          h(
            "td",
            {},
            c.reserved
              ? h("span", { class: "meta" }, "managed by ordersd")
              : h(
                  "span",
                  { class: "row-actions" },
                  h("button", { type: "button", onclick: () => edit(c), "aria-label": `Edit the settings of ${c.name}` }, "Settings"),
                  " ",
                  h("button", { type: "button", class: "danger", onclick: () => remove(c), "aria-label": `Delete ${c.name}` }, "Delete"),
                ),
          ),
        ),
      ),
    ),
  ));
}

/** cell is a table cell that names its column (read out, and shown when the table is stacked on narrow screens). */
function cell(label: string, content: Node | string, field?: string): HTMLTableCellElement {
  const numeric = typeof content === "string" && /^\d+$/.test(content);
  return h("td", { class: numeric || field === "dead-letters" ? "num" : undefined, "data-label": label, "data-field": field }, content);
}

function settingsText(c: Consumer): string {
  const parts = [c.backoff.length ? `backoff ${c.backoff.map(seconds).join(", ")}` : `ack wait ${seconds(c.ackWait)}`];
  parts.push(c.maxDeliveries ? `${c.maxDeliveries} deliveries` : "no delivery limit");
  if (c.inactiveThreshold) parts.push(`deleted after ${seconds(c.inactiveThreshold)} idle`);
  return parts.join(" · ");
}

/** settingsForm edits the four settings UpdateConsumer takes; only those changed go in update_mask. */
function settingsForm(c: Consumer, close: () => void): HTMLElement {
  const secs = (d: Duration | undefined) => (d ? String(Number(d.seconds) + d.nanos / 1e9) : "");
  const field = (id: string, label: string, value: string, hint: string) => {
    const input = h("input", { id, name: id, value, inputmode: "decimal", autocomplete: "off", "aria-describedby": `${id}-hint` });
    return { input, el: h("p", {}, h("label", { for: id }, label), input, h("span", { class: "meta", id: `${id}-hint` }, hint)) };
  };
  const ackWait = field("ack_wait", "Ack wait (seconds)", c.backoff.length ? "" : secs(c.ackWait), "1 to 43200; empty: the default");
  const maxDeliveries = field("max_deliveries", "Max deliveries", c.maxDeliveries ? String(c.maxDeliveries) : "", "1 to 10000; empty: no limit");
  const backoff = field("backoff", "Backoff (seconds, comma-separated)", c.backoff.map(secs).join(", "), "up to 10 steps; replaces ack wait");
  const inactive = field("inactive_threshold", "Delete after idle (seconds)", secs(c.inactiveThreshold), "empty: never");
  const initial = { ack_wait: ackWait.input.value, max_deliveries: maxDeliveries.input.value, backoff: backoff.input.value, inactive_threshold: inactive.input.value };
  const result = h("div");
  const form = h(
    "form",
    {
      class: "settings",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const req: MessageInitShape<typeof UpdateConsumerRequestSchema> = { consumer: c.name };
        const paths: string[] = [];
        const changed = (k: keyof typeof initial, v: string) => v.trim() !== initial[k].trim() && paths.push(k);
        changed("ack_wait", ackWait.input.value);
        changed("max_deliveries", maxDeliveries.input.value);
        changed("backoff", backoff.input.value);
        changed("inactive_threshold", inactive.input.value);
        if (paths.length === 0) {
          replace(result, h("p", { role: "status" }, "Nothing changed."));
          return;
        }
        req.ackWait = duration(ackWait.input.value);
        req.maxDeliveries = Number(maxDeliveries.input.value || "0");
        req.backoff = backoff.input.value.split(",").map((s) => s.trim()).filter(Boolean).map((s) => duration(s)!);
        req.inactiveThreshold = duration(inactive.input.value);
        req.updateMask = create(FieldMaskSchema, { paths });
        try {
          await queues.updateConsumer(req, { timeoutMs: callTimeoutMs });
          close();
        } catch (err) {
          replace(result, problemBox(err));
        }
      },
    },
    h("h2", {}, `Settings of ${c.name}`),
    ackWait.el,
    maxDeliveries.el,
    backoff.el,
    inactive.el,
    h("button", { type: "submit" }, "Save"),
    " ",
    h("button", { type: "button", onclick: close }, "Close"),
    result,
  );
  return form;
}

/** duration reads seconds ("1.5") as a Duration; undefined when empty. Bad numbers go to the API, which says what is wrong. */
function duration(s: string): Duration | undefined {
  s = s.trim();
  if (!s) return undefined;
  const n = Number(s);
  const whole = Math.trunc(n);
  return create(DurationSchema, { seconds: BigInt(Number.isFinite(whole) ? whole : -1), nanos: Number.isFinite(n) ? Math.round((n - whole) * 1e9) : 0 });
}
