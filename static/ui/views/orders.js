// My orders: the query side's list (GET /api/orders), paged and filtered by status. The filter
// and page live in the hash (#/orders?status=FAILED&page=2), so a reload shows the same list.

import { api, session } from "../api.js";
import { ORDER_STATUSES, TERMINAL_STATUSES, h, messageArea, money, redraw, shortId, statusBadge, statusLabel, time } from "../dom.js";
import { go } from "../router.js";

const PAGE_SIZE = 10;
const REFRESH_MS = 3000;

function render(container, params, query) {
  const status = ORDER_STATUSES.includes(query.get("status")) ? query.get("status") : "";
  const page = Math.max(1, Number.parseInt(query.get("page"), 10) || 1);
  const errors = messageArea("orders-error");
  const body = h("tbody");
  const summary = h("p", { class: "hint", id: "orders-summary", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of orders" });
  const title = session.isAdmin ? "All orders" : "My orders";
  const drawn = {};

  const filter = h("select", { id: "status-filter", name: "status",
    onchange: () => go(location(filter.value, 1)) },
  h("option", { value: "" }, "Any status"),
  ORDER_STATUSES.map((value) => h("option", { value, selected: value === status }, statusLabel(value))));

  async function load() {
    const search = new URLSearchParams({ page: String(page), page_size: String(PAGE_SIZE) });
    if (status) search.set("status", status);
    try {
      const answer = await api("GET", `/api/orders?${search}`);
      errors.clear();
      redraw(drawn, answer, () => draw(answer));
      return answer.results.some((order) => !TERMINAL_STATUSES.includes(order.status));
    } catch (error) {
      if (error.status === 404 && page > 1) return go(location(status, 1));
      errors.show(`The orders could not be loaded: ${error.message}`);
      return false;
    }
  }

  function draw(answer) {
    body.replaceChildren(...answer.results.map((order) => h("tr", { class: "order-row", dataset: { orderId: order.order_id } },
      h("th", { scope: "row" }, h("a", { href: `#/orders/${order.order_id}`, id: `open-${order.order_id}`, "aria-label": `Order ${shortId(order.order_id)}` },
        h("code", { text: shortId(order.order_id) }))),
      h("td", {}, time(order.created_at, { compact: true })),
      session.isAdmin ? h("td", { text: order.customer_id }) : null,
      h("td", {}, statusBadge(order.status)),
      h("td", { class: "num", text: money(order.total_amount) }),
    )));
    const pages = Math.max(1, Math.ceil(answer.count / PAGE_SIZE));
    if (!answer.count) {
      body.append(h("tr", {}, h("td", { colspan: session.isAdmin ? 5 : 4, class: "hint",
        text: status ? `No order is ${statusLabel(status).toLowerCase()}.` : "No orders yet. Orders appear here about a second after they are placed." })));
    }
    const text = `${answer.count} order${answer.count === 1 ? "" : "s"}${status ? ` with status ${statusLabel(status)}` : ""} — page ${page} of ${pages}.`;
    if (summary.textContent !== text) summary.textContent = text;
    pager.replaceChildren(
      page > 1 ? h("a", { href: `#${location(status, page - 1)}`, rel: "prev" }, "← Newer") : h("span", { class: "disabled", "aria-hidden": "true", text: "← Newer" }),
      h("span", { text: `Page ${page} of ${pages}` }),
      page < pages ? h("a", { href: `#${location(status, page + 1)}`, rel: "next" }, "Older →") : h("span", { class: "disabled", "aria-hidden": "true", text: "Older →" }),
    );
  }

  container.append(h("section", { class: "panel" },
    h("h1", { text: title }),
    h("div", { class: "toolbar" }, h("label", { for: "status-filter" }, "Status"), filter),
    summary,
    errors,
    h("div", { class: "table-wrap" },
      h("table", { id: "orders" },
        h("caption", { class: "visually-hidden", text: `${title}, newest first` }),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", text: "Order" }), h("th", { scope: "col", text: "Placed" }),
          session.isAdmin ? h("th", { scope: "col", text: "Customer" }) : null,
          h("th", { scope: "col", text: "Status" }), h("th", { scope: "col", class: "num", text: "Total" }))),
        body)),
    pager,
  ));

  // Refresh while an order on the page is still running (the list follows the saga).
  let timer = null;
  let stopped = false;
  async function tick() {
    const running = await load();
    if (!stopped) timer = setTimeout(tick, running ? REFRESH_MS : REFRESH_MS * 3);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function location(status, page) {
  const search = new URLSearchParams();
  if (status) search.set("status", status);
  if (page > 1) search.set("page", String(page));
  const text = search.toString();
  return text ? `/orders?${text}` : "/orders";
}

export const routes = [{
  pattern: /^\/orders$/, title: "My orders", render,
  nav: { label: "My orders", order: 20, href: "#/orders", prefix: /^\/orders/ },
}];
