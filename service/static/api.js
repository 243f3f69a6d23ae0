// The REST client of the dashboard: a read token asked once and kept in this tab's
// sessionStorage (gone when the tab closes), sent as a bearer token on every call.

const KEY = "tunegate-token";

export class Unauthorized extends Error {}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

function query(params) {
  const entries = Object.entries(params || {}).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return entries.length ? "?" + new URLSearchParams(entries).toString() : "";
}

/** GET a JSON resource; throws Unauthorized on 401/403, Error("Name: detail") otherwise. */
export async function get(path, params) {
  const response = await fetch(path + query(params), {
    headers: {Authorization: `Bearer ${token() || ""}`, Accept: "application/json"},
  });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (response.status === 401 || response.status === 403) {
    throw new Unauthorized(body ? `${body.error}: ${body.detail}` : `HTTP ${response.status}`);
  }
  if (!response.ok) throw new Error(body ? `${body.error}: ${body.detail}` : `HTTP ${response.status}`);
  return body;
}

export const enc = encodeURIComponent;
