// The ops console's front page (ADMIN only): projection lag, the payment circuit breaker, dead
// letters, the outbox backlog, and the sagas that need a look (GET /api/admin/summary and
// GET /api/admin/sagas, docs/console.md), in tabs by kind and paged. The tab and page live in
// the hash (#/console?which=stuck&page=2). Each saga links to its order's console page.

import { api } from "../api.js";
import { h, messageArea, redraw, shortId, statusBadge, time } from "../dom.js";
import { go } from "../router.js";
import * as orderConsole from "./console-order.js";
import { facts, plural, tag } from "./console-parts.js";

const PAGE_SIZE = 10;
const REFRESH_MS = 5000;
const TABS = [
  ["all", "All", "Every saga below, whatever the reason."],
  ["attention", "Needs attention", "Parked: a compensation step went unanswered through all its retries, so the sweep left it to a person."],
  ["stuck", "Stuck", "Not ended, not parked, and more than 10 s past its deadline: the once-a-second sweep is not running, or cannot act on it."],
  ["failed", "Failed (last hour)", "Orders that ended FAILED within the last hour."],
];
const REASONS = { attention: ["needs attention", "bad"], stuck: ["stuck", "wait"], failed: ["failed", "quiet"] };
const BREAKER = {
  CLOSED: ["closed", "good", "charges go through"],
  OPEN: ["open", "bad", "charges are refused at once until it lets one through again"],
  HALF_OPEN: ["half open", "wait", "one charge is let through to test the gateway"],
};

function render(container, params, query) {
  const which = TABS.some(([key]) => key === query.get("which")) ? query.get("which") : "all";
  const page = Math.max(1, Number.parseInt(query.get("page"), 10) || 1);
  const errors = messageArea("console-error");
  const summary = h("div", { id: "console-summary", class: "summary-grid", "aria-live": "off" });
  const asOf = h("p", { class: "hint", id: "console-as-of" });
  const list = h("div", { id: "saga-list" });
  const drawnSummary = {};
  const drawnList = {};

  const tabs = h("nav", { class: "tabs", "aria-label": "Which sagas" }, TABS.map(([key, label]) =>
    h("a", { href: `#${location(key, 1)}`, id: `tab-${key}`, "aria-current": key === which ? "page" : false }, label)));

  container.append(
    h("section", { class: "panel" },
      h("h1", { text: "Ops console" }),
      asOf,
      errors,
      summary),
    h("section", { class: "panel", "aria-labelledby": "sagas-title" },
      h("h2", { id: "sagas-title", text: "Sagas to look at" }),
      tabs,
      h("p", { class: "hint", id: "tab-description", text: TABS.find(([key]) => key === which)[2] }),
      list));

  async function load() {
    const search = new URLSearchParams({ which, page: String(page), page_size: String(PAGE_SIZE) });
    const [front, sagas] = await Promise.allSettled([
      api("GET", "/api/admin/summary"),
      api("GET", `/api/admin/sagas?${search}`),
    ]);
    const problems = [];
    if (front.status === "fulfilled") {
      redraw(drawnSummary, front.value, () => drawSummary(front.value));
    } else {
      problems.push(`The summary could not be loaded: ${front.reason.message}`);
    }
    if (sagas.status === "fulfilled") {
      if (!sagas.value.results.length && page > 1) return go(location(which, 1)); // the page emptied meanwhile
      redraw(drawnList, sagas.value, () => drawList(sagas.value));
    } else {
      problems.push(`The sagas could not be loaded: ${sagas.reason.message}`);
    }
    if (problems.length) errors.show(problems);
    else errors.clear();
  }

  function drawSummary(data) {
    asOf.replaceChildren("As of ", time(data.as_of), ". Refreshed every 5 s.");
    const missing = (name) => h("p", { class: "warning", text: `Not available: ${name} did not answer.` });
    summary.replaceChildren(
      card("summary-lag", "Projection lag", data.projections === null ? missing("the projections")
        : facts(data.projections.map((lag) => [lag.projection, lag.events
          ? `${plural(lag.events, "event")} behind, ${Number(lag.seconds).toFixed(1)} s`
          : "up to date"]))),
      card("summary-breaker", "Payment circuit breaker", data.breaker === null ? missing("Redis")
        : facts(data.breaker.map(({ gateway, state }) => {
          const [label, tone, meaning] = BREAKER[state] || [state, "quiet", ""];
          return [gateway, h("span", {}, tag(label, tone), ` ${meaning}`)];
        }))),
      card("summary-dead-letters", "Dead letters", data.dead_letters === null ? missing("the database")
        : [h("p", { class: "big", text: data.dead_letters.total ? `${plural(data.dead_letters.total, "dead letter")} not replayed` : "None waiting" }),
          facts(Object.entries(data.dead_letters.by_consumer).map(([consumer, count]) => [consumer, String(count)]))]),
      card("summary-outbox", "Outbox backlog", data.outbox_backlog === null ? missing("the outbox")
        : h("p", { class: "big", text: data.outbox_backlog ? `${plural(data.outbox_backlog, "message")} not published yet` : "Nothing waiting" })),
      card("summary-sagas", "Sagas", data.sagas === null ? missing("the sagas")
        : facts(TABS.slice(1).map(([key, label]) => [label, h("a", { href: `#${location(key, 1)}`, text: String(data.sagas[key]) })]))),
    );
  }

  function drawList(answer) {
    const pages = Math.max(1, Math.ceil(answer.count / PAGE_SIZE));
    const label = TABS.find(([key]) => key === which)[1].toLowerCase();
    const cell = (label, ...content) => h("td", { dataset: { label } }, ...content);
    const rows = answer.results.map((saga) => h("tr", { class: "saga-row", dataset: { orderId: saga.order_id } },
      h("th", { scope: "row", dataset: { label: "Order" } }, h("a", { href: `#/console/orders/${saga.order_id}`, id: `console-${saga.order_id}`, "aria-label": `Console of order ${shortId(saga.order_id)}` },
        h("code", { text: shortId(saga.order_id) }))),
      cell("Customer", saga.customer_id),
      cell("Why", saga.reasons.map((reason) => tag(...(REASONS[reason] || [reason])))),
      cell("Saga", h("span", { class: "state", text: saga.state }), saga.step ? h("span", { class: "step", text: saga.step }) : null),
      cell("Attempts", String(saga.attempts)),
      cell("Status", statusBadge(saga.order_status), saga.failure_reason ? h("span", { class: "step", text: saga.failure_reason }) : null),
      cell("Last change", time(saga.updated_at, { compact: true }))));
    list.replaceChildren(
      h("p", { class: "hint", id: "saga-count", text: `${plural(answer.count, "saga")} (${label}) — page ${page} of ${pages}.` }),
      answer.count ? h("div", { class: "table-wrap" }, h("table", { id: "sagas", class: "cards-on-phone" },
        h("caption", { class: "visually-hidden", text: `Sagas to look at: ${label}, most recently changed first` }),
        h("thead", {}, h("tr", {}, ["Order", "Customer", "Why", "Saga", "Attempts", "Status", "Last change"].map((text) =>
          h("th", { scope: "col", text })))),
        h("tbody", {}, rows)))
        : h("p", { id: "sagas-empty", text: "Nothing to look at here." }),
      h("nav", { class: "pager", "aria-label": "Pages of sagas" },
        page > 1 ? h("a", { href: `#${location(which, page - 1)}`, rel: "prev" }, "← Newer") : h("span", { class: "disabled", "aria-hidden": "true", text: "← Newer" }),
        h("span", { text: `Page ${page} of ${pages}` }),
        page < pages ? h("a", { href: `#${location(which, page + 1)}`, rel: "next" }, "Older →") : h("span", { class: "disabled", "aria-hidden": "true", text: "Older →" })));
  }

  let timer = null;
  let stopped = false;
  async function tick() {
    await load();
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function card(id, title, body) {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title`, text: title }), body);
}

function location(which, page) {
  const search = new URLSearchParams();
  if (which !== "all") search.set("which", which);
  if (page > 1) search.set("page", String(page));
  const text = search.toString();
  return text ? `/console?${text}` : "/console";
}

export const routes = [
  {
    pattern: /^\/console$/, title: "Ops console", render, roles: ["ADMIN"],
    nav: { label: "Console", order: 40, href: "#/console", prefix: /^\/console/ },
  },
  ...orderConsole.routes,
];
