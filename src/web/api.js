// The API client: the session (user, CSRF token, what they may do) and every request, as any
// integration makes them. A 401 outside sign-in ends the session (the page says so).

/** Told when the server says the session ended. */
let signedOut = null;

/** The page's answer to a session that ended. */
export function onSignedOut(handler) {
  signedOut = handler;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = { user: null, csrf: null, can: {} };

export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["x-csrf-token"] = session.csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data?.error ?? "error", data?.message ?? response.statusText);
    if (response.status === 401 && path !== "/api/session") signedOut?.("Your session ended: sign in again.");
    throw error;
  }
  return data;
}
