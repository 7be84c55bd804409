// The public REST API as the web app uses it: tokens, JSON requests, problem documents.
// Tokens live in sessionStorage only (a tab's sign-in ends with the tab).

const TOKEN_KEYS = ["access", "refresh"];

/** The signed-in user's tokens and claims, kept in sessionStorage. */
export const session = {
  get access() { return sessionStorage.getItem("access"); },
  get refresh() { return sessionStorage.getItem("refresh"); },
  /** The access token's claims ({user_id, role, customer_id, ...}), or null when signed out. */
  get user() {
    const token = this.access;
    if (!token) return null;
    try {
      return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    } catch {
      return null;
    }
  },
  get isAdmin() { return this.user?.role === "ADMIN"; },
  save(tokens) {
    for (const key of TOKEN_KEYS) {
      if (tokens[key]) sessionStorage.setItem(key, tokens[key]);
      else sessionStorage.removeItem(key);
    }
  },
  clear() { this.save({}); },
};

/** An error answer of the API: its status and problem document (RFC 9457). */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problemMessage(status, problem, retryAfter));
    this.status = status;
    this.problem = problem || {};
    /** Field errors: [{pointer: "/items/0/quantity", detail: "..."}] (400 only). */
    this.fields = Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

function problemMessage(status, problem, retryAfter) {
  if (status === 429 || status === 503) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : "";
    const fallback = status === 429 ? "Too many attempts." : "The service is busy.";
    return `${problem?.detail || fallback}${wait}`;
  }
  return problem?.detail || problem?.title || `The server answered ${status}.`;
}

/** Listeners told when the session ends (a refused refresh): the app goes back to sign-in. */
const signedOutListeners = [];
export function onSignedOut(listener) { signedOutListeners.push(listener); }

/**
 * One JSON request; resolves with the body (null when empty), rejects with an ApiError.
 * A 401 renews the tokens once and tries again, unless `renew` is false (the auth calls).
 */
export async function api(method, path, body, { renew = true } = {}) {
  const response = await send(method, path, body);
  if (response.status === 401 && renew && session.refresh) {
    if (await refreshTokens()) return api(method, path, body, { renew: false });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: `The server answered ${response.status} with a body that is not JSON.` };
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return data;
}

function send(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session.access) headers.Authorization = `Bearer ${session.access}`;
  return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function refreshTokens() {
  const response = await send("POST", "/api/auth/token/refresh", { refresh: session.refresh });
  if (response.ok) {
    session.save(await response.json());
    return true;
  }
  session.clear();
  for (const listener of signedOutListeners) listener();
  return false;
}

export async function signIn(username, password) {
  session.save(await api("POST", "/api/auth/token", { username, password }, { renew: false }));
}

export async function signOut() {
  try {
    if (session.refresh) await api("POST", "/api/auth/logout", { refresh: session.refresh }, { renew: false });
  } catch {
    // Already invalid: signing out locally is all that is left to do.
  }
  session.clear();
}
