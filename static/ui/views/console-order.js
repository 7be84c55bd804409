// One order's console page (ADMIN only): everything GET /api/admin/orders/{id} tells about it in
// one place — the order and its saga, the compensation, transitions and step attempts, the
// payment with the gateway ledger's view and the reconciliation's verdict, every event and
// command as a causation tree and as a timeline, outbox rows, dead letters, the trace — and the
// operator's actions. Each action asks for confirmation first; the server records it as an
// event naming the admin, or refuses it with the reason, which the page shows as it is said.

import { ApiError, api } from "../api.js";
import { announce, h, messageArea, money, redraw, shortId, statusBadge, time } from "../dom.js";
import { causationTree, dataDetails, elapsed, facts, plural, shortCode, table, tag, timeline } from "./console-parts.js";

const POLL_MS = 3000;
const SAGA_TERMINAL = ["COMPLETED", "COMPENSATED", "FAILED"];
const STEPS = {
  RESERVE_INVENTORY: "reserve the items",
  PROCESS_PAYMENT: "take the payment",
  CONFIRM_INVENTORY: "confirm the items",
  RELEASE_INVENTORY: "put the items back in stock",
  REFUND_PAYMENT: "refund the payment",
  AWAIT_PAYMENT_OUTCOME: "wait for the payment's outcome",
};
const COMPENSATION_STEPS = ["RELEASE_INVENTORY", "REFUND_PAYMENT", "AWAIT_PAYMENT_OUTCOME"];
const STEP_OUTCOMES = { SUCCEEDED: ["done", "good"], FAILED: ["failed", "bad"], TIMED_OUT: ["no answer in time", "bad"], PENDING: ["waiting", "wait"] };
const VERDICTS = {
  agrees: ["agrees", "good", "The gateway's ledger agrees with the payment."],
  running: ["running", "wait", "Not settled yet: the payment is still running and is left to its runner."],
  late_capture: ["late capture", "bad", "The gateway captured after the payment was given up: the periodic reconciliation records the capture and the saga refunds it."],
  captured_unknown_to_ledger: ["capture unknown to the ledger", "bad", "The payment counts a capture the gateway's ledger does not have: a person must look."],
  refund_mismatch: ["refund mismatch", "bad", "The refunded amounts of the payment and of the ledger differ while no refund is running: a person must look."],
};
const ATTEMPT_OUTCOMES = {
  captured: ["captured", "good"], declined: ["declined", "bad"], transient: ["temporary error", "wait"], timeout: ["no answer in time", "wait"],
};

/** The operator's actions on the saga: what each does, asked before it is sent. */
function actions(orderId) {
  return [
    {
      id: "retry-step", label: "Retry step", yes: "Yes, retry the step",
      send: () => api("POST", `/api/admin/sagas/${orderId}/retry-step`),
      asks: "Send the current step's command(s) again? This also clears the parked flag; the sweep parks the saga again if the step still goes unanswered.",
    },
    {
      id: "force-compensation", label: "Force compensation", yes: "Yes, compensate now",
      send: () => api("POST", `/api/admin/sagas/${orderId}/force-compensation`, { as_cancellation: false }),
      asks: "Release the stock and refund any capture now? The order ends FAILED (reason ADMIN); a saga already compensating sends its pending steps again.",
    },
    {
      id: "force-cancellation", label: "Compensate as a cancellation", yes: "Yes, cancel and compensate",
      send: () => api("POST", `/api/admin/sagas/${orderId}/force-compensation`, { as_cancellation: true }),
      asks: "Release the stock and refund any capture now, ending the order CANCELLED? This is the only way to undo a completed order.",
    },
    {
      id: "mark-failed", label: "Mark failed", yes: "Yes, mark it failed",
      send: () => api("POST", `/api/admin/sagas/${orderId}/mark-failed`),
      asks: "End the saga FAILED without further compensation? Nothing more is released or refunded: only for a saga settled by hand.",
    },
  ];
}

function render(container, [orderId]) {
  const errors = messageArea("console-order-error");
  const content = h("div", { id: "console-order" });
  container.append(
    h("p", { class: "back" }, h("a", { href: "#/console" }, "← Ops console")),
    h("section", { class: "panel" },
      h("h1", { text: `Order ${shortId(orderId)}: console` }),
      h("p", { class: "hint" }, "Order id ", h("code", { text: orderId }), ". ",
        h("a", { href: `#/orders/${orderId}`, id: "customer-view" }, "The order as its customer sees it"), "."),
      errors),
    content);
  const opened = new Set();
  const drawn = {};
  let latest = null;
  let confirming = null; // the id of the action (or "replay-<dead letter id>") being confirmed
  let result = null; // {tone: "done" | "refused", text}: the last action's outcome
  let stopped = false;
  let timer = null;

  function draw(page) {
    const saga = page.saga;
    content.replaceChildren(
      h("section", { class: "panel", "aria-labelledby": "overview-title" },
        h("h2", { id: "overview-title", text: "Overview" }),
        saga?.needs_attention ? h("p", { class: "warning", id: "parked", text: `Parked: the step ${saga.step} went unanswered through all its retries; the sweep leaves it to a person.` }) : null,
        h("div", { class: "console-grid" }, overview(page), actionPanel(page))),
      h("section", { class: "panel", "aria-labelledby": "saga-title" },
        h("h2", { id: "saga-title", text: "Saga" }),
        saga ? sagaPart(saga) : h("p", { class: "hint", text: "This order has no saga." })),
      h("section", { class: "panel", "aria-labelledby": "payment-title" },
        h("h2", { id: "payment-title", text: "Payment and the gateway's ledger" }),
        paymentPart(page.payment)),
      h("section", { class: "panel", "aria-labelledby": "tree-title" },
        h("h2", { id: "tree-title", text: "Causation tree" }),
        h("p", { class: "hint", text: "Each message under the one that caused it; a root was caused from outside the order (a request, an operator, the sweep)." }),
        h("div", { id: "causation-tree" }, causationTree(page.causation_tree))),
      h("section", { class: "panel", "aria-labelledby": "timeline-title" },
        h("h2", { id: "timeline-title", text: `Timeline: ${plural(page.timeline.length, "message")}` }),
        timeline(page.timeline, opened)),
      h("section", { class: "panel", "aria-labelledby": "outbox-title" },
        h("h2", { id: "outbox-title", text: "Outbox rows" }),
        outboxPart(page.outbox)),
      h("section", { class: "panel", "aria-labelledby": "dead-letters-title" },
        h("h2", { id: "dead-letters-title", text: "Dead letters" }),
        deadLettersPart(page.dead_letters)),
    );
  }

  function overview(page) {
    const { order, saga, reservation } = page;
    const traceLink = page.trace_url
      ? h("a", { href: page.trace_url, id: "trace-link", target: "_blank", rel: "noopener noreferrer" }, "Open the trace")
      : h("span", { class: "hint", text: "(set TRACE_URL_TEMPLATE to link it)" });
    return facts([
      ["Order", order ? h("span", {}, statusBadge(order.status), order.failure_reason ? ` ${order.failure_reason}` : "") : "no order stream"],
      order ? ["Customer", order.customer_id] : null,
      order ? ["Total", `${money(order.total_amount)} for ${plural(order.items.length, "line")}`] : null,
      order ? ["Placed", time(order.created_at)] : null,
      saga ? ["Saga", h("span", { id: "saga-state", dataset: { state: saga.state } },
        h("strong", { text: saga.state }), saga.step ? ` at ${saga.step} (attempt ${saga.attempts})` : "")] : null,
      saga && !SAGA_TERMINAL.includes(saga.state) ? ["Deadline", time(saga.deadline)] : null,
      saga?.cancelled_by ? ["Stopped by", saga.cancelled_by] : null,
      ["Reservation", reservation ? `${reservation.state}, ${plural(reservation.items.reduce((sum, item) => sum + item.quantity, 0), "unit")}` : "none"],
      ["Trace", page.trace_id ? h("span", { id: "trace" }, h("code", { text: page.trace_id }), " ", traceLink,
        page.trace_ids.length > 1 ? ` (and ${plural(page.trace_ids.length - 1, "other trace")})` : "") : "no trace id recorded"],
    ], { id: "console-overview" });
  }

  function actionPanel(page) {
    const message = result ? h("p", { id: "action-result", class: result.tone === "done" ? "done" : "error", tabindex: "-1", text: result.text }) : null;
    if (!page.saga) return h("div", { class: "actions" }, h("h3", { text: "Actions" }), h("p", { class: "hint", text: "No saga: nothing to act on." }));
    const chosen = actions(orderId).find((action) => action.id === confirming);
    const body = chosen
      ? h("div", { class: "confirm", role: "group", "aria-labelledby": "confirm-action-text" },
        h("p", { id: "confirm-action-text", text: chosen.asks }),
        h("button", { type: "button", class: "danger", id: "confirm-action", onclick: () => act(chosen) }, chosen.yes),
        h("button", { type: "button", class: "secondary", id: "cancel-action", onclick: () => ask(null, chosen.id) }, "No, leave it"))
      : h("div", { class: "action-buttons" }, actions(orderId).map((action) =>
        h("button", { type: "button", class: "secondary", id: `action-${action.id}`, onclick: () => ask(action.id, "confirm-action") }, action.label)));
    return h("div", { class: "actions" }, h("h3", { text: "Actions" }),
      h("p", { class: "hint", text: "Each is recorded on the saga's stream as an event naming you; the server refuses, with its reason, what the saga's state does not allow." }),
      body, message);
  }

  function sagaPart(saga) {
    const compensation = saga.transitions.find((change) => change.to_state === "COMPENSATING");
    const undoing = saga.step_attempts.filter((attempt) => COMPENSATION_STEPS.includes(attempt.step));
    return [
      h("div", { id: "compensation", class: "compensation" },
        h("h3", { text: "Compensation" }),
        compensation ? h("p", {}, "Started ", time(compensation.at), ` (${compensation.reason}).`) : h("p", { class: "hint", text: "None: nothing had to be undone." }),
        undoing.length ? h("ul", {}, undoing.map((attempt) => h("li", { dataset: { step: attempt.step } },
          h("strong", { text: STEPS[attempt.step] || attempt.step }), ` — ${attempt.command}, attempt ${attempt.attempt}: `,
          stepOutcome(attempt), attempt.answer ? ` (${attempt.answer})` : ""))) : null),
      h("h3", { text: "Transitions" }),
      table({
        id: "transitions", caption: "Saga transitions, oldest first", empty: "No transitions yet.",
        columns: ["At", "From", "To", "Step", "Reason"],
        rows: saga.transitions.map((change) => [time(change.at, { withDate: false, precise: true }), change.from_state, change.to_state, change.step || "—", change.reason]),
      }),
      h("h3", { text: "Step attempts" }),
      table({
        id: "step-attempts", caption: "Commands sent for the saga's steps, oldest first", empty: "No command sent yet.",
        columns: ["Sent", "Step", "Command", "Attempt", "Outcome", "Answer", "Error"], numeric: [3],
        rows: saga.step_attempts.map((attempt) => [
          time(attempt.sent_at, { withDate: false, precise: true }),
          h("span", {}, attempt.step, COMPENSATION_STEPS.includes(attempt.step) ? [" ", tag("compensation", "wait")] : null),
          attempt.command, String(attempt.attempt), stepOutcome(attempt),
          attempt.answer ? `${attempt.answer} after ${elapsed(attempt.sent_at, attempt.answered_at)}` : "—",
          attempt.error || "—",
        ]),
      }),
    ];
  }

  function paymentPart(payment) {
    if (!payment) return h("p", { class: "hint", id: "payment-none", text: "No payment: the saga did not ask for one." });
    const [label, tone, meaning] = VERDICTS[payment.reconciliation] || [payment.reconciliation, "quiet", ""];
    const projection = payment.payment;
    const ledger = payment.ledger;
    return [
      h("p", { id: "reconciliation", dataset: { verdict: payment.reconciliation } }, "Reconciliation: ", tag(label, tone), ` ${meaning}`),
      h("div", { class: "console-grid" },
        h("div", {}, h("h3", { text: "The payment" }), projection ? facts([
          ["Status", projection.status], ["Amount", money(projection.amount)], ["Refunded", money(projection.refunded_amount)],
          ["Charge attempts", String(projection.attempts)], ["Captures", String(projection.captures)], ["Refunds running", String(projection.pending_refunds)],
        ], { id: "payment-facts" }) : h("p", { class: "hint", text: "Not recorded here." })),
        h("div", {}, h("h3", { text: "The gateway's ledger" }), ledger ? facts([
          ["Status", ledger.status], ["Amount", money(ledger.amount)], ["Refunded", money(ledger.refunded_amount)],
          ["Charge calls received", String(ledger.charge_calls)], ["Key", h("code", { text: ledger.idempotency_key })],
        ], { id: "ledger-facts" }) : h("p", { class: "hint", id: "ledger-none", text: "The gateway never saw this order's key." }))),
      h("h3", { text: "Charge attempts" }),
      table({
        id: "payment-attempts", caption: "Calls to the gateway", empty: "No call to the gateway yet.",
        columns: ["At", "Attempt", "Outcome", "Error", "May still land until"], numeric: [1],
        rows: payment.attempts.map((attempt) => [time(attempt.at, { withDate: false, precise: true }), String(attempt.attempt),
          tag(...(ATTEMPT_OUTCOMES[attempt.outcome] || [attempt.outcome])), attempt.error || "—",
          attempt.may_land_until ? time(attempt.may_land_until, { withDate: false }) : "—"]),
      }),
      ledger && ledger.refunds.length ? [h("h3", { text: "Refunds at the gateway" }), table({
        id: "ledger-refunds", caption: "Refunds in the gateway's ledger", empty: "",
        columns: ["At", "Refund key", "Amount"], numeric: [2],
        rows: ledger.refunds.map((refund) => [time(refund.created_at, { withDate: false }), h("code", { text: refund.refund_key }), money(refund.amount)]),
      })] : null,
    ];
  }

  function outboxPart(rows) {
    return table({
      id: "outbox", caption: "Outbox rows of the order's messages", empty: "No outbox rows (pruned, or none written).",
      columns: ["Row", "Message", "Routing key", "Written", "Published", "Attempts", "Last error"], numeric: [0, 5],
      rows: rows.map((row) => [String(row.id),
        h("span", {}, row.type, row.replay_of ? [" ", tag(`replay of dead letter ${row.replay_of}`, "wait")] : null),
        h("code", { text: row.routing_key }), time(row.created_at, { withDate: false, precise: true }),
        row.sent_at ? time(row.sent_at, { withDate: false, precise: true }) : tag("waiting", "wait"),
        String(row.attempts), row.last_error || "—"]),
    });
  }

  function deadLettersPart(letters) {
    return table({
      id: "dead-letters", caption: "Dead letters of the order", empty: "No dead letters.",
      columns: ["Id", "Consumer", "Message", "Error", "Attempts", "Dead since", "Replay"], numeric: [0, 4],
      rows: letters.map((letter) => [String(letter.id), letter.consumer,
        h("span", {}, letter.message_type, " ", shortCode(letter.message_id), dataDetails(`dead-${letter.id}`, letter.body, opened, "body")),
        letter.error, String(letter.attempts), time(letter.created_at, { compact: true }), replayCell(letter)]),
    });
  }

  function replayCell(letter) {
    if (letter.replayed_at) return h("span", {}, "replayed by ", h("strong", { text: letter.replayed_by || "?" }), " ", time(letter.replayed_at, { compact: true }));
    const id = `replay-${letter.id}`;
    if (confirming !== id) {
      return h("button", { type: "button", class: "secondary", id, onclick: () => ask(id, `confirm-${id}`) }, "Replay");
    }
    return h("div", { class: "confirm", role: "group", "aria-labelledby": `${id}-text` },
      h("p", { id: `${id}-text`, text: `Send ${letter.message_type} again to ${letter.consumer}? Contexts that handled it drop it; the one that failed acts.` }),
      h("button", { type: "button", class: "danger", id: `confirm-${id}`, onclick: () => replay(letter) }, "Yes, replay it"),
      h("button", { type: "button", class: "secondary", onclick: () => ask(null, id) }, "No"));
  }

  function stepOutcome(attempt) {
    const [label, tone] = STEP_OUTCOMES[attempt.outcome] || [attempt.outcome, "quiet"];
    return tag(label, tone);
  }

  /** Show (or leave) a confirmation, then put focus on `focusId`. */
  function ask(which, focusId) {
    confirming = which;
    paint();
    document.getElementById(focusId)?.focus();
  }

  async function act(action) {
    confirming = null;
    try {
      const done = await action.send();
      const { event, saga } = done;
      result = { tone: "done", text: `${action.label}: recorded ${event.type} naming ${event.data.admin}. The saga is now ${saga.state}${saga.step ? ` at ${saga.step}` : ""}.` };
    } catch (error) {
      result = { tone: "refused", text: refusal(action.label, error) };
    }
    await settleAction();
  }

  async function replay(letter) {
    confirming = null;
    try {
      const done = await api("POST", `/api/admin/dead-letters/${letter.id}/replay`);
      result = { tone: "done", text: `Dead letter ${done.dead_letter_id} replayed: recorded ${done.event.type} naming ${done.replayed_by}; it goes out again as outbox row ${done.outbox_id}.` };
    } catch (error) {
      result = { tone: "refused", text: refusal(`Replaying dead letter ${letter.id}`, error) };
    }
    await settleAction();
  }

  async function settleAction() {
    announce(result.text);
    await refresh();
    document.getElementById("action-result")?.focus();
    poll();
  }

  function paint() {
    if (latest) redraw(drawn, { latest, confirming, result }, () => draw(latest));
  }

  async function refresh() {
    try {
      latest = await api("GET", `/api/admin/orders/${orderId}`);
      errors.clear();
      paint();
    } catch (error) {
      if (error.status === 404) {
        content.replaceChildren(h("section", { class: "panel" }, h("p", { id: "console-missing", text: "There is no order or saga with this id." })));
        stopped = true;
      } else {
        errors.show(`The order's console could not be loaded: ${error.message}`);
      }
    }
  }

  /** Follow the order while anything about it can still change by itself. */
  function settled(page) {
    return page && (!page.saga || SAGA_TERMINAL.includes(page.saga.state)) && page.outbox.every((row) => row.sent_at);
  }

  async function poll() {
    clearTimeout(timer);
    await refresh();
    if (!stopped && !settled(latest)) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

/** An action's refusal (409) or failure in plain words: the server's reason, as it says it. */
function refusal(label, error) {
  if (error instanceof ApiError && error.status === 409) {
    return `${label} was refused: ${error.message.replace(/^Refused: /, "")}`;
  }
  return `${label} did not go through: ${error.message}`;
}

export const routes = [{ pattern: /^\/console\/orders\/([0-9a-fA-F-]{36})$/, title: "Order console", render, roles: ["ADMIN"] }];
