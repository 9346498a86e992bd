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

let cached = null; // {access, until, lifetime}: until is on this browser's clock
let pending = null;
let leaving = false;
let refused = false;

/** A valid access token: the cached one while more than 60 % of its life (at most 90 s) is
 * left, so that the client's renewal (a minute before the end, or half-way) gets a new one.
 * null when the page cannot get one: the session ended (the page goes to the log-in page) or
 * the server refused (403). Other failures throw, and the client tries again later. */
async function getToken() {
  const left = cached && cached.until - Date.now() / 1000;
  if (cached && left > Math.min(90, cached.lifetime * 0.6)) return cached.access;
  pending ??= (async () => {
    try {
      const response = await fetch(root.dataset.tokenUrl, {
        method: "POST",
        headers: { "X-CSRFToken": csrf },
        credentials: "same-origin",
      });
      if (response.status === 401) {
        signedOut();
        return null;
      }
      if (response.status === 403) {
        // The CSRF check failed. Going to the log-in page would only come back here.
        refused = true;
        showProblem(messages.refused.replace("%(status)s", String(response.status)));
        return null;
      }
      if (!response.ok) throw new Error(`token: HTTP ${response.status}`);
      const body = await response.json();
      // The lifetime, not the server's expiry time: this browser's clock may be off.
      const lifetime = body.expires_in;
      cached = { access: body.access, until: Date.now() / 1000 + lifetime, lifetime };
      return cached.access;
    } finally {
      pending = null;
    }
  })();
  return pending;
}

function signedOut() {
  cached = null;
  if (leaving) return;
  leaving = true;
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

function showProblem(text, kind = "") {
  problem.textContent = text;
  problem.hidden = !text;
  problem.dataset.kind = kind;
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
      let response;
      try {
        response = await fetch(root.dataset.sectionsUrl, { credentials: "same-origin" });
      } catch {
        showProblem(messages.offline, "stale");
        return;
      }
      if (response.status === 401) return signedOut();
      if (!response.ok) {
        showProblem(messages.stale.replace("%(status)s", String(response.status)), "stale");
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      swap(fresh);
      if (problem.dataset.kind === "stale") showProblem("");
    } while (again);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Each region's HTML as the server last rendered it: what a new rendering is compared with
 * (the live HTML also holds what the script changed, such as an error shown under a form). */
const rendered = new Map();
function remember(scope) {
  for (const region of scope.querySelectorAll("[data-region]")) {
    rendered.set(region.dataset.region, region.innerHTML);
  }
}
remember(document);

function swap(fresh) {
  const oldManaged = document.getElementById("managed");
  const newManaged = fresh.getElementById("managed");
  if (oldManaged && newManaged && oldManaged.dataset.salons !== newManaged.dataset.salons) {
    remember(newManaged);
    oldManaged.replaceWith(document.adoptNode(newManaged));
  }
  for (const region of fresh.querySelectorAll("[data-region]")) {
    const name = region.dataset.region;
    const current = document.querySelector(`[data-region="${name}"]`);
    if (!current || rendered.get(name) === region.innerHTML) continue;
    rendered.set(name, region.innerHTML);
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
    if (frame.type === "invitation.created" && invitation.direction === "invite") {
      return `${messages["invite.created"]} ${invitation.email}`;
    }
    if (frame.type === "invitation.created") {
      const request = document.querySelector(`#request-${invitation.id} .summary`);
      return request
        ? `${messages["invitation.created"]} ${request.textContent.trim()}`
        : messages["request.arrived"];
    }
  }
  const membership = frame.membership;
  const own = membership && document.querySelector(`#membership-${membership.id}`);
  if (own) return `${messages["membership.mine"]} ${own.textContent.trim()}`;
  return messages[frame.type] ?? messages.changed;
}

/** The event id the page was rendered at. A replay can resend an earlier event (one whose
 * delivery may have been overtaken): the lists are fetched again, but it is not announced. */
const renderedAt = Number(root.dataset.since);

/** What this page changed itself in the last seconds ("invitation:12"): the action's own
 * message was said already, its event is not announced again. */
const ownChanges = new Map();

function subject(frame) {
  const object = frame.invitation ? "invitation" : frame.membership ? "membership" : null;
  return object && `${object}:${frame[object].id}`;
}

async function onEvent(frame) {
  try {
    await refresh();
  } finally {
    const key = subject(frame);
    const own = key && Date.now() - (ownChanges.get(key) ?? 0) < 5000;
    if (!own && !(frame.id <= renderedAt)) announce(describe(frame));
  }
}

// Log-out: close the sockets first (a token outlives the session by up to its lifetime).
document.querySelector("form[data-log-out]")?.addEventListener("submit", () => {
  leaving = true;
  for (const client of streams) client.stop();
});

const streams = [root.dataset.streamUrl, root.dataset.membershipStreamUrl].map((url, index) => {
  const client = new SalonEventsClient(url, {
    getToken,
    since: renderedAt,
  });
  client.on("*", onEvent);
  client.on("resync", () => refresh());
  if (index === 0) {
    client.on("state", (state, details) => {
      const shown = state === "signed_out" && refused ? "stopped" : state;
      liveState.dataset.state = shown;
      liveState.textContent = messages[`state.${shown}`] ?? shown;
      if (state === "waiting") liveState.title = `${Math.round(details.delay / 1000)} s`;
    });
  }
  return client.start();
});
window.salonDashboard = { streams, refresh };

// Buttons and forms --------------------------------------------------------------------------

async function call(method, url, body, retried = false) {
  const token = await getToken();
  if (!token) return null;
  const response = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !retried) {
    // The token was refused (expired early, or the clock was off): once more with a new one.
    cached = null;
    return call(method, url, body, true);
  }
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
      const text =
        result.status === 404 ? messages.gone : errorText(result.data, result.status);
      // What the page offered may be out of date (a role changed, a request was decided):
      // bring it up to date first, then say what went wrong, under the form if it is still
      // there.
      if ([403, 404, 409].includes(result.status)) await refresh();
      const box = errorBox && errorBox.isConnected ? errorBox : null;
      if (box) {
        box.textContent = text;
        box.hidden = false;
      } else {
        showProblem(text);
      }
      return false;
    }
    if (result.data && typeof result.data.id === "number") {
      const object = control.dataset.url.includes("salon_role") ? "membership" : "invitation";
      ownChanges.set(`${object}:${result.data.id}`, Date.now());
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
