// One order: its state, lines and totals, its history (GetOrderHistory)
// as a timeline, and the transitions its status allows, each sent with
// the revision shown (expected_revision), so a change made meanwhile
// fails with ABORTED instead of being overwritten.

import { Code, ConnectError } from "@connectrpc/connect";
import { OrderStatus, type Order, type OrderEvent } from "../../../../clients/typescript/src/index.js";
import { h, replace } from "./dom.js";
import { callTimeoutMs, orders, requestId } from "./api.js";
import { money, statusName, time } from "./format.js";
import { problemBox } from "./problem.js";

/** Action is one transition the page offers. */
interface Action {
  label: string;
  /** A reason field: required for reject, optional for cancel. */
  reason?: "required" | "optional";
  send(o: Order, reason: string): Promise<unknown>;
}

/** actions are the legal transitions from each status (as the API's state machine has them). */
function actions(s: OrderStatus): Action[] {
  const base = (o: Order) => ({ orderId: o.orderId, expectedRevision: o.revision, requestId: requestId() });
  const opts = { timeoutMs: callTimeoutMs };
  const approve: Action = { label: "Approve", send: (o) => orders.approveOrder(base(o), opts) };
  const reject: Action = { label: "Reject", reason: "required", send: (o, reason) => orders.rejectOrder({ ...base(o), reason }, opts) };
  const pay: Action = { label: "Pay", send: (o) => orders.payOrder(base(o), opts) };
  const ship: Action = { label: "Ship", send: (o) => orders.shipOrder(base(o), opts) };
  const cancel: Action = { label: "Cancel", reason: "optional", send: (o, reason) => orders.cancelOrder({ ...base(o), reason }, opts) };
  switch (s) {
    case OrderStatus.CREATED:
      return [approve, reject, cancel];
    case OrderStatus.APPROVED:
      return [pay, cancel];
    case OrderStatus.PAID:
      return [ship];
    default:
      return [];
  }
}

export function mountOrder(root: HTMLElement, id: string): () => void {
  const abort = new AbortController();
  const body = h("div", { "aria-busy": "true" }, "Loading…");
  replace(root, h("h1", { tabindex: -1 }, "Order ", h("code", {}, id)), body);
  const load = async () => {
    body.setAttribute("aria-busy", "true");
    try {
      const { order } = await orders.getOrder({ orderId: id }, { signal: abort.signal, timeoutMs: callTimeoutMs });
      const history: OrderEvent[] = [];
      for await (const res of orders.getOrderHistory({ orderId: id }, { signal: abort.signal, timeoutMs: callTimeoutMs })) {
        if (res.event) history.push(res.event);
      }
      if (abort.signal.aborted) return;
      replace(body, view(order!, history, load));
    } catch (err) {
      if (abort.signal.aborted) return;
      replace(body, problemBox(err, h("button", { type: "button", onclick: () => void load() }, "Try again")));
    } finally {
      body.removeAttribute("aria-busy");
    }
  };
  void load();
  return () => abort.abort();
}

function view(o: Order, history: OrderEvent[], reload: () => Promise<void>): HTMLElement {
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Status"),
    h("dd", {}, h("span", { class: "status", "data-status": statusName(o.status), id: "order-status" }, statusName(o.status))),
    h("dt", {}, "Customer"),
    h("dd", {}, h("a", { href: `#/orders?customer=${encodeURIComponent(o.customerId)}` }, o.customerId)),
    h("dt", {}, "Total"),
    h("dd", {}, money(o.totalMinor, o.currencyCode)),
    h("dt", {}, "Created"),
    h("dd", {}, time(o.createTime)),
    h("dt", {}, "Updated"),
    h("dd", {}, time(o.updateTime)),
    h("dt", {}, "Revision"),
    h("dd", {}, h("span", { id: "order-revision" }, o.revision.toString())),
    o.reason && h("dt", {}, "Reason"),
    o.reason && h("dd", {}, o.reason),
  );
  const lines = h(
    "table",
    {},
    h("caption", {}, "Lines"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "SKU"), h("th", { scope: "col", class: "num" }, "Quantity"), h("th", { scope: "col", class: "num" }, "Unit price"), h("th", { scope: "col", class: "num" }, "Amount"))),
    h(
      "tbody",
      {},
      ...o.items.map((it) =>
        h("tr", {}, h("td", {}, it.sku), h("td", { class: "num" }, it.quantity.toString()), h("td", { class: "num" }, money(it.unitPriceMinor, o.currencyCode)), h("td", { class: "num" }, money(it.unitPriceMinor * it.quantity, o.currencyCode))),
      ),
    ),
    h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: 3 }, "Total"), h("td", { class: "num" }, money(o.totalMinor, o.currencyCode)))),
  );
  const timeline = h(
    "ol",
    { class: "timeline", id: "order-history" },
    ...history.map((ev) =>
      h(
        "li",
        { "data-status": statusName(ev.order?.status ?? OrderStatus.UNSPECIFIED) },
        h("span", { class: "status", "data-status": statusName(ev.order?.status ?? OrderStatus.UNSPECIFIED) }, statusName(ev.order?.status ?? OrderStatus.UNSPECIFIED)),
        " ",
        h("time", {}, time(ev.publishTime)),
        h("span", { class: "meta" }, ` sequence ${ev.sequence}`),
        ev.order?.reason ? h("span", { class: "meta" }, ` — ${ev.order.reason}`) : null,
      ),
    ),
  );
  return h(
    "div",
    { class: "order" },
    facts,
    actionsView(o, reload),
    lines,
    h("section", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h" }, "History"), timeline),
  );
}

function actionsView(o: Order, reload: () => Promise<void>): HTMLElement {
  const list = actions(o.status);
  const result = h("div", { class: "action-result" });
  if (list.length === 0) return h("section", { class: "actions" }, h("h2", {}, "Actions"), h("p", {}, `${statusName(o.status)} is final: no transition is possible.`));
  const forms = list.map((a) => {
    const fieldId = `reason-${a.label.toLowerCase()}`;
    const reason = a.reason && h("input", { id: fieldId, name: "reason", maxlength: 512, required: a.reason === "required", autocomplete: "off" });
    const button = h("button", { type: "submit" }, a.label);
    return h(
      "form",
      {
        class: "action",
        "data-action": a.label.toLowerCase(),
        onsubmit: async (e: Event) => {
          e.preventDefault();
          button.disabled = true;
          replace(result, h("p", { role: "status" }, `${a.label}…`));
          try {
            await a.send(o, reason ? reason.value.trim() : "");
            await reload();
          } catch (err) {
            const conflict = ConnectError.from(err).code === Code.Aborted;
            replace(
              result,
              problemBox(err, conflict ? h("p", {}, "The order changed since this page showed it (revision ", o.revision.toString(), "). ", h("button", { type: "button", onclick: () => void reload() }, "Reload the order")) : undefined),
            );
            button.disabled = false;
          }
        },
      },
      reason && h("label", { for: fieldId }, a.reason === "required" ? "Reason (required)" : "Reason (optional)"),
      reason,
      button,
    );
  });
  return h("section", { class: "actions", "aria-labelledby": "actions-h" }, h("h2", { id: "actions-h" }, "Actions"), h("p", { class: "meta" }, `Sent with expected revision ${o.revision}.`), ...forms, result);
}
