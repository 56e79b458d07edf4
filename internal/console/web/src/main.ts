// The console's shell: the navigation and a hash router (#/board,
// #/order/<id>, #/orders, #/queues, #/dead-letters, #/health), so every
// page has an address to bookmark and the server serves one file.

import { h, replace } from "./dom.js";
import { tokenForm } from "./auth.js";
import { board } from "./board.js";
import { mountOrder } from "./order.js";
import { mountOrders } from "./orders.js";
import { mountQueues } from "./queues.js";
import { mountDeadLetters } from "./deadletters.js";
import { mountHealth } from "./health.js";

const pages: { path: string; label: string; mount: (root: HTMLElement, params: URLSearchParams, arg: string) => () => void }[] = [
  { path: "board", label: "Board", mount: (root, params) => board.mount(root, params) },
  { path: "orders", label: "Orders", mount: mountOrders },
  { path: "queues", label: "Queues", mount: mountQueues },
  { path: "dead-letters", label: "Dead letters", mount: mountDeadLetters },
  { path: "health", label: "Health", mount: mountHealth },
];

const main = document.getElementById("main")!;
const links = pages.map((p) => h("a", { href: `#/${p.path}` }, p.label));
replace(document.getElementById("nav")!, h("ul", {}, ...links.map((a) => h("li", {}, a))));
document.getElementById("header")!.append(tokenForm());

let unmount: (() => void) | undefined;

function route(): void {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?", 2);
  const [name, ...rest] = path.split("/");
  const params = new URLSearchParams(query);
  unmount?.();
  const page = name === "order" ? undefined : pages.find((p) => p.path === name) ?? pages[0];
  links.forEach((a, i) => (pages[i] === page ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current")));
  if (name === "order" && rest.length) {
    const id = decodeURIComponent(rest.join("/"));
    document.title = `Order ${id} · ordersd`;
    unmount = mountOrder(main, id);
  } else {
    document.title = `${page!.label} · ordersd`;
    unmount = page!.mount(main, params, "");
  }
  // Moving focus to the new page's heading tells screen readers that the page changed.
  (main.querySelector("h1") as HTMLElement | null)?.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();

/** The board's own figures, for the console's benchmark (and curious operators). */
(window as unknown as { ordersdBoard: () => unknown }).ordersdBoard = () => board.stats();
