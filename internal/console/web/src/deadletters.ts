// Dead letters: the events one consumer gave up on, with why and after
// how many attempts; redrive one or all back to the consumer, or purge.

import { type DeadLetter } from "../../../../clients/typescript/src/index.js";
import { h, replace, stackable } from "./dom.js";
import { callTimeoutMs, queues } from "./api.js";
import { reasonName, statusName, time } from "./format.js";
import { problemBox } from "./problem.js";

const pageSize = 50;

export function mountDeadLetters(root: HTMLElement, params: URLSearchParams): () => void {
  const abort = new AbortController();
  const consumer = h("select", { id: "dl-consumer", name: "consumer" });
  const list = h("div", { id: "dead-letters" });
  const result = h("div", { id: "dl-result" });
  const bulk = h("div", { class: "row-actions" });
  let tokens = [""];
  let page = 0;
  const opts = () => ({ signal: abort.signal, timeoutMs: callTimeoutMs });

  const choose = (name: string) => {
    location.hash = `#/dead-letters?consumer=${encodeURIComponent(name)}`;
  };

  const show = async () => {
    const name = consumer.value;
    if (!name) {
      replace(list, h("p", {}, "Choose a consumer."));
      replace(bulk);
      return;
    }
    list.setAttribute("aria-busy", "true");
    try {
      const res = await queues.listDeadLetters({ consumer: name, pageSize, pageToken: tokens[page] }, opts());
      if (res.nextPageToken) tokens[page + 1] = res.nextPageToken;
      replace(bulk, bulkActions(name, res.deadLetters.length > 0));
      replace(
        list,
        res.deadLetters.length === 0
          ? h("p", {}, page === 0 ? `${name} has no dead letters.` : "No more dead letters.")
          : table(name, res.deadLetters),
        h(
          "nav",
          { class: "pager", "aria-label": "Pages" },
          h("button", { type: "button", disabled: page === 0, onclick: () => { page--; void show(); } }, "Previous page"),
          h("button", { type: "button", disabled: !res.nextPageToken, onclick: () => { page++; void show(); } }, "Next page"),
        ),
      );
    } catch (err) {
      if (!abort.signal.aborted) replace(list, problemBox(err));
    } finally {
      list.removeAttribute("aria-busy");
    }
  };

  const act = async (what: string, call: () => Promise<string>) => {
    replace(result, h("p", { role: "status" }, `${what}…`));
    try {
      replace(result, h("p", { role: "status", class: "done" }, await call()));
      tokens = [""];
      page = 0;
      await show();
    } catch (err) {
      replace(result, problemBox(err));
    }
  };

  const redrive = (name: string, ids: bigint[] | "all") =>
    act("Redriving", async () => {
      const res = await queues.redriveDeadLetters(ids === "all" ? { consumer: name, all: true } : { consumer: name, ids }, opts());
      let text = `Redriven to ${name}: ${res.redriven.length} (ids ${res.redriven.join(", ") || "none"}).`;
      if (res.notFound.length) text += ` Not dead letters any more: ${res.notFound.join(", ")}.`;
      if (res.more) text += " More remain: redrive all again.";
      return text;
    });

  const purge = (name: string, ids: bigint[] | "all") =>
    act("Purging", async () => {
      const res = await queues.purgeDeadLetters(ids === "all" ? { consumer: name, all: true } : { consumer: name, ids }, opts());
      return `Purged ${res.purged} dead letters of ${name}.`;
    });

  const bulkActions = (name: string, any: boolean) => {
    const confirm = h("span");
    return h(
      "span",
      {},
      h("button", { type: "button", id: "redrive-all", disabled: !any, onclick: () => void redrive(name, "all") }, "Redrive all"),
      " ",
      h(
        "button",
        {
          type: "button",
          class: "danger",
          disabled: !any,
          onclick: () =>
            replace(
              confirm,
              h(
                "span",
                { role: "alertdialog", "aria-label": "Confirm purge" },
                ` Remove every dead letter of ${name} for good? `,
                h("button", { type: "button", class: "danger", id: "confirm-purge", onclick: () => void purge(name, "all") }, "Purge all"),
                " ",
                h("button", { type: "button", onclick: () => replace(confirm) }, "Keep them"),
              ),
            ),
        },
        "Purge all…",
      ),
      confirm,
    );
  };

  const table = (name: string, dls: DeadLetter[]) =>
    stackable(h(
      "table",
      {},
      h("caption", {}, `Dead letters of ${name}, oldest first`),
      h("thead", {}, h("tr", {}, ...["Id", "Order", "Event", "Reason", "Attempts", "Given up", ""].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        ...dls.map((d) =>
          h(
            "tr",
            { "data-dead-letter": d.id.toString() },
            h("td", { class: "num" }, d.id.toString()),
            h("td", {}, d.event?.order ? h("a", { href: `#/order/${encodeURIComponent(d.event.order.orderId)}` }, d.event.order.orderId) : "unreadable"),
            h("td", {}, d.event?.order ? statusName(d.event.order.status) : "—", h("span", { class: "meta" }, ` #${d.eventSequence}`)),
            h("td", {}, reasonName(d.reason), d.termReason && h("span", { class: "meta" }, `: ${d.termReason}`), d.redriven && h("span", { class: "badge" }, " after a redrive")),
            h("td", { class: "num" }, d.deliveryAttempts.toString()),
            h("td", {}, time(d.deadLetterTime)),
            h(
              "td",
              {},
              h("button", { type: "button", "aria-label": `Redrive dead letter ${d.id}`, onclick: () => void redrive(name, [d.id]) }, "Redrive"),
              " ",
              h("button", { type: "button", class: "danger", "aria-label": `Purge dead letter ${d.id}`, onclick: () => void purge(name, [d.id]) }, "Purge"),
            ),
          ),
        ),
      ),
    ));

  consumer.addEventListener("change", () => choose(consumer.value));
  replace(
    root,
    h("h1", { tabindex: -1 }, "Dead letters"),
    h("form", { class: "controls", onsubmit: (e: Event) => e.preventDefault() }, h("label", { for: "dl-consumer" }, "Consumer"), consumer, bulk),
    result,
    list,
  );
  const wanted = params.get("consumer") ?? "";
  (async () => {
    let names: string[] = [];
    try {
      names = (await queues.listConsumers({}, opts())).consumers.map((c) => c.name);
    } catch (err) {
      if (abort.signal.aborted) return;
      // A consumer may be gone while its dead letters stay: still list the one asked for.
      replace(result, problemBox(err));
    }
    if (wanted && !names.includes(wanted)) names.push(wanted);
    replace(consumer, h("option", { value: "" }, "choose…"), ...names.map((n) => h("option", { value: n, selected: n === wanted }, n)));
    if (wanted) void show();
    else replace(list, h("p", {}, "Choose a consumer."));
  })();
  return () => abort.abort();
}
