// One order: where its saga is, what it ends with in plain words, its timeline (each saga step
// with its time and outcome, payment attempts, refunds) and cancelling it. Followed live until
// the order and its saga are settled.

import { ApiError, api, session } from "../api.js";
import { TERMINAL_STATUSES, announce, h, messageArea, money, redraw, shortId, statusBadge, statusLabel, time } from "../dom.js";

const POLL_MS = 1000;
const SAGA_TERMINAL = ["COMPLETED", "COMPENSATED", "FAILED"];
const STAGES = [
  ["PENDING", "Placed"],
  ["INVENTORY_RESERVED", "Stock reserved"],
  ["PAYMENT_PROCESSING", "Paying"],
  ["COMPLETED", "Completed"],
];
const STEP_NAMES = {
  RESERVE_INVENTORY: "Reserve the items",
  PROCESS_PAYMENT: "Take the payment",
  AWAIT_PAYMENT_OUTCOME: "Wait for the payment's outcome",
  CONFIRM_INVENTORY: "Confirm the items",
  RELEASE_INVENTORY: "Put the items back in stock",
  REFUND_PAYMENT: "Refund the payment",
};
const ANSWERS = {
  InventoryReserved: "items reserved",
  InventoryReservationFailed: "not enough stock",
  PaymentProcessed: "paid",
  PaymentFailed: "not paid",
  InventoryConfirmed: "items confirmed",
  InventoryReleased: "items back in stock",
  PaymentRefunded: "refunded",
};
const STEP_OUTCOMES = { SUCCEEDED: "done", FAILED: "failed", TIMED_OUT: "no answer in time", PENDING: "waiting for an answer" };
const FAILURES = {
  OUT_OF_STOCK: "There was not enough stock for this order. Nothing was charged.",
  PAYMENT_DECLINED: "The card was declined. Nothing was charged and the items went back to stock.",
  PAYMENT_UNAVAILABLE: "The payment service could not be reached. Nothing was charged and the items went back to stock; please try again later.",
  TIMEOUT: "The order took too long and was stopped. Anything reserved or charged was given back.",
  ADMIN: "Our team stopped this order. Anything charged was refunded.",
};
const ATTEMPT_OUTCOMES = {
  captured: "the card was charged",
  declined: "the card was declined",
  transient: "a temporary error at the payment service",
  timeout: "the payment service did not answer in time",
};

/** The order's outcome, or where it is, in plain words. */
function outcomeText(order, payment) {
  const refunded = payment ? Number(payment.refunded_amount) : 0;
  if (order.status === "COMPLETED") {
    return `Completed: ${money(order.total_amount)} was paid and your items are confirmed.`;
  }
  if (order.status === "CANCELLED") {
    return refunded > 0 ? `Cancelled. ${money(refunded)} was refunded to your card and the items went back to stock.`
      : "Cancelled. Nothing was charged and the items went back to stock.";
  }
  if (order.status === "FAILED") {
    return `Failed: ${FAILURES[order.failure_reason] || `the order could not be completed (${order.failure_reason || "no reason given"}).`}`;
  }
  if (order.saga?.state === "COMPENSATING") return "Stopping: giving back the stock and any payment…";
  if (order.status === "PENDING") return "In progress: reserving your items…";
  if (order.status === "INVENTORY_RESERVED") return "In progress: items reserved, taking the payment…";
  return "In progress: taking the payment and confirming your items…";
}

function progress(order) {
  const failed = order.status === "FAILED" || order.status === "CANCELLED";
  const reached = STAGES.findIndex(([status]) => status === order.status);
  return h("ol", { class: "progress", "aria-label": "Progress" }, STAGES.map(([status, label], index) => {
    let state = "todo";
    if (reached >= 0 && index < reached) state = "done";
    if (index === reached) state = status === "COMPLETED" ? "done" : "current";
    return h("li", { class: `stage stage-${state}`, "aria-current": state === "current" ? "step" : false },
      h("span", { text: label }), h("span", { class: "visually-hidden", text: state === "done" ? " (done)" : state === "current" ? " (now)" : "" }));
  }), failed ? h("li", { class: "stage stage-stopped", "aria-current": "step" }, statusLabel(order.status)) : null);
}

/** Every entry of the timeline, oldest first: {at, source, title, detail, tone}. */
function timelineEntries(order, timeline) {
  const entries = [{ at: order.created_at, source: "Order", title: "Order placed", detail: `${order.items.length} line${order.items.length === 1 ? "" : "s"}, ${money(order.total_amount)}`, tone: "info" }];
  for (const step of timeline.steps) {
    const name = STEP_NAMES[step.step] || step.step;
    const answer = ANSWERS[step.answer] || step.answer;
    let detail = STEP_OUTCOMES[step.outcome] || step.outcome;
    if (answer) detail += `: ${answer}`;
    if (step.answered_at) detail += ` after ${elapsed(step.sent_at, step.answered_at)}`;
    if (step.error) detail += ` (${step.error})`;
    const tone = { SUCCEEDED: "good", FAILED: "bad", TIMED_OUT: "bad" }[step.outcome] || "waiting";
    entries.push({ at: step.sent_at, source: "Saga step", title: step.attempt > 1 ? `${name} (attempt ${step.attempt})` : name, detail, tone });
  }
  for (const event of timeline.payment) entries.push({ at: event.at, source: "Payment", ...paymentEntry(event) });
  for (const change of timeline.transitions) {
    entries.push({ at: change.at, source: "Saga", title: `${change.from_state} → ${change.to_state}`, detail: change.reason, tone: "quiet" });
  }
  return entries.map((entry, index) => ({ ...entry, index, key: sortable(entry.at) }))
    .sort((a, b) => a.key.localeCompare(b.key) || a.index - b.index);
}

/** An ISO time (UTC, "Z") comparable as text: the fraction padded to microseconds. */
function sortable(iso) {
  const [whole, fraction = ""] = iso.replace(/Z$/, "").split(".");
  return `${whole}.${fraction.padEnd(6, "0")}`;
}

function paymentEntry(event) {
  switch (event.type) {
    case "PaymentRequested": return { title: `Payment of ${money(event.amount)} requested`, tone: "info" };
    case "PaymentAttempted": return {
      title: `Charge attempt ${event.attempt}`,
      detail: `${ATTEMPT_OUTCOMES[event.outcome] || event.outcome}${event.error ? ` (${event.error})` : ""}`,
      tone: event.outcome === "captured" ? "good" : "bad",
    };
    case "PaymentOutcomeUnknown": return { title: "Outcome not known yet", detail: "asking the payment service what happened", tone: "waiting" };
    case "PaymentProcessed": return { title: `Paid ${money(event.amount)}`, tone: "good" };
    case "PaymentFailed": return { title: "Payment failed", detail: FAILURES[event.reason] ? event.reason === "PAYMENT_DECLINED" ? "the card was declined" : "the payment service was unavailable" : event.reason, tone: "bad" };
    case "RefundRequested": return { title: "Refund requested", detail: event.amount ? money(event.amount) : "everything that was charged", tone: "info" };
    case "PaymentRefunded": return Number(event.amount) > 0
      ? { title: `Refunded ${money(event.amount)}`, tone: "good" }
      : { title: "Nothing to refund", detail: "nothing had been charged", tone: "quiet" };
    default: return { title: event.type, tone: "quiet" };
  }
}

function elapsed(from, to) {
  const ms = Math.max(0, new Date(to) - new Date(from));
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function render(container, [orderId]) {
  const errors = messageArea("order-page-error");
  const section = h("section", { class: "panel order-page" }, h("h1", { text: `Order ${shortId(orderId)}` }), errors);
  const content = h("div", { id: "order-content" });
  section.append(content);
  // An admin goes on from here to the order's console page; a customer's page never links there.
  const toConsole = session.isAdmin
    ? h("a", { href: `#/console/orders/${orderId}`, id: "open-console", class: "to-console" }, "Open in the ops console →") : null;
  container.append(h("p", { class: "back" }, h("a", { href: "#/orders" }, "← My orders"), toConsole), section);
  let stopped = false;
  let timer = null;
  let confirming = false;
  let lastStatus = null;

  async function load() {
    // The order first, then what happened to it: read side by side, a timeline read a moment
    // before the order's last change could miss the step that made it (a FAILED order without
    // its declined payment), and polling stops at a settled order. Read after it, the timeline
    // and the payment hold everything the order shows (both come from the write side).
    const order = await api("GET", `/api/orders/${orderId}`);
    const [timeline, payment] = await Promise.all([
      api("GET", `/api/orders/${orderId}/timeline`),
      api("GET", `/api/payments/${orderId}`).catch((error) => {
        if (error instanceof ApiError && error.status === 404) return null; // not at the payment yet
        throw error;
      }),
    ]);
    return { order, timeline, payment };
  }

  function draw({ order, timeline, payment }) {
    if (lastStatus && lastStatus !== order.status) announce(`Order ${shortId(orderId)}: ${statusLabel(order.status)}`);
    lastStatus = order.status;
    const cancellable = !["CANCELLED", "FAILED"].includes(order.status) && order.saga?.state !== "COMPENSATING";
    content.replaceChildren(
      h("div", { class: "order-head" },
        h("p", { class: "order-status" }, "Status ", h("span", { id: "order-status", dataset: { status: order.status } }, statusBadge(order.status))),
        h("p", { id: "order-outcome", class: `outcome outcome-${order.status.toLowerCase()}`, text: outcomeText(order, payment) }),
        order.saga?.needs_attention ? h("p", { class: "warning", text: "This order needs a look from our team; they have been told." }) : null),
      progress(order),
      h("div", { class: "order-grid" },
        h("section", { "aria-labelledby": "items-title" },
          h("h2", { id: "items-title", text: "Items" }),
          h("div", { class: "table-wrap" }, h("table", { class: "items" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Product" }), h("th", { scope: "col", class: "num", text: "Quantity" }),
              h("th", { scope: "col", class: "num", text: "Price" }))),
            h("tbody", {}, order.items.map((item) => h("tr", {},
              h("th", { scope: "row", text: item.product_name }), h("td", { class: "num", text: String(item.quantity) }), h("td", { class: "num", text: money(item.price) })))),
            h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: 2, text: "Total" }), h("td", { class: "num", text: money(order.total_amount) }))))),
          h("dl", { class: "facts" },
            h("dt", { text: "Placed" }), h("dd", {}, time(order.created_at)),
            h("dt", { text: "Last change" }), h("dd", {}, time(order.updated_at)),
            order.customer_id ? [h("dt", { text: "Customer" }), h("dd", { text: order.customer_id })] : null,
            h("dt", { text: "Payment" }), h("dd", { id: "payment-summary", text: payment
              ? `${payment.status.toLowerCase()}, ${money(payment.amount)} in ${payment.attempts} attempt${payment.attempts === 1 ? "" : "s"}${Number(payment.refunded_amount) > 0 ? `, ${money(payment.refunded_amount)} refunded` : ""}`
              : "not taken" })),
          cancelControls(cancellable)),
        h("section", { "aria-labelledby": "timeline-title" },
          h("h2", { id: "timeline-title", text: "Timeline" }),
          h("ol", { id: "timeline", class: "timeline" }, timelineEntries(order, timeline).map((entry) =>
            h("li", { class: `event event-${entry.tone}` },
              time(entry.at, { withDate: false, precise: true }),
              h("span", { class: "event-source", text: entry.source }),
              h("span", { class: "event-title", text: entry.title }),
              entry.detail ? h("span", { class: "event-detail", text: entry.detail }) : null))))),
    );
  }

  function cancelControls(cancellable) {
    if (!cancellable) return null;
    if (!confirming) {
      return h("p", {}, h("button", { type: "button", class: "danger", id: "cancel-order",
        onclick: () => { confirming = true; refresh().then(() => document.getElementById("confirm-cancel")?.focus()); } }, "Cancel order"));
    }
    return h("div", { class: "confirm", role: "group", "aria-labelledby": "confirm-text" },
      h("p", { id: "confirm-text", text: "Cancel this order? Anything charged is refunded and the items go back to stock." }),
      h("button", { type: "button", class: "danger", id: "confirm-cancel", onclick: cancel }, "Yes, cancel it"),
      h("button", { type: "button", class: "secondary", onclick: () => { confirming = false; refresh().then(() => document.getElementById("cancel-order")?.focus()); } }, "Keep it"));
  }

  async function cancel() {
    confirming = false;
    try {
      await api("DELETE", `/api/orders/${orderId}`);
      announce("Cancellation requested");
    } catch (error) {
      errors.show(`The order was not cancelled: ${error.message}`);
    }
    await refresh();
    poll();
  }

  let latest = null;
  let gone = false;
  const drawn = {};
  async function refresh() {
    try {
      latest = await load();
      errors.clear();
      redraw(drawn, { ...latest, confirming }, () => draw(latest));
    } catch (error) {
      if (error.status === 404) {
        content.replaceChildren(h("p", { text: "There is no order with this id among yours." }));
        gone = true;
      } else {
        errors.show(`The order could not be loaded: ${error.message}`);
      }
    }
    return latest;
  }

  function settled(state) {
    return state && TERMINAL_STATUSES.includes(state.order.status) && (!state.order.saga || SAGA_TERMINAL.includes(state.order.saga.state));
  }

  async function poll() {
    clearTimeout(timer);
    // A failed request (network, server) is tried again; a missing order or a settled one is not.
    const state = await refresh();
    if (!stopped && !gone && !settled(state)) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

export const routes = [{ pattern: /^\/orders\/([0-9a-fA-F-]{36})$/, title: "Order", render }];
