// A small element builder, so the pages read as the markup they make.

type Child = Node | string | number | bigint | false | null | undefined;
type Attrs = Record<string, string | number | boolean | undefined | null | EventListener>;

/**
 * h makes an element: attributes whose name starts with "on" are event
 * listeners, false/undefined/null ones are left out, true ones are set
 * empty (boolean attributes such as "disabled").
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** append adds children, text as text nodes (never parsed as HTML). */
export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** replace empties el and fills it with children. */
export function replace(el: Node, ...children: Child[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, ...children);
}

/**
 * stackable names each body cell of a table after its column's heading
 * (data-label), so that on narrow screens the stylesheet can show the
 * table as one block per row, each value with its name.
 */
export function stackable(table: HTMLTableElement): HTMLTableElement {
  const names = Array.from(table.tHead?.rows[0]?.cells ?? [], (c) => c.textContent ?? "");
  table.classList.add("stack");
  for (const row of Array.from(table.tBodies[0]?.rows ?? [])) {
    Array.from(row.cells).forEach((cell, i) => {
      if (names[i] && !cell.dataset.label && cell.tagName === "TD") cell.dataset.label = names[i];
    });
  }
  return table;
}
