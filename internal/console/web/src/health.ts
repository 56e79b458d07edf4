// Health: the node's grpc.health.v1 status, checked every refreshMs.
// SERVING means the node is connected to NATS and the stream ORDERS is
// there (JetStream answers); NOT_SERVING that it is not, or that the node
// is shutting down. Each change is kept in this tab's log.

import { h, replace } from "./dom.js";
import { checkHealth, problem } from "./api.js";

const refreshMs = 2000;
/** logSize bounds the log of changes. */
const logSize = 50;
const log: { at: Date; text: string }[] = [];
let lastText = "";

export function mountHealth(root: HTMLElement): () => void {
  const abort = new AbortController();
  const node = h("dd", { id: "health-node" }, "checking…");
  const service = h("dd", { id: "health-orders" }, "checking…");
  const jetstream = h("dd", { id: "health-jetstream" }, "checking…");
  const latency = h("dd", {}, "—");
  const checked = h("dd", {}, "—");
  const changes = h("ol", { class: "timeline", "aria-label": "Changes seen by this tab" });
  let timer = 0;
  replace(
    root,
    h("h1", { tabindex: -1 }, "Health"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Node"),
      node,
      h("dt", {}, "orders.v1.OrderService"),
      service,
      h("dt", {}, "JetStream"),
      jetstream,
      h("dt", {}, "Check took"),
      latency,
      h("dt", {}, "Last checked"),
      checked,
    ),
    h("h2", {}, "Changes"),
    changes,
  );
  const badge = (s: string) => h("span", { class: "health", "data-health": s }, s);
  const check = async () => {
    let text: string;
    try {
      const [all, orders] = await Promise.all([checkHealth("", abort.signal), checkHealth("orders.v1.OrderService", abort.signal)]);
      replace(node, badge(all.status));
      replace(service, badge(orders.status));
      replace(jetstream, all.status === "SERVING" ? "connected; stream ORDERS ready" : "not ready: NATS unreachable, stream ORDERS missing, or the node is shutting down");
      replace(latency, `${Math.round(all.latencyMs)} ms`);
      text = `node ${all.status}, OrderService ${orders.status}`;
    } catch (err) {
      if (abort.signal.aborted) return;
      const p = problem(err);
      replace(node, badge("UNREACHABLE"), ` ${p.message}`);
      replace(service, "—");
      replace(jetstream, "unknown: the node does not answer");
      text = `unreachable: ${p.message}`;
    }
    replace(checked, new Date().toLocaleTimeString());
    if (text !== lastText) {
      lastText = text;
      log.unshift({ at: new Date(), text });
      log.length = Math.min(log.length, logSize);
    }
    replace(changes, ...log.map((e) => h("li", {}, h("time", {}, e.at.toLocaleTimeString()), ` ${e.text}`)));
    if (!abort.signal.aborted) timer = window.setTimeout(check, refreshMs);
  };
  void check();
  return () => {
    abort.abort();
    clearTimeout(timer);
  };
}
