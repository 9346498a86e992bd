// The dashboard's live behaviour: buttons and forms call the REST API, and every event that
// arrives on the WebSocket streams makes the page fetch its lists again (rendered by the
// server, so what the page shows is always what the policy lets this user see).
import { SalonEventsClient } from "salon-invitations/client";

const root = document.getElementById("dashboard");
const messages = JSON.parse(document.getElementById("dashboard-messages").textContent);
const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
const announcer = document.getElementById("announcer");
const problem = document.getElementById("problem");
const liveState = document.getElementById("live-state");

// Access tokens ------------------------------------------------------------------------------

let cached = null; // {access, expires_at}
let pending = null;

/** A valid access token (a new one when the cached one ends within 90 s); null when the
 * session has ended. */
async function getToken() {
  if (cached && cached.expires_at - Date.now() / 1000 > 90) return cached.access;
  pending ??= (async () => {
    try {
      const response = await fetch(root.dataset.tokenUrl, {
        method: "POST",
        headers: { "X-CSRFToken": csrf },
        credentials: "same-origin",
      });
      if (response.status === 401 || response.status === 403) {
        signedOut();
        return null;
      }
      if (!response.ok) throw new Error(`token: HTTP ${response.status}`);
      cached = await response.json();
      return cached.access;
    } finally {
      pending = null;
    }
  })();
  return pending;
}

function signedOut() {
  cached = null;
  window.location.assign(`${root.dataset.loginUrl}?next=${encodeURIComponent(location.pathname)}`);
}

// Announcements ------------------------------------------------------------------------------

/** Add a line to the activity log (role="log": screen readers read each new line); the last
 * few lines stay. */
function announce(text) {
  const line = document.createElement("p");
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  line.append(time, " ", text);
  announcer.append(line);
  while (announcer.children.length > 4) announcer.firstElementChild.remove();
}

function showProblem(text) {
  problem.textContent = text;
  problem.hidden = !text;
}

function errorText(body, status) {
  if (body && typeof body === "object") {
    if (typeof body.detail === "string") return body.detail;
    const parts = [];
    for (const [field, value] of Object.entries(body)) {
      const text = Array.isArray(value) ? value.join(" ") : String(value);
      parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
    }
    if (parts.length) return parts.join(" ");
  }
  return messages.failed.replace("%(status)s", String(status));
}

// Refreshing the lists -----------------------------------------------------------------------

let refreshing = null;
let again = false;

/** Fetch the lists again and put the new ones in place; forms outside the lists keep what
 * the user typed. Calls made while one runs are folded into one more run. */
async function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      const response = await fetch(root.dataset.sectionsUrl, { credentials: "same-origin" });
      if (response.status === 401) return signedOut();
      if (!response.ok) continue;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      swap(fresh);
    } while (again);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function swap(fresh) {
  const oldManaged = document.getElementById("managed");
  const newManaged = fresh.getElementById("managed");
  if (oldManaged && newManaged && oldManaged.dataset.salons !== newManaged.dataset.salons) {
    oldManaged.replaceWith(document.adoptNode(newManaged));
  }
  for (const region of fresh.querySelectorAll("[data-region]")) {
    const current = document.querySelector(`[data-region="${region.dataset.region}"]`);
    if (!current || current.innerHTML === region.innerHTML) continue;
    const before = new Set([...current.querySelectorAll("[id]")].map((node) => node.id));
    const focused = document.activeElement?.id;
    current.replaceWith(document.adoptNode(region));
    for (const node of region.querySelectorAll("tr[id], li[id]")) {
      if (!before.has(node.id)) node.classList.add("fresh");
    }
    if (focused) document.getElementById(focused)?.focus();
  }
}

// Events -------------------------------------------------------------------------------------

function describe(frame) {
  const invitation = frame.invitation;
  if (invitation) {
    const mine = document.querySelector(`#invitation-${invitation.id}`);
    if (mine) {
      const cells = mine.querySelectorAll("td");
      return `${cells[0].textContent.trim()}, ${cells[1].textContent.trim()}: ${cells[2].textContent.trim()}`;
    }
    const request = document.querySelector(`#request-${invitation.id}`);
    if (request && frame.type === "invitation.created") {
      return `${messages["invitation.created"]} ${request.firstElementChild.textContent.trim()}`;
    }
  }
  const membership = frame.membership;
  const own = membership && document.querySelector(`#membership-${membership.id}`);
  if (own) return `${messages["membership.mine"]} ${own.textContent.trim()}`;
  return messages[frame.type] ?? messages.changed;
}

async function onEvent(frame) {
  await refresh();
  announce(describe(frame));
}

const streams = [root.dataset.streamUrl, root.dataset.membershipStreamUrl].map((url, index) => {
  const client = new SalonEventsClient(url, {
    getToken,
    since: Number(root.dataset.since),
  });
  client.on("*", onEvent);
  client.on("resync", () => refresh());
  if (index === 0) {
    client.on("state", (state, details) => {
      liveState.dataset.state = state;
      liveState.textContent = messages[`state.${state}`] ?? state;
      if (state === "waiting") liveState.title = `${Math.round(details.delay / 1000)} s`;
    });
  }
  return client.start();
});
window.salonDashboard = { streams, refresh };

// Buttons and forms --------------------------------------------------------------------------

async function call(method, url, body) {
  const token = await getToken();
  if (!token) return null;
  const response = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    // No body (204) or not JSON.
  }
  return { ok: response.ok, status: response.status, data };
}

async function act(control, body, errorBox) {
  const button = control.tagName === "FORM" ? control.querySelector("button[type=submit]") : control;
  button.disabled = true;
  if (errorBox) errorBox.hidden = true;
  showProblem("");
  try {
    const result = await call(control.dataset.api, control.dataset.url, body);
    if (!result) return false;
    if (!result.ok) {
      const text = errorText(result.data, result.status);
      if (errorBox) {
        errorBox.textContent = text;
        errorBox.hidden = false;
      } else {
        showProblem(text);
      }
      return false;
    }
    announce(control.dataset.done || messages.done);
    await refresh();
    return true;
  } catch {
    showProblem(messages.offline);
    return false;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-api]");
  if (button) act(button, {}, null);
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-api]");
  if (!form) return;
  event.preventDefault();
  const body = Object.fromEntries(new FormData(form).entries());
  const done = await act(form, body, form.querySelector(".form-error"));
  if (done && form.hasAttribute("data-reset")) form.reset();
});
