// Hash routes (#/shop, #/orders, #/orders/<id>): a reload keeps the page, the server serves one URL.
//
// A route: {pattern, title, render(container, params, query) -> cleanup?, public?, roles?, nav?}.
// `pattern` is a RegExp over the path part of the hash (its groups are `params`); `query` is the
// URLSearchParams after "?". `roles` limits a route to those roles; `nav` = {label, order} puts it
// in the main navigation. A view module exports its routes; app.js registers them.

const routes = [];

export function addRoutes(...more) {
  routes.push(...more);
}

export function navRoutes(role) {
  return routes
    .filter((route) => route.nav && allowed(route, role))
    .sort((a, b) => a.nav.order - b.nav.order);
}

function allowed(route, role) {
  return !route.roles || route.roles.includes(role);
}

/** The current hash split into its path and query: "#/orders?status=FAILED". */
export function currentLocation() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = hash.split("?");
  return { path, query: new URLSearchParams(search) };
}

export function go(path) {
  if (window.location.hash === `#${path}`) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = path;
}

/** True when a route serves `path` but not to `role` (the page says "not allowed", not "not found"). */
export function refused(path, role) {
  return routes.some((route) => route.pattern.test(path) && !allowed(route, role));
}

/** The route matching `path` for `role`: {route, params}, or null. */
export function match(path, role) {
  for (const route of routes) {
    const found = route.pattern.exec(path);
    if (found && allowed(route, role)) return { route, params: found.slice(1).map(decodeURIComponent) };
  }
  return null;
}
