// The web UI: sign in, browse the catalogue, place orders and watch each saga finish.
// Plain JavaScript against the public REST API; tokens live in sessionStorage only.
"use strict";

const state = { access: sessionStorage.getItem("access"), refresh: sessionStorage.getItem("refresh"), followed: [] };
const $ = (selector) => document.querySelector(selector);

function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return null;
  }
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.access) headers.Authorization = `Bearer ${state.access}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && state.refresh && path !== "/api/auth/token/refresh") {
    if (await refreshTokens()) return api(method, path, body);
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && (data.detail || data.title);
    const fields = data && data.errors ? data.errors.map((e) => `${e.pointer}: ${e.detail}`).join("; ") : "";
    throw new Error([detail, fields].filter(Boolean).join(" — ") || `HTTP ${response.status}`);
  }
  return data;
}

async function refreshTokens() {
  try {
    const tokens = await api("POST", "/api/auth/token/refresh", { refresh: state.refresh });
    saveTokens(tokens);
    return true;
  } catch {
    saveTokens({ access: null, refresh: null });
    render();
    return false;
  }
}

function saveTokens({ access, refresh }) {
  state.access = access;
  state.refresh = refresh;
  for (const [key, value] of Object.entries({ access, refresh })) {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function loadProducts() {
  const tbody = $("#products tbody");
  tbody.replaceChildren();
  const page = await api("GET", "/api/inventory?page_size=100");
  for (const product of page.results) {
    const row = document.createElement("tr");
    const quantity = document.createElement("input");
    quantity.type = "number";
    quantity.min = "0";
    quantity.max = "1000";
    quantity.value = "0";
    quantity.dataset.productId = product.product_id;
    const qtyCell = document.createElement("td");
    qtyCell.append(quantity);
    row.append(cell(product.product_id), cell(product.name), cell(product.price), cell(String(product.available)), qtyCell);
    tbody.append(row);
  }
}

async function placeOrder(event) {
  event.preventDefault();
  $("#order-error").textContent = "";
  const items = [...document.querySelectorAll("#products input")]
    .filter((input) => Number(input.value) > 0)
    .map((input) => ({ product_id: input.dataset.productId, quantity: Number(input.value) }));
  const form = new FormData(event.target);
  const body = { items, payment: { method: "card", token: form.get("token") } };
  if (form.get("customer_id")) body.customer_id = form.get("customer_id");
  try {
    const accepted = await api("POST", "/api/orders", body);
    state.followed.unshift(accepted.order_id);
    await refreshOrders();
    await loadProducts();
  } catch (error) {
    $("#order-error").textContent = error.message;
  }
}

async function refreshOrders() {
  const tbody = $("#orders tbody");
  const rows = [];
  for (const orderId of state.followed.slice(0, 20)) {
    try {
      const order = await api("GET", `/api/orders/${orderId}`);
      const row = document.createElement("tr");
      const cancel = document.createElement("button");
      cancel.textContent = "Cancel";
      cancel.disabled = ["CANCELLED", "FAILED"].includes(order.status);
      cancel.addEventListener("click", () => api("DELETE", `/api/orders/${orderId}`).then(refreshOrders, (e) => alert(e.message)));
      const actions = document.createElement("td");
      actions.append(cancel);
      row.append(
        cell(orderId.slice(0, 8)),
        cell(order.status, `status-${order.status}`),
        cell(order.saga ? order.saga.state : ""),
        cell(order.failure_reason || ""),
        cell(order.total_amount),
        actions,
      );
      rows.push(row);
    } catch (error) {
      rows.push(Object.assign(document.createElement("tr"), { textContent: `${orderId}: ${error.message}` }));
    }
  }
  tbody.replaceChildren(...rows);
  $("#orders-panel").hidden = state.followed.length === 0;
}

function render() {
  const who = state.access ? claims(state.access) : null;
  $("#login-panel").hidden = Boolean(who);
  $("#shop").hidden = !who;
  $("#logout").hidden = !who;
  $("#whoami").textContent = who ? `${who.user_id} (${who.role})` : "";
  $("#customer-label").hidden = !who || who.role !== "ADMIN";
  if (who) loadProducts().catch((error) => { $("#order-error").textContent = error.message; });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      saveTokens(await api("POST", "/api/auth/token", { username: form.get("username"), password: form.get("password") }));
      $("#login-error").textContent = "";
      render();
    } catch (error) {
      $("#login-error").textContent = error.message;
    }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/api/auth/logout", { refresh: state.refresh }); } catch { /* already invalid */ }
    saveTokens({ access: null, refresh: null });
    state.followed = [];
    render();
  });
  $("#order-form").addEventListener("submit", placeOrder);
  setInterval(() => { if (state.access && state.followed.length) refreshOrders(); }, 1000);
  render();
});
