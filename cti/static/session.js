"use strict";
// Signing in and calling /api/v1 from the pages. The session is in HttpOnly cookies the page never
// reads; the page sends back the CSRF token (the cookie hotline_csrf) on every request that
// changes something, and renews the session (POST /api/v1/auth/refresh) when the access token ran out.
const Session = (() => {
  const csrf = () => (document.cookie.split("; ").find((c) => c.startsWith("hotline_csrf=")) || "").slice(13);

  async function call(method, path, body, retried) {
    const headers = { "Accept": "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && !retried && path !== "/api/v1/auth/refresh" && path !== "/api/v1/auth/sign-in") {
      if (await refresh()) return call(method, path, body, true);
    }
    return r;
  }

  async function refresh() {
    try {
      const r = await fetch("/api/v1/auth/refresh", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: "{}" });
      return r.ok;
    } catch (e) { return false; }
  }

  async function me() {
    const r = await call("GET", "/api/v1/auth/me");
    return r.ok ? r.json() : null;
  }

  async function signIn(username, password) {
    const r = await call("POST", "/api/v1/auth/sign-in", { username, password });
    if (r.ok) return { user: (await r.json()).user };
    let message = `${r.status}`;
    try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
    return { error: message };
  }

  async function signOut() {
    try { await call("POST", "/api/v1/auth/sign-out"); } catch (e) { /* gone anyway */ }
  }

  return { call, me, refresh, signIn, signOut };
})();
