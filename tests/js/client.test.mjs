// Unit tests of salon_invitations/static/salon_invitations/client.js, run with `node --test`
// by tests/test_js_client.py (which passes the file's path in SALON_CLIENT_JS).
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

const { SalonEventsClient, backoffDelay, tokenExpiry, tokenLifetime } = await import(
  process.env.SALON_CLIENT_JS
);

/** A token valid for 300 s from ``iat`` (the server's clock: ``skew`` seconds off ours). */
function jwt(exp, { skew = 0, lifetime = 300 } = {}) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const claims = exp === undefined ? {} : { exp: exp + skew, iat: exp + skew - lifetime };
  return `${part({ alg: "HS256" })}.${part({ ...claims, user_id: 1 })}.signature`;
}

class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = new URL(url);
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  receive(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const now = () => Math.floor(Date.now() / 1000);
const settle = async () => {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
};

let tokens;
function client(options = {}) {
  tokens = 0;
  return new SalonEventsClient("ws://server.test/ws/api/invitation_to_auto_salon/", {
    getToken: async () => {
      tokens += 1;
      return jwt(now() + 300);
    },
    WebSocket: FakeSocket,
    random: () => 0.5,
    ...options,
  });
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_800_000_000_000 });
});
afterEach(() => mock.timers.reset());

test("tokenExpiry reads the exp claim, and null from anything else", () => {
  assert.equal(tokenExpiry(jwt(1234)), 1234);
  assert.equal(tokenExpiry("not a token"), null);
  assert.equal(tokenExpiry(jwt(undefined)), null);
});

test("tokenLifetime comes from the token's own iat and exp, whatever our clock says", () => {
  assert.equal(tokenLifetime(jwt(now() + 300, { skew: -150 })), 300);
  assert.equal(tokenLifetime(jwt(now() + 300, { skew: 600, lifetime: 65 })), 65);
  assert.equal(tokenLifetime(jwt(undefined)), null);
});

test("backoffDelay: random between the minimum and a cap, `spread` at first, doubling up to the maximum", () => {
  const options = { minDelay: 500, maxDelay: 30000, spread: 5000 };
  // The first attempt is spread too: between 500 ms and 5 s, not 500 ms for every client.
  assert.equal(backoffDelay(0, { ...options, random: () => 0 }), 500);
  assert.equal(backoffDelay(0, { ...options, random: () => 1 }), 5000);
  assert.equal(backoffDelay(0, { ...options, random: () => 0.5 }), 2750);
  // 500 × 2^3 = 4000 is still within the spread; 500 × 2^4 = 8000 is past it.
  assert.equal(backoffDelay(3, { ...options, random: () => 1 }), 5000);
  assert.equal(backoffDelay(4, { ...options, random: () => 1 }), 8000);
  assert.equal(backoffDelay(4, { ...options, random: () => 0.5 }), 4250);
  assert.equal(backoffDelay(50, { ...options, random: () => 1 }), 30000);
  // The defaults are the same numbers.
  assert.equal(backoffDelay(0, { random: () => 1 }), 5000);
  // A spread below the minimum leaves the plain doubling from the minimum.
  assert.equal(backoffDelay(0, { ...options, spread: 0, random: () => 1 }), 500);
  assert.equal(backoffDelay(2, { ...options, spread: 0, random: () => 1 }), 2000);
  for (const attempt of [0, 6]) {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(attempt, options)));
    assert.ok(delays.size > 40, `attempt ${attempt}: delays are spread, not the same for every client`);
  }
});

test("after a server restart, the clients' first reconnects are spread, not all at once", async () => {
  // 200 clients on open sockets; the server goes away (1012 service restart, 1001 going away,
  // or a dropped connection, 1006) and closes them all in the same instant.
  let seed = 7;
  const random = () => {
    seed = (seed * 48271) % 2147483647; // a seeded generator: the test is the same every run
    return seed / 2147483647;
  };
  const clients = Array.from({ length: 200 }, () =>
    client({ random, minDelay: 500, spread: 5000, resumeEvery: 0 }),
  );
  const delays = [];
  for (const events of clients) {
    events.on("state", (state, details) => {
      if (state === "waiting") delays.push(details.delay);
    });
    events.start();
  }
  await settle();
  assert.equal(FakeSocket.all.length, 200);
  for (const socket of FakeSocket.all) socket.open();
  mock.timers.tick(60_000); // up long enough that the back-off starts afresh
  FakeSocket.all.forEach((socket, i) => socket.close([1012, 1001, 1006][i % 3]));
  assert.equal(delays.length, 200);
  assert.ok(Math.min(...delays) >= 500, "nobody comes back before the minimum");
  assert.ok(Math.max(...delays) <= 5000, "everyone is back within the spread");
  // Spread over the window: every second of it gets a share, none more than a third.
  const perSecond = [0, 0, 0, 0, 0];
  for (const delay of delays) perSecond[Math.min(4, Math.floor(delay / 1000))] += 1;
  assert.ok(perSecond.every((n) => n > 0 && n < 200 / 3), `per second: ${perSecond}`);
  // And they do reconnect at those times: half a second in, nobody has; 5 s in, everyone has.
  mock.timers.tick(499);
  await settle();
  assert.equal(FakeSocket.all.length, 200);
  mock.timers.tick(4501);
  await settle();
  assert.equal(FakeSocket.all.length, 400);
  for (const events of clients) events.stop();
});

test("connects with the bearer subprotocol pair and resumes after `since`", async () => {
  const events = client({ since: 41 }).start();
  await settle();
  const [socket] = FakeSocket.all;
  assert.equal(socket.protocols[0], "bearer");
  assert.equal(tokenExpiry(socket.protocols[1]), now() + 300);
  assert.equal(socket.url.searchParams.get("since"), "41");
  assert.equal(events.state, "connecting");
  socket.open();
  assert.equal(events.state, "open");
  events.stop();
});

test("dispatches each event once, by type and to `*`, and remembers the last id", async () => {
  const events = client({ since: 1 }).start();
  await settle();
  const seen = [];
  events.on("invitation.created", (frame) => seen.push(["created", frame.id]));
  events.on("*", (frame) => seen.push(["any", frame.id]));
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ id: 5, type: "invitation.created", invitation: { id: 9 } });
  socket.receive({ id: 5, type: "invitation.created", invitation: { id: 9 } });
  // An earlier event that arrives late (overtaken) is still delivered, once.
  socket.receive({ id: 3, type: "invitation.approved", invitation: { id: 8 } });
  socket.receive({ id: 3, type: "invitation.approved", invitation: { id: 8 } });
  socket.receive("not json");
  socket.receive({ type: "resumed", last_id: 5 });
  assert.deepEqual(seen, [
    ["created", 5],
    ["any", 5],
    ["any", 3],
  ]);
  assert.equal(events.lastId, 5);
  events.stop();
});

test("reconnects after a close with back-off, a new token and the last id", async () => {
  const events = client().start();
  await settle();
  const states = [];
  events.on("state", (state, details) => states.push([state, details.delay]));
  const first = FakeSocket.all[0];
  first.open();
  first.receive({ id: 7, type: "invitation.created", invitation: { id: 1 } });
  first.close(1006);
  // attempt 0: between 500 ms and the 5 s spread; random() = 0.5 -> 2750.
  assert.deepEqual(states.at(-1), ["waiting", 2750]);
  mock.timers.tick(2749);
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  mock.timers.tick(1);
  await settle();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(tokens, 2);
  const second = FakeSocket.all[1];
  assert.equal(second.url.searchParams.get("since"), "7");
  // Failures in a row keep the 5 s cap until 500 ms × 2^attempt passes it, then double it.
  second.close(1006);
  assert.deepEqual(states.at(-1), ["waiting", 2750]);
  // (random 0.5: caps 5000, 5000, 5000, 8000, 16000, 30000 -> the delays below).
  const delays = [states.at(-1)[1]];
  for (let attempt = 2; attempt < 7; attempt += 1) {
    mock.timers.tick(delays.at(-1));
    await settle();
    FakeSocket.all.at(-1).close(1006);
    delays.push(states.at(-1)[1]);
  }
  assert.deepEqual(delays, [2750, 2750, 2750, 4250, 8250, 15250]);
  events.stop();
  mock.timers.tick(60000);
  await settle();
  assert.equal(FakeSocket.all.length, 7, "a stopped client does not reconnect");
});

test("sends a fresh token before the current one expires", async () => {
  const events = client({ refreshMargin: 60, resumeEvery: 0 }).start();
  await settle();
  const socket = FakeSocket.all[0];
  socket.open();
  mock.timers.tick(239_000);
  await settle();
  assert.deepEqual(socket.sent, []);
  mock.timers.tick(1000);
  await settle();
  assert.equal(socket.sent.length, 1);
  assert.equal(socket.sent[0].action, "authenticate");
  assert.equal(tokenExpiry(socket.sent[0].token), now() + 300);
  // The server's answer schedules the next refresh from the new expiry.
  socket.receive({ type: "authenticated", expires_at: now() + 300 });
  mock.timers.tick(240_000);
  await settle();
  assert.equal(socket.sent.filter((frame) => frame.action === "authenticate").length, 2);
  events.stop();
});

test("a short token is renewed half-way, not every second", async () => {
  const events = client({
    getToken: async () => jwt(now() + 40, { lifetime: 40 }),
    resumeEvery: 0,
  }).start();
  await settle();
  const socket = FakeSocket.all[0];
  socket.open();
  mock.timers.tick(19_000);
  await settle();
  assert.deepEqual(socket.sent, []);
  mock.timers.tick(1000);
  await settle();
  assert.equal(socket.sent.length, 1);
  mock.timers.tick(20_000);
  await settle();
  assert.equal(socket.sent.length, 2);
  events.stop();
});

test("a browser clock that is off does not bring the refresh forward or push it back", async () => {
  for (const skew of [-600, 600]) {
    FakeSocket.all = [];
    const events = client({
      getToken: async () => jwt(now() + 300, { skew }),
      resumeEvery: 0,
    }).start();
    await settle();
    const socket = FakeSocket.all[0];
    socket.open();
    mock.timers.tick(239_000);
    await settle();
    assert.deepEqual(socket.sent, [], `skew ${skew}`);
    mock.timers.tick(1000);
    await settle();
    assert.equal(socket.sent.at(-1)?.action, "authenticate", `skew ${skew}`);
    events.stop();
  }
});

test("resumes every minute, and replaces a socket that does not answer", async () => {
  const events = client({ resumeEvery: 60000, answerTimeout: 10000 }).start();
  await settle();
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ id: 12, type: "membership.created", membership: { id: 2 } });
  mock.timers.tick(60000);
  assert.deepEqual(socket.sent, [{ action: "resume", since: 12 }]);
  socket.receive({ type: "resumed", last_id: 15 });
  assert.equal(events.lastId, 15);
  mock.timers.tick(60000);
  assert.deepEqual(socket.sent.at(-1), { action: "resume", since: 15 });
  // No answer within 10 s: the socket is taken for dead and a new one opened.
  mock.timers.tick(10000);
  assert.equal(socket.readyState, 3);
  mock.timers.tick(5000); // the reconnect's back-off: within the 5 s spread
  await settle();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(FakeSocket.all[1].url.searchParams.get("since"), "15");
  events.stop();
});

test("resync_required hands over to the page and moves the cursor", async () => {
  const events = client({ since: 3 }).start();
  await settle();
  const resyncs = [];
  events.on("resync", (frame) => resyncs.push(frame.last_id));
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ type: "resync_required", last_id: 5000 });
  assert.deepEqual(resyncs, [5000]);
  assert.equal(events.lastId, 5000);
  events.stop();
});

test("a refused token is replaced at once; no token at all stops the client", async () => {
  let signedIn = true;
  const events = client({
    getToken: async () => (signedIn ? jwt(now() + 300) : null),
  }).start();
  await settle();
  const socket = FakeSocket.all[0];
  socket.open();
  const errors = [];
  events.on("error", (frame) => errors.push(frame.code));
  socket.receive({ type: "error", code: "invalid_token", detail: "..." });
  assert.deepEqual(errors, ["invalid_token"]);
  assert.equal(socket.readyState, 3);
  signedIn = false;
  mock.timers.tick(5000);
  await settle();
  assert.equal(events.state, "signed_out");
  assert.equal(FakeSocket.all.length, 1);
});

test("without getToken the socket relies on the session cookie", async () => {
  const events = new SalonEventsClient("ws://server.test/ws/api/salon_role/", {
    WebSocket: FakeSocket,
  }).start();
  await settle();
  assert.equal(FakeSocket.all[0].protocols, undefined);
  assert.equal(FakeSocket.all[0].url.searchParams.has("since"), false);
  FakeSocket.all[0].open();
  // Nothing to resume from yet: no resume frame, rather than a replay of everything.
  events.resume();
  assert.deepEqual(FakeSocket.all[0].sent, []);
  events.stop();
});
