// The API key (kept in localStorage) and JSON calls that turn API errors into readable messages.
const KEY_STORAGE = "influential.apiKey";

export function takeKeyFromUrl() {
  // make dev prints http://host/#key=ik_…: store it and drop it from the address bar.
  const match = location.hash.match(/key=([A-Za-z0-9_-]+)/);
  if (match) {
    saveKey(match[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

export function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }
export function saveKey(key) { localStorage.setItem(KEY_STORAGE, key.trim()); }
export function forgetKey() { localStorage.removeItem(KEY_STORAGE); }

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
  }
}

function describe(status, body) {
  if (status === 401) return "Your API key is missing or not valid: set it under “API key” at the top.";
  if (status === 403) return `Your API key may not do this (${body.error}).`;
  if (status === 429) return "Too many requests for this key: wait a moment and try again.";
  if (status === 503) return "The search service is temporarily unavailable: try again in a few seconds.";
  if (status === 422 && Array.isArray(body.detail)) {
    return "Please check: " + body.detail.map((d) => `${(d.field || "").replace(/^body\./, "")} ${d.reason}`).join("; ");
  }
  return body && body.error ? body.error : `Unexpected error (HTTP ${status})`;
}

export async function call(method, path, body) {
  const headers = { "X-API-Key": apiKey() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Small DOM helper: text only, never HTML from data.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && name !== "list") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const number = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
