// django-salon-invitations: a browser client for the event streams (docs/client.md).
//
//   import { SalonEventsClient } from "/static/salon_invitations/client.js";
//   const client = new SalonEventsClient("wss://example.com/ws/api/invitation_to_auto_salon/", {
//     getToken: async () => (await fetch("/token", { method: "POST" })).json().then((b) => b.access),
//     since: 1234,
//   });
//   client.on("invitation.created", (frame) => { ... });
//   client.start();
//
// What it does for you:
// - authenticates with the ["bearer", <access>] subprotocol pair, and sends a fresh access token
//   ({"action": "authenticate"}) before the current one expires (timed from the token's own
//   iat and exp, so a browser clock that is off does not matter);
// - reconnects after any close but its own, waiting a random time up to a cap ("full jitter"):
//   the first reconnect too is spread over a few seconds (``spread``), and the cap doubles with
//   each failed attempt beyond that, so that clients cut off together (a deploy restarting the
//   servers) come back spread out rather than in one burst;
// - resumes from the last event id it saw, on every reconnect (?since=) and also every minute
//   and whenever the page becomes visible again (events can be lost on a live socket when a
//   server is restarting), and never delivers an event id twice;
// - dispatches each frame to the callbacks registered for its type.

const CLOSE_UNAUTHENTICATED = 4401;

/** The ``exp`` claim (seconds since the epoch) of a JWT, or null when it has none. */
export function tokenExpiry(token) {
  const exp = tokenClaim(token, "exp");
  return typeof exp === "number" ? exp : null;
}

/** Seconds a JWT is valid for, from its own ``iat`` and ``exp`` (both the server's clock, so
 * a browser clock that is off does not matter); without ``iat``, ``exp`` against this clock.
 * null when the token has no ``exp``. */
export function tokenLifetime(token, now = Date.now()) {
  const exp = tokenExpiry(token);
  if (exp === null) return null;
  const iat = tokenClaim(token, "iat");
  return typeof iat === "number" ? exp - iat : exp - now / 1000;
}

function tokenClaim(token, name) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")))[name];
  } catch {
    return undefined;
  }
}

/** Milliseconds to wait before reconnect attempt ``attempt`` (0, 1, ...): uniformly random
 * between ``minDelay`` and a cap. The cap is ``spread`` for the first attempts, so that even
 * the first reconnect of clients cut off at the same moment is spread over that window, and
 * doubles with each attempt once ``minDelay`` × 2^attempt passes it, up to ``maxDelay``. */
export function backoffDelay(
  attempt,
  { minDelay = 500, maxDelay = 30000, spread = 5000, random = Math.random } = {},
) {
  const doubled = minDelay * 2 ** Math.min(attempt, 30);
  const cap = Math.min(maxDelay, Math.max(spread, doubled));
  return Math.round(minDelay + random() * Math.max(0, cap - minDelay));
}

export class SalonEventsClient {
  /**
   * @param {string} url  ws:// or wss:// address of a stream; a path is resolved against the page.
   * @param {object} options
   * @param {() => Promise<string|null>} [options.getToken]  returns a JWT access token; null
   *   means the user is signed out (the client stops). Without it the socket relies on the
   *   session cookie.
   * @param {number|null} [options.since]  resume after this event id on the first connection.
   * @param {number} [options.minDelay=500]  ms, shortest wait before a reconnect.
   * @param {number} [options.maxDelay=30000]  ms, the cap of the back-off.
   * @param {number} [options.spread=5000]  ms, the window the first reconnects are spread over.
   * @param {number} [options.resumeEvery=60000]  ms between resumes on an open socket (0: never).
   * @param {number} [options.answerTimeout=10000]  ms to wait for ``resumed`` before the socket
   *   is taken for dead and replaced.
   * @param {number} [options.refreshMargin=60]  seconds before expiry to send a new token.
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      getToken: null,
      since: null,
      minDelay: 500,
      maxDelay: 30000,
      spread: 5000,
      resumeEvery: 60000,
      answerTimeout: 10000,
      refreshMargin: 60,
      WebSocket: globalThis.WebSocket,
      random: Math.random,
      ...options,
    };
    this.lastId = this.options.since ?? null;
    this.state = "idle";
    this._seen = new Set();
    this._callbacks = new Map();
    this._attempt = 0;
    this._socket = null;
    this._timers = {};
    this._stopped = true;
    this._onVisible = () => {
      if (globalThis.document?.visibilityState === "visible") this.resume();
    };
  }

  /** Call ``callback(frame)`` for frames of ``type``. Besides the event types: ``*`` (every
   * event), ``resumed``, ``resync`` (the client was too far behind: reload the state over
   * REST), ``error`` (an error frame), ``state`` (``connecting``, ``open``, ``waiting``,
   * ``stopped``, ``signed_out``; the second argument has details). Returns an unsubscribe
   * function. */
  on(type, callback) {
    if (!this._callbacks.has(type)) this._callbacks.set(type, new Set());
    this._callbacks.get(type).add(callback);
    return () => this._callbacks.get(type).delete(callback);
  }

  start() {
    if (!this._stopped) return this;
    this._stopped = false;
    globalThis.document?.addEventListener("visibilitychange", this._onVisible);
    globalThis.addEventListener?.("online", this._onVisible);
    this._connect();
    return this;
  }

  stop() {
    this._stopped = true;
    globalThis.document?.removeEventListener("visibilitychange", this._onVisible);
    globalThis.removeEventListener?.("online", this._onVisible);
    for (const name of Object.keys(this._timers)) this._clear(name);
    const socket = this._socket;
    this._socket = null;
    if (socket) socket.close(1000);
    this._setState("stopped");
  }

  /** Ask for the events missed since the last one seen (done on its own every minute). A
   * client that was given no ``since`` and has seen no event yet has nothing to resume from. */
  resume() {
    if (!this._isOpen() || this.lastId === null) return;
    this._send({ action: "resume", since: this.lastId });
    this._later("answer", this.options.answerTimeout, () => this._socket?.close(1000));
  }

  // Connection -----------------------------------------------------------------------------------

  async _connect() {
    this._setState("connecting", { attempt: this._attempt });
    let token = null;
    if (this.options.getToken) {
      try {
        token = await this.options.getToken();
      } catch (error) {
        this._retry({ error });
        return;
      }
      if (this._stopped) return;
      if (!token) {
        this._stopped = true;
        this._setState("signed_out");
        return;
      }
    }
    const url = new URL(this.url, globalThis.location?.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    if (this.lastId !== null) url.searchParams.set("since", String(this.lastId));
    const socket = token
      ? new this.options.WebSocket(url.toString(), ["bearer", token])
      : new this.options.WebSocket(url.toString());
    this._socket = socket;
    let openedAt = null;
    socket.onopen = () => {
      openedAt = Date.now();
      this._setState("open");
      this._scheduleRefresh(token ? tokenLifetime(token) : null);
      this._scheduleResume();
    };
    socket.onmessage = (message) => this._receive(message.data);
    socket.onclose = (event) => {
      if (this._socket !== socket) return;
      this._socket = null;
      for (const name of ["refresh", "resume", "answer"]) this._clear(name);
      if (this._stopped) return;
      // A connection that stayed up a while starts the back-off afresh.
      if (openedAt !== null && Date.now() - openedAt > 10000) this._attempt = 0;
      this._retry({ code: event.code, reason: event.reason });
    };
  }

  _retry(details) {
    if (this._stopped) return;
    const delay = backoffDelay(this._attempt, this.options);
    this._attempt += 1;
    this._setState("waiting", { ...details, delay });
    this._later("reconnect", delay, () => this._connect());
  }

  /** Send a new token ``refreshMargin`` seconds before the current one ends, or half-way
   * through a token shorter than twice that. Counted from when the token arrived, so the
   * browser's clock need not be right. */
  _scheduleRefresh(lifetime) {
    this._clear("refresh");
    if (!lifetime || !this.options.getToken) return;
    const wait = Math.max(1, lifetime - this.options.refreshMargin, lifetime / 2) * 1000;
    this._later("refresh", wait, async () => {
      let token = null;
      try {
        token = await this.options.getToken();
      } catch {
        // Try again shortly; the server closes the socket (4401) if the token runs out first.
        this._scheduleRefresh(this.options.refreshMargin + 5);
        return;
      }
      if (!token) {
        this.stop();
        this._setState("signed_out");
        return;
      }
      this._send({ action: "authenticate", token });
      this._scheduleRefresh(tokenLifetime(token));
    });
  }

  _scheduleResume() {
    this._clear("resume");
    if (!this.options.resumeEvery) return;
    this._later("resume", this.options.resumeEvery, () => {
      this.resume();
      this._scheduleResume();
    });
  }

  // Frames ---------------------------------------------------------------------------------------

  _receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    switch (frame.type) {
      case "resumed":
        this._clear("answer");
        this._attempt = 0;
        this._advance(frame.last_id);
        this._emit("resumed", frame);
        return;
      case "resync_required":
        this._clear("answer");
        this._seen.clear();
        this.lastId = frame.last_id;
        this._emit("resync", frame);
        return;
      case "authenticated":
        // The next refresh is already planned from the token sent.
        return;
      case "pong":
        return;
      case "error":
        this._emit("error", frame);
        // A refused token: start over with a new one rather than wait for the 4401.
        if (frame.code === "invalid_token") this._socket?.close(1000);
        return;
      default:
        break;
    }
    if (typeof frame.id === "number") {
      if (this._seen.has(frame.id)) return;
      this._seen.add(frame.id);
      if (this._seen.size > 2000) this._seen.delete(this._seen.values().next().value);
      this._advance(frame.id);
    }
    this._emit(frame.type, frame);
    this._emit("*", frame);
  }

  _advance(id) {
    if (typeof id === "number" && (this.lastId === null || id > this.lastId)) this.lastId = id;
  }

  _emit(type, frame, details) {
    for (const callback of this._callbacks.get(type) ?? []) {
      try {
        callback(frame, details);
      } catch (error) {
        // One failing callback must not stop the others or the client.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  _setState(state, details = {}) {
    this.state = state;
    this._emit("state", state, details);
  }

  // Helpers --------------------------------------------------------------------------------------

  _isOpen() {
    return this._socket !== null && this._socket.readyState === 1;
  }

  _send(frame) {
    if (this._isOpen()) this._socket.send(JSON.stringify(frame));
  }

  _later(name, delay, callback) {
    this._clear(name);
    this._timers[name] = setTimeout(() => {
      delete this._timers[name];
      callback();
    }, delay);
  }

  _clear(name) {
    if (this._timers[name] !== undefined) clearTimeout(this._timers[name]);
    delete this._timers[name];
  }
}

export { CLOSE_UNAUTHENTICATED };
