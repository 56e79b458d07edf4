// The bearer token form in the header. The token stays in this tab's
// sessionStorage only: it is gone when the tab closes, and other tabs
// and sites never see it.

import { h, replace } from "./dom.js";
import { onTokenChange, setToken, token } from "./api.js";

let form: HTMLDetailsElement | undefined;

/** tokenForm makes the header's token control. */
export function tokenForm(): HTMLElement {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "paste a token" });
  const state = h("span", { id: "token-state" });
  const show = () => replace(state, token() ? "token set" : "no token");
  show();
  onTokenChange(show);
  const el = h(
    "details",
    { class: "token" },
    h("summary", {}, "Token: ", state),
    h(
      "form",
      {
        onsubmit: (e: Event) => {
          e.preventDefault();
          setToken(input.value.trim());
          input.value = "";
          el.open = false;
          window.dispatchEvent(new HashChangeEvent("hashchange")); // reload the page with it
        },
      },
      h("label", { for: "token" }, "Bearer token (kept for this tab only)"),
      input,
      h("button", { type: "submit" }, "Use token"),
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            setToken("");
            el.open = false;
            window.dispatchEvent(new HashChangeEvent("hashchange"));
          },
        },
        "Forget token",
      ),
    ),
  );
  form = el;
  return el;
}

/** openTokenForm opens the token form and puts the cursor in it. */
export function openTokenForm(): void {
  if (!form) return;
  form.open = true;
  form.querySelector("input")?.focus();
}
