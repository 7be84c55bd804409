// The customer web app: sign in, shop from the catalogue with a cart, follow each order's saga,
// browse "my orders" and cancel; for an admin, the ops console. Plain ES modules on the REST
// API; no build step.
//
// Adding a section (e.g. an admin console): write views/<name>.js exporting `routes` (see
// router.js; `roles: ["ADMIN"]` keeps it to admins, `nav` adds a link) and register it below.

import { onSignedOut, session, signOut } from "./api.js";
import { announce, h } from "./dom.js";
import { addRoutes, currentLocation, go, match, navRoutes, refused } from "./router.js";
import * as opsConsole from "./views/console.js";
import * as order from "./views/order.js";
import * as orders from "./views/orders.js";
import * as shop from "./views/shop.js";
import * as signin from "./views/signin.js";

addRoutes(...signin.routes, ...shop.routes, ...orders.routes, ...order.routes, ...opsConsole.routes);

const main = document.getElementById("main");
let cleanup = null;

function renderNav() {
  const user = session.user;
  const nav = document.getElementById("nav");
  nav.hidden = !user;
  if (!user) return nav.replaceChildren();
  const { path } = currentLocation();
  const links = navRoutes(user.role).map((route) => {
    const current = route.nav.prefix.test(path);
    return h("a", { href: route.nav.href, "aria-current": current ? "page" : false }, route.nav.label);
  });
  const who = h("span", { class: "whoami", text: `${user.user_id}${user.role === "ADMIN" ? " (admin)" : ""}` });
  const out = h("button", { type: "button", class: "secondary", id: "logout", onclick: logOut }, "Sign out");
  nav.replaceChildren(...links, who, out);
}

async function logOut() {
  await signOut();
  go("/signin");
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  const { path, query } = currentLocation();
  const user = session.user;
  if (!user && path !== "/signin") {
    sessionStorage.setItem("after-signin", window.location.hash);
    return go("/signin");
  }
  if (user && (path === "/" || path === "/signin")) return go("/shop");
  const found = match(path, user?.role);
  renderNav();
  if (!found && refused(path, user?.role)) {
    main.replaceChildren(h("section", { class: "panel", id: "not-allowed" }, h("h1", { text: "Not allowed" }),
      h("p", { text: `This page is for administrators; ${user.user_id} cannot open it.` }),
      h("p", {}, h("a", { href: "#/shop" }, "Back to the shop"), ".")));
    document.title = "Not allowed — Order management";
    return announce("Not allowed");
  }
  if (!found) {
    main.replaceChildren(h("section", { class: "panel" }, h("h1", { text: "Page not found" }),
      h("p", {}, "There is nothing at this address. ", h("a", { href: "#/shop" }, "Back to the shop"), ".")));
    document.title = "Not found — Order management";
    return;
  }
  main.replaceChildren();
  document.title = `${found.route.title} — Order management`;
  cleanup = found.route.render(main, found.params, query) || null;
  // Move focus to the new page's heading, as a page load would, and tell screen readers.
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  announce(found.route.title);
}

// The skip link would otherwise change the hash route: it only moves focus to the content.
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
onSignedOut(() => go("/signin"));
window.addEventListener("hashchange", render);
render();
