// The JSON API, as the dashboard calls it: same origin, the session cookie sent by the browser,
// and on every change the session's CSRF token (from sign-in or /api/auth/me). Errors come back
// as the server's words.

let csrf = "";

export function setCsrf(token: string): void {
  csrf = token;
}

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = csrf;
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.");
  }
  const text = await resp.text();
  let json: any = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON: reported below */
  }
  if (!resp.ok) {
    const words = typeof json?.error === "string" ? json.error : `HTTP ${resp.status}`;
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("signed-out", { detail: words }));
    throw new ApiError(resp.status, words);
  }
  return json as T;
}

export interface Me {
  user: { login: string; admin: boolean };
  apps: { slug: string; role: "owner" | "publisher" | "viewer" }[];
  csrf?: string;
}

export type Role = "owner" | "publisher" | "viewer";

export function roleOf(me: Me, slug: string): Role | undefined {
  if (me.user.admin) return "owner";
  return me.apps.find((a) => a.slug === slug)?.role;
}

export const can = {
  publish: (r?: Role) => r === "owner" || r === "publisher",
  own: (r?: Role) => r === "owner",
};
