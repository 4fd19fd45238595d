// End-to-end tests of ../static/pushgate.js against real gateways: run by
// TestJSClientEndToEnd (cmd/gateway) with `node --test`, which starts
// nats-server and two gateways in cluster mode, and two single gateways,
// and passes their addresses:
//   PG_WS_A, PG_WS_B       ws://host:port of each cluster gateway's public listener
//   PG_ADMIN_A, PG_ADMIN_B http://host:port of each admin listener
//   PG_WS_C, PG_ADMIN_C    a single gateway with tokens and --presence 'room:*'
//   PG_WS_D, PG_ADMIN_D    a single gateway in open mode, --presence 'room:*',
//                          --presence-event-rate 3, --ping-interval 200ms
//   PG_SECRET              the HS256 secret A, B and C verify tokens with
//   PG_NODE_MODULES        a node_modules directory holding the ws package
//   PG_TRANSPORT           "websocket", or "sse": every client on the fallback
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import net from "node:net";

const env = process.env;
// Node 20 has no WebSocket of its own: the ws package stands in for the
// browser's. taps see every frame any client receives.
const taps = new Set();
const WS = createRequire(env.PG_NODE_MODULES + "/")("ws");
globalThis.WebSocket = class extends WS {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => { for (const tap of taps) tap(e.data); });
  }
};
// Under require, pushgate.js is the module's export (the package's main).
const { Pushgate: Client } = createRequire(import.meta.url)("../static/pushgate.js");
// PG_TRANSPORT=sse runs every test on the fallback, an event stream and
// POSTed ops (Node 20 has EventSource behind --experimental-eventsource);
// taps see its events as they see frames.
const Pushgate = env.PG_TRANSPORT
  ? class extends Client { constructor(url, opts) { super(url, { transports: [env.PG_TRANSPORT], ...opts }); } }
  : Client;
if (env.PG_TRANSPORT === "sse") {
  const ES = globalThis.EventSource;
  globalThis.EventSource = class extends ES {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => { for (const tap of taps) tap(e.data); });
    }
  };
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

// mint signs an HS256 token, as a backend would.
function mint(claims) {
  const signed = b64url({ alg: "HS256", typ: "JWT" }) + "." + b64url(claims);
  return signed + "." + createHmac("sha256", env.PG_SECRET).update(signed).digest("base64url");
}

const nowSec = () => Math.floor(Date.now() / 1000);

async function publish(admin, channel, data) {
  const resp = await fetch(admin + "/api/publish", { method: "POST", body: JSON.stringify({ channel, data }) });
  assert.equal(resp.status, 200, await resp.clone().text());
  return resp.json();
}

// control calls one of the admin API's control endpoints.
async function control(admin, path, body) {
  const resp = await fetch(admin + path, { method: "POST", body: JSON.stringify(body) });
  assert.equal(resp.status, 200, await resp.clone().text());
  return resp.json();
}

async function history(admin, channel) {
  const resp = await fetch(admin + "/api/history?channel=" + encodeURIComponent(channel));
  assert.equal(resp.status, 200);
  return resp.json();
}

// until polls cond (which may be async) until it holds, failing after ms.
async function until(what, cond, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// next resolves with a client's next event name for which pred holds,
// failing after ms.
function next(pg, name, pred = () => true, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error("timed out waiting for a " + name + " event"));
    }, ms);
    const off = pg.on(name, (x) => {
      if (!pred(x)) return;
      clearTimeout(timer);
      off();
      resolve(x);
    });
  });
}

// within fails a promise that does not settle within ms.
function within(what, promise, ms = 15000) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("timed out waiting for " + what)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// proxy forwards TCP connections to a gateway's public listener until
// freeze(), from which the connections it holds carry nothing either way,
// yet stay open: a dead link. Connections made later forward again.
async function proxy(target) {
  const { hostname, port } = new URL(target);
  const links = new Set();
  const server = net.createServer((down) => {
    const up = net.connect(Number(port), hostname);
    const link = { down, up, frozen: false };
    links.add(link);
    down.on("data", (b) => link.frozen || up.write(b));
    up.on("data", (b) => link.frozen || down.write(b));
    for (const [a, b] of [[down, up], [up, down]]) {
      a.on("error", () => {});
      a.on("close", () => {
        b.destroy();
        links.delete(link);
      });
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: "ws://127.0.0.1:" + server.address().port,
    freeze: () => { for (const l of links) l.frozen = true; },
    close: () => {
      server.close();
      for (const l of links) l.down.destroy();
    },
  };
}

// record collects a client's events by name.
function record(pg, ...names) {
  const ev = {};
  for (const name of names) {
    ev[name] = [];
    pg.on(name, (x) => ev[name].push(x));
  }
  return ev;
}

test("a channel restarted in a new epoch under a live subscription is a resync, not duplicates", async () => {
  const pg = new Pushgate(env.PG_WS_A + "/ws", { token: () => mint({ sub: "alice", channels: ["*"], exp: nowSec() + 3600 }) });
  const ev = record(pg, "subscribed", "resync", "close");
  const got = [];
  pg.subscribe("tick", (data, meta) => got.push([data.n, meta.offset, meta.epoch]));
  pg.connect();
  try {
    await until("the subscription", () => ev.subscribed.length > 0);
    // Published on the other node: it reaches this one through NATS.
    const first = await publish(env.PG_ADMIN_B, "tick", { n: 1 });
    await publish(env.PG_ADMIN_B, "tick", { n: 2 });
    await until("the first two messages", () => got.length === 2);
    assert.deepEqual(got, [[1, 1, first.epoch], [2, 2, first.epoch]]);
    // Idle past --history-ttl, the channel is gone from the stream: the
    // next publish starts a new epoch at offset 1. (A publish made before
    // the stream forgot it stays in the old epoch: try again.)
    let again;
    for (let n = 3; ; n++) {
      await until("the history to expire", async () => (await history(env.PG_ADMIN_B, "tick")).publications.length === 0);
      again = await publish(env.PG_ADMIN_B, "tick", { n });
      if (again.epoch !== first.epoch) break;
    }
    assert.equal(again.offset, 1);
    await until("the new epoch's first message", () => got.some(([, , epoch]) => epoch === again.epoch));
    assert.deepEqual(got[got.length - 1].slice(1), [1, again.epoch]);
    assert.deepEqual(ev.resync, [{ channel: "tick", epoch: again.epoch, reason: "epoch" }]);
    assert.deepEqual(ev.close, [], "the connection stayed up");
  } finally {
    pg.close();
  }
});

test("the token is refreshed on the open connection before it expires", async () => {
  // Tokens of 3 seconds: the client refreshes at about 3/4 of what is left.
  const pg = new Pushgate(env.PG_WS_A + "/ws", { token: () => mint({ sub: "bob", channels: ["*"], exp: nowSec() + 3 }) });
  const ev = record(pg, "refreshed", "close", "error");
  pg.connect();
  try {
    // The second refresh comes after the first token's exp: the
    // connection outlived it.
    await until("two refreshes", () => ev.refreshed.length >= 2);
    assert.deepEqual(ev.close, []);
    assert.deepEqual(ev.error, []);
    assert.equal(pg.state, "connected");
  } finally {
    pg.close();
  }
});

test("a refused refresh ends in 4001 at expiry, and the client reconnects with a fresh token", async () => {
  const tokens = [
    mint({ sub: "carol", channels: ["*"], exp: nowSec() + 2 }),
    mint({ sub: "mallory", channels: ["*"], exp: nowSec() + 3600 }), // refused: another user
    mint({ sub: "carol", channels: ["*"], exp: nowSec() + 3600 }),
  ];
  let calls = 0;
  const pg = new Pushgate(env.PG_WS_B + "/ws", { token: () => tokens[Math.min(calls++, 2)] });
  const ev = record(pg, "close", "error", "state");
  pg.connect();
  try {
    await until("the close at expiry", () => ev.close.length > 0);
    assert.equal(ev.close[0].code, 4001);
    assert.equal(ev.close[0].reason, "token expired");
    assert.deepEqual(ev.error.map((e) => e.code), ["forbidden"]);
    await until("the reconnection", () => pg.state === "connected" && calls === 3);
  } finally {
    pg.close();
  }
});

// A token of user sub with every channel and the info {name}.
const tokenOf = (sub, name) => () => mint({ sub, channels: ["*"], info: { name }, exp: nowSec() + 3600 });

const byClient = (a, b) => (a.client < b.client ? -1 : 1);

test("presence lists a room's clients with their tokens' info, and joins and leaves keep it current", async () => {
  const ann = new Pushgate(env.PG_WS_C + "/ws", { token: tokenOf("ann", "Ann") });
  const bob = new Pushgate(env.PG_WS_C + "/ws", { token: tokenOf("bob", "Bob") });
  const joins = [];
  const leaves = [];
  ann.subscribe("room:1", () => {}, { onJoin: (e) => joins.push(e), onLeave: (e) => leaves.push(e) });
  const annIn = next(ann, "join");
  ann.connect();
  try {
    // Her own join comes right after her subscription.
    const me = await annIn;
    assert.equal(me.channel, "room:1");
    assert.equal(me.user, "ann");
    assert.deepEqual(me.info, { name: "Ann" });
    assert.match(me.client, /^[^.]+\.[0-9a-z]+$/);
    const bobIn = next(ann, "join", (e) => e.user === "bob");
    bob.subscribe("room:1", () => {});
    bob.connect();
    const b = await bobIn;
    assert.deepEqual(b.info, { name: "Bob" });
    assert.notEqual(b.client, me.client);

    const list = await ann.presence("room:1");
    assert.equal(list.channel, "room:1");
    assert.equal(list.truncated, false);
    assert.deepEqual(list.clients.sort(byClient), [
      { client: me.client, user: "ann", info: { name: "Ann" } },
      { client: b.client, user: "bob", info: { name: "Bob" } },
    ].sort(byClient));

    const bobOut = next(ann, "leave");
    bob.close();
    assert.deepEqual(await bobOut, { channel: "room:1", client: b.client, user: "bob", info: { name: "Bob" } });
    assert.deepEqual(joins, [me, b]);
    assert.equal(leaves.length, 1);
    assert.deepEqual((await ann.presence("room:1")).clients.map((c) => c.client), [me.client]);

    // The server's refusals reject, with their code.
    await assert.rejects(ann.presence("room:2"), { code: "not_subscribed", channel: "room:2" });
    ann.subscribe("news", () => {});
    await assert.rejects(ann.presence("news"), { code: "presence_off", channel: "news" });
  } finally {
    ann.close();
    bob.close();
  }
});

test("a channel the backend subscribes a client to is the client's: delivered, recovered after a 4002, then unsubscribed", async () => {
  let gate = null; // run before a (re)connect, once set
  const pg = new Pushgate(env.PG_WS_C + "/ws", {
    token: async () => {
      if (gate) await gate();
      return mint({ sub: "dan", channels: ["*"], exp: nowSec() + 3600 });
    },
  });
  const ev = record(pg, "serverSubscribed", "disconnected", "close", "resync", "state");
  const got = [];
  pg.on("message", (m) => m.channel === "feed:1" && got.push([m.data, m.offset]));
  const personal = next(pg, "subscribed", (e) => e.channel === "#dan");
  pg.connect();
  try {
    await personal;
    const subscribed = next(pg, "serverSubscribed");
    assert.deepEqual(await control(env.PG_ADMIN_C, "/api/subscribe", { user: "dan", channel: "feed:1" }), { connections: 1 });
    assert.equal((await subscribed).channel, "feed:1");
    const handler = [];
    pg.subscribe("feed:1", (d) => handler.push(d)); // a handler for it: no op
    const one = next(pg, "message", (m) => m.data === "one");
    await publish(env.PG_ADMIN_C, "feed:1", "one");
    await one;

    // Disconnected with reconnect: while the client is away (before its
    // reconnection opens) "two" is published; the resubscribe recovers it.
    gate = () => publish(env.PG_ADMIN_C, "feed:1", "two");
    const back = next(pg, "subscribed", (e) => e.channel === "feed:1");
    const two = next(pg, "message", (m) => m.data === "two");
    assert.deepEqual(await control(env.PG_ADMIN_C, "/api/disconnect", { user: "dan", reconnect: true, reason: "rebalancing" }), { connections: 1 });
    const again = await back;
    gate = null;
    assert.equal(again.recovered, true);
    await two;
    assert.deepEqual(got, [["one", 1], ["two", 2]]);
    assert.deepEqual(handler, ["one", "two"]);
    assert.deepEqual(ev.disconnected, [{ code: 4002, reason: "rebalancing", reconnect: true }]);
    assert.deepEqual(ev.close, [{ code: 4002, reason: "rebalancing" }]);
    assert.deepEqual(ev.state, ["connecting", "connected", "reconnecting", "connected"]);
    assert.equal(ev.serverSubscribed.length, 1, "the resubscribe is the client's own");
    // (#dan, empty and without a subscriber meanwhile, was dropped: its
    // new epoch is a resync, though nothing was lost.)
    assert.deepEqual(ev.resync.filter((e) => e.channel === "feed:1"), []);
    assert.equal(pg.lastDisconnect.code, 4002);

    // The backend ends it: the client drops the channel.
    const dropped = next(pg, "serverUnsubscribed");
    assert.deepEqual(await control(env.PG_ADMIN_C, "/api/unsubscribe", { user: "dan", channel: "feed:1" }), { connections: 1 });
    assert.deepEqual(await dropped, { channel: "feed:1" });
    assert.equal((await publish(env.PG_ADMIN_C, "feed:1", "three")).delivered, 0);
    assert.deepEqual(handler, ["one", "two"]);
  } finally {
    pg.close();
  }
});

test("a disconnect without reconnect stops the client, with the backend's reason", async () => {
  const pg = new Pushgate(env.PG_WS_C + "/ws", { token: tokenOf("eve", "Eve") });
  const ev = record(pg, "state", "close");
  const personal = next(pg, "subscribed", (e) => e.channel === "#eve");
  pg.connect();
  try {
    await personal;
    const kicked = next(pg, "disconnected");
    assert.deepEqual(await control(env.PG_ADMIN_C, "/api/disconnect", { user: "eve", reconnect: false, reason: "account suspended" }), { connections: 1 });
    assert.deepEqual(await kicked, { code: 4003, reason: "account suspended", reconnect: false });
    assert.deepEqual(pg.lastDisconnect, { code: 4003, reason: "account suspended", reconnect: false });
    // It went straight to disconnected: a retry would have said
    // "reconnecting" as the connection closed.
    assert.equal(pg.state, "disconnected");
    assert.deepEqual(ev.state, ["connecting", "connected", "disconnected"]);
    assert.deepEqual(ev.close, [{ code: 4003, reason: "account suspended" }]);
  } finally {
    pg.close();
  }
});

test("in open mode the client's own info is what presence shows of it", async () => {
  const pg = new Pushgate(env.PG_WS_D + "/ws", { info: { name: "Zed" } });
  const mine = new Promise((resolve) => pg.subscribe("room:info", () => {}, { onJoin: resolve }));
  pg.connect();
  try {
    const me = await within("the join", mine);
    assert.deepEqual(me.info, { name: "Zed" });
    assert.equal(me.user, undefined);
    assert.deepEqual((await pg.presence("room:info")).clients, [{ client: me.client, info: { name: "Zed" } }]);
  } finally {
    pg.close();
  }
});

test("app-level pings keep an idle connection up past pingTimeout", async () => {
  // --ping-interval 200ms: a ping after each 200 ms the client is silent;
  // eight of them take longer than the client's pingTimeout.
  const pg = new Pushgate(env.PG_WS_D + "/ws", { pingTimeout: 1000 });
  const ev = record(pg, "close");
  let pings = 0;
  let eight;
  const eightPings = new Promise((resolve) => { eight = resolve; });
  const tap = (data) => JSON.parse(data).type === "ping" && ++pings === 8 && eight();
  taps.add(tap);
  const started = Date.now();
  pg.connect();
  try {
    await within("eight pings", eightPings);
    assert.ok(Date.now() - started > 1000, "eight pings within pingTimeout: the test proves nothing");
    assert.deepEqual(ev.close, []);
    assert.equal(pg.state, "connected");
  } finally {
    taps.delete(tap);
    pg.close();
  }
});

test("a dead link is replaced after pingTimeout, and what was missed is recovered", async () => {
  const p = await proxy(env.PG_WS_D);
  const pg = new Pushgate(p.url + "/ws", { pingTimeout: 1000 });
  const ev = record(pg, "close", "resync");
  const got = [];
  pg.subscribe("live:1", (d) => got.push(d));
  const first = next(pg, "message", (m) => m.data === "before");
  pg.connect();
  try {
    await next(pg, "subscribed");
    await publish(env.PG_ADMIN_D, "live:1", "before");
    await first;
    p.freeze();
    const dead = next(pg, "close");
    const back = next(pg, "subscribed");
    const missed = next(pg, "message", (m) => m.data === "while dead");
    await publish(env.PG_ADMIN_D, "live:1", "while dead");
    assert.deepEqual(await dead, { code: 1006, reason: "ping timeout" });
    assert.equal((await back).recovered, true);
    await missed;
    assert.deepEqual(got, ["before", "while dead"]);
    assert.deepEqual(ev.resync, []);
    assert.equal(pg.state, "connected");
  } finally {
    pg.close();
    p.close();
  }
});

test("over the presence event rate: one lagging notice, and presence asked again lists everyone", async () => {
  // --presence-event-rate 3: eleven joins in about a second are too many.
  const watcher = new Pushgate(env.PG_WS_D + "/ws");
  const lagging = next(watcher, "lagging");
  const mine = new Promise((resolve) => watcher.subscribe("room:lag", () => {}, { onJoin: resolve }));
  watcher.connect();
  const others = Array.from({ length: 10 }, () => new Pushgate(env.PG_WS_D + "/ws"));
  try {
    await within("the watcher's join", mine);
    const confirmed = others.map((o) => next(o, "subscribed"));
    for (const o of others) {
      o.subscribe("room:lag", () => {});
      o.connect();
    }
    const e = await lagging;
    assert.equal(e.channel, "room:lag");
    assert.ok(e.retryAfter >= 1000 && e.retryAfter < 3000, "retryAfter " + e.retryAfter);
    await Promise.all(confirmed);
    // As the notice asks: wait its random delay, then ask again.
    await new Promise((resolve) => setTimeout(resolve, e.retryAfter));
    const list = await watcher.presence("room:lag");
    assert.equal(list.clients.length, 11);
    assert.equal(list.truncated, false);
  } finally {
    watcher.close();
    for (const o of others) o.close();
  }
});
