// The shop: the catalogue with live stock, a cart kept for the tab, and placing the order.

import { api, session } from "../api.js";
import { announce, h, messageArea, money, redraw } from "../dom.js";
import { go } from "../router.js";

const STOCK_REFRESH_MS = 5000;
const TOKENS = [
  ["tok_ok", "Card that pays"],
  ["tok_declined", "Card that is declined"],
  ["tok_flaky", "Card that fails once, then pays"],
  ["tok_slow", "Card whose bank answers late"],
  ["tok_gateway_down", "Payment service down"],
];

/** The cart: [{product_id, quantity}] in the order lines were added, kept per user in this tab. */
const cart = {
  key() { return `cart:${session.user?.user_id}`; },
  lines() {
    try {
      return JSON.parse(sessionStorage.getItem(this.key())) || [];
    } catch {
      return [];
    }
  },
  save(lines) { sessionStorage.setItem(this.key(), JSON.stringify(lines)); },
  add(productId) {
    const lines = this.lines();
    const line = lines.find((l) => l.product_id === productId);
    if (line) line.quantity = Number(line.quantity) + 1 || 1;
    else lines.push({ product_id: productId, quantity: 1 });
    this.save(lines);
  },
  set(productId, quantity) {
    this.save(this.lines().map((l) => (l.product_id === productId ? { ...l, quantity } : l)));
  },
  remove(productId) { this.save(this.lines().filter((l) => l.product_id !== productId)); },
  clear() { sessionStorage.removeItem(this.key()); },
};

async function loadCatalogue() {
  const products = [];
  let path = "/api/inventory?page_size=100";
  while (path) {
    const page = await api("GET", path);
    products.push(...page.results);
    const next = page.next ? new URL(page.next, window.location.origin) : null;
    path = next ? next.pathname + next.search : null;
  }
  return products;
}

function render(container) {
  let products = new Map();
  const catalogueErrors = messageArea("catalogue-error");
  const orderErrors = messageArea("order-error");
  const catalogueBody = h("tbody");
  const cartList = h("ul", { class: "cart-lines", id: "cart-lines" });
  const cartTotal = h("p", { class: "cart-total", id: "cart-total" });
  const placeButton = h("button", { type: "submit", id: "place-order" }, "Place order");
  // On a phone the cart is below the catalogue: a bar at the bottom says what it holds and goes there.
  const cartBarText = h("span", { id: "cart-bar-text" });
  const cartBar = h("div", { class: "cart-bar", id: "cart-bar" }, cartBarText,
    h("button", { type: "button", class: "secondary", onclick: () => {
      document.getElementById("cart-title").scrollIntoView();
      document.getElementById("cart-title").focus();
    } }, "View cart"));
  const token = h("select", { id: "card-token", name: "token" },
    TOKENS.map(([value, label]) => h("option", { value }, `${label} (${value})`)));
  const customer = session.isAdmin
    ? h("div", { class: "field" }, h("label", { for: "customer-id" }, "Customer id"),
      h("input", { id: "customer-id", name: "customer_id", required: true, autocomplete: "off" }))
    : null;
  const lineErrors = new Map(); // product_id -> messages from the last refused order
  const drawn = {}; // the catalogue last drawn (a refresh that changes nothing redraws nothing)

  function drawCatalogue() {
    catalogueBody.replaceChildren(...[...products.values()].map((product) => {
      const soldOut = product.available <= 0;
      return h("tr", { dataset: { productId: product.product_id } },
        h("th", { scope: "row" }, h("span", { class: "product-name", text: product.name }),
          h("span", { class: "sku", text: product.product_id })),
        h("td", { class: "num", text: money(product.price) }),
        h("td", { class: `num stock${soldOut ? " sold-out" : ""}`, text: soldOut ? "Sold out" : String(product.available) }),
        h("td", {}, h("button", {
          type: "button", class: "secondary add", id: `add-${product.product_id}`, "aria-label": `Add ${product.name} to the cart`,
          onclick: () => { cart.add(product.product_id); lineErrors.delete(product.product_id); drawCart(); announce(`${product.name} added to the cart`); },
        }, "Add")),
      );
    }));
  }

  function drawCart() {
    const lines = cart.lines();
    let total = 0;
    cartList.replaceChildren(...lines.map((line) => {
      const product = products.get(line.product_id);
      const name = product ? product.name : line.product_id;
      if (product) total += Number(product.price) * (Number(line.quantity) || 0);
      const inputId = `qty-${line.product_id}`;
      const problems = lineErrors.get(line.product_id) || [];
      const errorId = `qty-${line.product_id}-error`;
      const quantity = h("input", {
        id: inputId, type: "number", inputmode: "numeric", min: "1", max: "1000", value: String(line.quantity),
        class: "qty", "aria-invalid": problems.length ? "true" : false, "aria-describedby": problems.length ? errorId : false,
        onchange: (event) => { cart.set(line.product_id, event.target.value === "" ? "" : Number(event.target.value)); lineErrors.delete(line.product_id); drawCart(); },
      });
      return h("li", { class: "cart-line", dataset: { productId: line.product_id } },
        h("label", { for: inputId, class: "line-name" }, `${name}`, h("span", { class: "visually-hidden", text: ", quantity" })),
        quantity,
        h("button", { type: "button", class: "link remove", "aria-label": `Remove ${name} from the cart`, onclick: () => { cart.remove(line.product_id); lineErrors.delete(line.product_id); drawCart(); } }, "Remove"),
        problems.length ? h("p", { id: errorId, class: "error line-error", text: problems.join(" ") }) : null,
      );
    }));
    if (!lines.length) cartList.append(h("li", { class: "hint", text: "Your cart is empty. Add products from the catalogue." }));
    cartTotal.textContent = lines.length ? `Total ${money(total)}` : "";
    const units = lines.reduce((sum, line) => sum + (Number(line.quantity) || 0), 0);
    cartBarText.textContent = `Cart: ${units} item${units === 1 ? "" : "s"}, total ${money(total)}`;
    cartBar.hidden = !lines.length;
    placeButton.disabled = !lines.length;
  }

  async function refreshStock() {
    try {
      const fresh = await loadCatalogue();
      products = new Map(fresh.map((p) => [p.product_id, p]));
      catalogueErrors.clear();
      redraw(drawn, fresh, () => {
        drawCatalogue();
        drawCart();
      });
    } catch (error) {
      catalogueErrors.show(`The catalogue could not be loaded: ${error.message}`);
    }
  }

  /** A refused order's field errors, each on the cart line (or field) the user typed it in. */
  function showRefusal(error, lines) {
    lineErrors.clear();
    const general = [];
    for (const { pointer, detail } of error.fields) {
      const line = /^\/items\/(\d+)(?:\/|$)/.exec(pointer);
      const sent = line ? lines[Number(line[1])] : null;
      if (sent) {
        lineErrors.set(sent.product_id, [...(lineErrors.get(sent.product_id) || []), detail]);
      } else if (pointer === "/customer_id") {
        general.push(`Customer id: ${detail}`);
      } else {
        general.push(detail);
      }
    }
    drawCart();
    if (error.fields.length) {
      const lineCount = [...lineErrors.keys()].length;
      orderErrors.show([
        lineCount ? `The order was not placed: ${lineCount === 1 ? "one line needs" : `${lineCount} lines need`} a change (shown in the cart).` : "The order was not placed.",
        ...general,
      ]);
      const firstInvalid = cartList.querySelector("[aria-invalid=true]");
      if (firstInvalid) firstInvalid.focus();
    } else {
      orderErrors.show(`The order was not placed: ${error.message}`);
    }
  }

  async function placeOrder(event) {
    event.preventDefault();
    orderErrors.clear();
    const lines = cart.lines();
    const body = {
      items: lines.map((l) => ({ product_id: l.product_id, quantity: l.quantity === "" ? null : Number(l.quantity) })),
      payment: { method: "card", token: token.value },
    };
    if (customer) body.customer_id = customer.querySelector("input").value.trim();
    placeButton.disabled = true;
    try {
      const accepted = await api("POST", "/api/orders", body);
      cart.clear();
      go(`/orders/${accepted.order_id}`);
    } catch (error) {
      showRefusal(error, lines);
      placeButton.disabled = false;
    }
  }

  container.append(
    h("h1", { class: "page-title", text: "Shop" }),
    h("div", { class: "shop" },
      h("section", { class: "panel catalogue", "aria-labelledby": "catalogue-title" },
        h("h2", { id: "catalogue-title", text: "Catalogue" }),
        h("p", { class: "hint", text: "Stock is live: it updates every few seconds." }),
        catalogueErrors,
        h("div", { class: "table-wrap" },
          h("table", { id: "products" },
            h("caption", { class: "visually-hidden", text: "Products, their price and the units in stock" }),
            h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Product" }), h("th", { scope: "col", class: "num", text: "Price" }),
              h("th", { scope: "col", class: "num", text: "In stock" }), h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Add" })))),
            catalogueBody))),
      h("section", { class: "panel cart", "aria-labelledby": "cart-title" },
        h("h2", { id: "cart-title", text: "Cart", tabindex: "-1" }),
        h("form", { id: "order-form", class: "stack", novalidate: true, onsubmit: placeOrder },
          cartList, cartTotal,
          customer,
          h("div", { class: "field" }, h("label", { for: "card-token" }, "Payment card (test tokens)"), token),
          placeButton),
        orderErrors)),
    cartBar,
  );
  drawCart();
  refreshStock();
  const timer = setInterval(refreshStock, STOCK_REFRESH_MS);
  // The bar is for reaching the cart: it steps aside once the cart is on screen (never covering it).
  const cartInView = new IntersectionObserver(([entry]) => cartBar.classList.toggle("cart-in-view", entry.isIntersecting));
  cartInView.observe(container.querySelector(".cart"));
  return () => {
    clearInterval(timer);
    cartInView.disconnect();
  };
}

export const routes = [{
  pattern: /^\/shop$/, title: "Shop", render,
  nav: { label: "Shop", order: 10, href: "#/shop", prefix: /^\/shop/ },
}];
