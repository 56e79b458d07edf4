// How a failed call is shown: the API's code and message, in an alert.

import { Code } from "@connectrpc/connect";
import { h } from "./dom.js";
import { problem, type Problem } from "./api.js";
import { openTokenForm } from "./auth.js";

/**
 * problemBox shows err where the action was taken. An authentication
 * failure offers the token form; extra (a Reload button, say) follows the
 * message.
 */
export function problemBox(err: unknown, extra?: Node): HTMLElement {
  const p: Problem = problem(err);
  const box = h("div", { class: "problem", role: "alert", "data-code": p.code }, h("strong", {}, p.title), ": ", h("span", { class: "message" }, p.message));
  if (p.code === Code.Unauthenticated) {
    box.append(" ", h("button", { type: "button", onclick: () => openTokenForm() }, "Enter a token"));
  }
  if (p.code === Code.PermissionDenied) {
    box.append(h("p", {}, "Your token does not grant this; ask for a token with the permission named above."));
  }
  if (extra) box.append(" ", extra);
  return box;
}
