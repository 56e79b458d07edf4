// Orders: ListOrders by customer, by status or both, a page at a time.

import { OrderStatus } from "../../../../clients/typescript/src/index.js";
import { h, replace, stackable } from "./dom.js";
import { callTimeoutMs, orders } from "./api.js";
import { money, statusName, statuses, time } from "./format.js";
import { problemBox } from "./problem.js";

const pageSize = 25;

export function mountOrders(root: HTMLElement, params: URLSearchParams): () => void {
  const abort = new AbortController();
  const customer = h("input", { id: "orders-customer", name: "customer", value: params.get("customer") ?? "", placeholder: "any customer", autocomplete: "off" });
  const status = h(
    "select",
    { id: "orders-status", name: "status" },
    h("option", { value: "" }, "any status"),
    ...statuses.map((s) => h("option", { value: statusName(s), selected: params.get("status") === statusName(s) }, statusName(s))),
  );
  const results = h("div", { id: "orders-results" });
  /** tokens[i] is the page_token of page i (page 0: ""), for Previous. */
  let tokens = [""];
  let page = 0;

  const show = async () => {
    results.setAttribute("aria-busy", "true");
    const wanted = status.value ? [OrderStatus[status.value as keyof typeof OrderStatus]] : [];
    try {
      const res = await orders.listOrders(
        { customerId: customer.value.trim(), statuses: wanted, pageSize, pageToken: tokens[page] },
        { signal: abort.signal, timeoutMs: callTimeoutMs },
      );
      if (res.nextPageToken) tokens[page + 1] = res.nextPageToken;
      else tokens = tokens.slice(0, page + 1);
      const prev = h("button", { type: "button", disabled: page === 0, onclick: () => { page--; void show(); } }, "Previous page");
      const next = h("button", { type: "button", disabled: !res.nextPageToken, onclick: () => { page++; void show(); } }, "Next page");
      replace(
        results,
        res.orders.length === 0
          ? h("p", {}, page === 0 ? "No orders match." : "No more orders on this page; go on while there is a next page.")
          : stackable(h(
              "table",
              {},
              h("caption", {}, `Page ${page + 1}`),
              h("thead", {}, h("tr", {}, ...["Order", "Customer", "Status", "Total", "Updated", "Revision"].map((c) => h("th", { scope: "col" }, c)))),
              h(
                "tbody",
                {},
                ...res.orders.map((o) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, h("a", { href: `#/order/${encodeURIComponent(o.orderId)}` }, o.orderId)),
                    h("td", {}, o.customerId),
                    h("td", {}, h("span", { class: "status", "data-status": statusName(o.status) }, statusName(o.status))),
                    h("td", { class: "num" }, money(o.totalMinor, o.currencyCode)),
                    h("td", {}, time(o.updateTime)),
                    h("td", { class: "num" }, o.revision.toString()),
                  ),
                ),
              ),
            )),
        h("nav", { class: "pager", "aria-label": "Pages" }, prev, next),
      );
    } catch (err) {
      if (!abort.signal.aborted) replace(results, problemBox(err));
    } finally {
      results.removeAttribute("aria-busy");
    }
  };
  const form = h(
    "form",
    {
      class: "controls",
      onsubmit: (e: Event) => {
        e.preventDefault();
        tokens = [""];
        page = 0;
        void show();
      },
    },
    h("label", { for: "orders-customer" }, "Customer"),
    customer,
    h("label", { for: "orders-status" }, "Status"),
    status,
    h("button", { type: "submit" }, "List"),
  );
  replace(root, h("h1", { tabindex: -1 }, "Orders"), form, results);
  void show();
  return () => abort.abort();
}
