// Small DOM and formatting helpers shared by the views (no framework: elements built in code).

/**
 * Build an element: h("a", {href: "#/orders", class: "link"}, "My orders").
 * Attributes: `class`, `text`, `on<event>` handlers, `dataset`, booleans (true sets, false omits).
 * Children may be nested arrays (flattened) and null/false (left out).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  element.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** Say something to screen-reader users without moving focus (the page's live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh text node in a later task is read even when it repeats the previous message.
  setTimeout(() => { region.textContent = message; }, 50);
}

export function money(amount) {
  // The API names no currency, so amounts are shown as they are: two decimals.
  return Number(amount).toFixed(2);
}

/**
 * A <time> with the local date and time; `withDate` false: only the time (`precise`: to the ms);
 * `compact`: a short date and time for narrow columns.
 */
export function time(iso, { withDate = true, precise = false, compact = false } = {}) {
  if (!iso) return h("span", { text: "—" });
  const moment = new Date(iso);
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (precise) options.fractionalSecondDigits = 3;
  const text = withDate
    ? moment.toLocaleString(undefined, compact ? { dateStyle: "short", timeStyle: "short" } : { dateStyle: "medium", timeStyle: "medium" })
    : moment.toLocaleTimeString(undefined, options);
  return h("time", { datetime: iso, title: moment.toISOString(), text });
}

export function shortId(orderId) {
  return orderId.slice(0, 8);
}

const STATUS_LABELS = {
  PENDING: "Placed",
  INVENTORY_RESERVED: "Stock reserved",
  PAYMENT_PROCESSING: "Paying",
  COMPLETED: "Completed",
  CANCELLED: "Cancelled",
  FAILED: "Failed",
};

export const TERMINAL_STATUSES = ["COMPLETED", "CANCELLED", "FAILED"];
export const ORDER_STATUSES = Object.keys(STATUS_LABELS);

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

/** A status badge; the text says the status, the colour only repeats it. */
export function statusBadge(status) {
  return h("span", { class: `badge badge-${status.toLowerCase()}`, text: statusLabel(status) });
}

/** A view's message area: shows errors (role=alert) or notes; empty when there is nothing to say. */
export function messageArea(id) {
  const area = h("div", { id, class: "messages", role: "alert" });
  area.show = (lines, kind = "error") => {
    area.replaceChildren(...[].concat(lines).filter(Boolean).map((line) => h("p", { class: kind, text: line })));
  };
  area.clear = () => area.replaceChildren();
  return area;
}

/**
 * Redraw with `draw()` only when `data` differs from the last drawing (the key remembers it), and
 * give focus back to the element of the same id: a live refresh never moves the keyboard user.
 */
export function redraw(key, data, draw) {
  const snapshot = JSON.stringify(data);
  if (key.last === snapshot) return;
  key.last = snapshot;
  const focused = document.activeElement && document.activeElement.id;
  draw();
  if (focused && document.activeElement?.id !== focused) document.getElementById(focused)?.focus();
}
