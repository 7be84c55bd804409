// Building blocks of the ops console's pages: tables, fact lists, the causation tree and the
// event timeline. Everything is built with DOM calls and textContent (message data included:
// it is shown as JSON text, never parsed as HTML).

import { h, time } from "../dom.js";

export function plural(count, word, many = `${word}s`) {
  return `${count} ${count === 1 ? word : many}`;
}

/** How long from one ISO time to another, in ms or s. */
export function elapsed(from, to) {
  const ms = Math.max(0, new Date(to) - new Date(from));
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The first 8 characters of an id, in full in the tooltip. */
export function shortCode(id) {
  return id ? h("code", { title: id, text: id.slice(0, 8) }) : h("span", { text: "—" });
}

/** A stream name with its order id cut to 8 characters ("payment-f14c4572…"); in full in the tooltip. */
export function stream(aggregateId) {
  const text = (aggregateId || "").replace(/([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i, "$1…");
  return h("span", { class: "stream", title: aggregateId || null, text });
}

/** A small tag that says what it is in words; `tone` only colours it (good, bad, wait, quiet). */
export function tag(text, tone = "quiet") {
  return h("span", { class: `tag tag-${tone}`, text });
}

/** A definition list of [term, value] pairs; a value is text or an element; null pairs are left out. */
export function facts(pairs, attributes = {}) {
  return h("dl", { class: "facts", ...attributes }, pairs.filter(Boolean).map(([term, value]) => [
    h("dt", { text: term }),
    typeof value === "string" || typeof value === "number" ? h("dd", { text: String(value) }) : h("dd", {}, value),
  ]));
}

/**
 * A table; on a phone each row is a card of "label value" lines (app.css, .cards-on-phone).
 * `columns`: header texts; `rows`: arrays of cells (text or elements); `empty`: what an empty
 * table says instead.
 */
export function table({ id, caption, columns, rows, empty, numeric = [] }) {
  if (!rows.length) return h("p", { class: "hint", id, text: empty });
  const cell = (value, index) => h("td", { class: numeric.includes(index) ? "num" : null, dataset: { label: columns[index] } },
    value instanceof Node || Array.isArray(value) ? value : String(value ?? "—"));
  return h("div", { class: "table-wrap" }, h("table", { id, class: "compact cards-on-phone" },
    h("caption", { class: "visually-hidden", text: caption }),
    h("thead", {}, h("tr", {}, columns.map((text, index) => h("th", { scope: "col", class: numeric.includes(index) ? "num" : null, text })))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map(cell))))));
}

/**
 * A message's data as indented JSON inside a disclosure. `opened` (a Set of keys) remembers
 * which ones the user opened, so a live redraw does not close them.
 */
export function dataDetails(key, data, opened, label = "data") {
  const details = h("details", { class: "data", open: opened.has(key) },
    h("summary", { text: label }), h("pre", { text: JSON.stringify(data, null, 2) }));
  details.addEventListener("toggle", () => (details.open ? opened.add(key) : opened.delete(key)));
  return details;
}

/** Event or command, said in words and repeated by colour. */
export function kindTag(kind) {
  return tag(kind, kind === "command" ? "wait" : "info");
}

/**
 * The causation tree: nested lists, each message under the one that caused it. A root is a
 * message caused by something outside the order (an HTTP request, an operator, the sweep).
 */
export function causationTree(nodes) {
  const branch = (items, depth) => h("ul", { class: depth ? "tree" : "tree tree-root" }, items.map((node) => h("li", {},
    h("div", { class: "node", dataset: { messageId: node.message_id, type: node.type } },
      kindTag(node.kind),
      h("strong", { text: node.type }),
      stream(node.aggregate_id),
      time(node.at, { withDate: false, precise: true })),
    node.children.length ? branch(node.children, depth + 1) : null)));
  return nodes.length ? branch(nodes, 0) : h("p", { class: "hint", text: "No messages." });
}

/**
 * The timeline: every event and command of the order in time order, with where it was
 * recorded, what caused it (by type, when the cause is one of the order's messages), who
 * asked for it when an admin did, and its data.
 */
export function timeline(messages, opened) {
  const types = new Map(messages.map((message) => [message.message_id, message.type]));
  return h("ol", { id: "console-timeline", class: "console-timeline" }, messages.map((message) => {
    const where = message.kind === "event"
      ? [stream(message.aggregate_id), ` v${message.version} · #${message.position}`]
      : `${message.routing_key || "command"}${message.sent_at ? "" : " · not sent yet"}`;
    const cause = message.causation_id
      ? `after ${types.get(message.causation_id) || `message ${message.causation_id.slice(0, 8)}`}`
      : "from outside the order";
    const admin = message.data && message.data.admin;
    return h("li", { class: `entry entry-${message.kind}`, dataset: { type: message.type, messageId: message.message_id } },
      time(message.at, { withDate: false, precise: true }),
      kindTag(message.kind),
      h("strong", { class: "entry-type", text: message.type }),
      admin ? tag(`by ${admin}`, "admin") : null,
      h("span", { class: "entry-where" }, where),
      h("span", { class: "entry-cause", text: cause }),
      message.data && Object.keys(message.data).length ? dataDetails(message.message_id, message.data, opened) : null);
  }));
}
