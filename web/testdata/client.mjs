// Runs ../static/pushgate.js against a scripted fake WebSocket and fake
// timers, and exits non-zero on the first failed check. Usage: node client.mjs
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(new URL("../static/pushgate.js", import.meta.url), "utf8");

// load evaluates pushgate.js in a fresh context whose WebSocket, timers,
// clock and randomness the test drives.
function load(opts = {}) {
  // random 1 makes every jittered delay its cap.
  const env = { sockets: [], timers: [], now: 0, random: 1, module: opts.module };
  class FakeWebSocket {
    constructor(url, protocol) {
      this.url = new URL(url);
      this.protocol = protocol;
      this.readyState = 0;
      this.sent = [];
      env.sockets.push(this);
    }
    send(s) {
      assert.equal(this.readyState, 1, "send on a socket that is not open");
      this.sent.push(JSON.parse(s));
    }
    close(code) {
      this.readyState = 3;
      this.closedWith = code;
    }
    // Test side.
    open() {
      this.readyState = 1;
      this.onopen({});
    }
    recv(frame) {
      this.onmessage({ data: JSON.stringify(frame) });
    }
    drop(code) {
      this.readyState = 3;
      this.onclose({ code });
    }
  }
  const ctx = {
    WebSocket: FakeWebSocket,
    URL,
    atob,
    setTimeout: (fn, ms = 0) => env.timers.push({ fn, ms }),
    clearTimeout: () => {},
  };
  if (opts.module) ctx.module = opts.module; // loaded as CommonJS
  vm.createContext(ctx);
  vm.runInContext("Date.now = () => env.now; Math.random = () => env.random;", Object.assign(ctx, { env }));
  vm.runInContext(source, ctx, { filename: "pushgate.js" });
  // Checks not about liveness run without the watchdog (pingTimeout 0):
  // their timers are the backoff's and the refresh's.
  env.Pushgate = ctx.Pushgate && class extends ctx.Pushgate {
    constructor(url, o) { super(url, Object.assign({ pingTimeout: 0 }, o)); }
  };
  env.last = () => env.sockets[env.sockets.length - 1];
  // fire runs the pending timers and returns their delays.
  env.fire = () => {
    const ts = env.timers.splice(0);
    for (const t of ts) t.fn();
    return ts.map((t) => t.ms);
  };
  return env;
}

const tick = () => new Promise((r) => setImmediate(r));

// jwt makes an unsigned token with the given claims: the client only reads
// "exp" from it.
const jwt = (claims) =>
  ["e30", Buffer.from(JSON.stringify(claims)).toString("base64url"), "sig"].join(".");

// record collects a client's events.
function record(pg) {
  const ev = {
    state: [], error: [], resync: [], synced: [], message: [], subscribed: [], close: [], refreshed: [],
    disconnected: [], join: [], leave: [], lagging: [], serverSubscribed: [], serverUnsubscribed: [],
  };
  // Objects made in the client's context are copied into this one, so
  // that deepStrictEqual sees the same prototypes.
  for (const name of Object.keys(ev)) pg.on(name, (x) => ev[name].push(JSON.parse(JSON.stringify(x))));
  return ev;
}

const checks = {
  "subscribe, deliver, drop duplicates, recover after a reconnect"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws", { token: "tok" });
    const ev = record(pg);
    const got = [];
    pg.subscribe("news", (data, meta) => got.push([data, meta.offset, meta.epoch]));
    pg.connect();
    let ws = env.last();
    assert.equal(ws.protocol, "pushgate.v1");
    assert.equal(ws.url.pathname, "/ws");
    assert.equal(ws.url.searchParams.get("token"), "tok");
    assert.equal(ws.url.searchParams.get("channels"), null);
    assert.deepEqual(ev.state, ["connecting"]);
    ws.open();
    assert.deepEqual(ev.state, ["connecting", "connected"]);
    assert.equal(pg.state, "connected");
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "news" }]);
    ws.recv({ type: "message", channel: "news", offset: 4, data: "leftover" }); // before the reply
    ws.recv({ type: "subscribed", channel: "news", offset: 5, epoch: "e1", recovered: false });
    assert.deepEqual(ev.resync, [], "a fresh subscribe is no resync");
    ws.recv({ type: "message", channel: "news", offset: 6, data: "a" });
    ws.recv({ type: "message", channel: "news", offset: 7, data: "b" });
    ws.recv({ type: "message", channel: "news", offset: 7, data: "b again" });
    assert.deepEqual(got, [["a", 6, "e1"], ["b", 7, "e1"]]);
    assert.equal(ev.message.length, 2);

    ws.drop(1006);
    assert.equal(pg.state, "reconnecting");
    assert.deepEqual(ev.close, [{ code: 1006, reason: "" }]);
    assert.deepEqual(env.fire().length, 1);
    ws = env.last();
    assert.equal(env.sockets.length, 2);
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "news", since: 7, epoch: "e1" }]);
    ws.recv({ type: "subscribed", channel: "news", offset: 9, epoch: "e1", recovered: true });
    for (const o of [7, 8, 9, 10]) ws.recv({ type: "message", channel: "news", offset: o, data: o });
    assert.deepEqual(got.slice(2).map((g) => g[0]), [8, 9, 10]);
    assert.deepEqual(ev.resync, []);

    // The server lost its history: new epoch, replay from its oldest.
    ws.drop(1001);
    env.fire();
    ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "news", since: 10, epoch: "e1" }]);
    ws.recv({ type: "subscribed", channel: "news", offset: 2, epoch: "e2", recovered: false });
    assert.deepEqual(ev.resync, [{ channel: "news", epoch: "e2", reason: "recovery" }]);
    ws.recv({ type: "message", channel: "news", offset: 1, data: "x1" });
    ws.recv({ type: "message", channel: "news", offset: 2, data: "x2" });
    assert.deepEqual(got.slice(5), [["x1", 1, "e2"], ["x2", 2, "e2"]]);
    ws.drop(1006);
    env.fire();
    env.last().open();
    assert.deepEqual(env.last().sent, [{ op: "subscribe", channel: "news", since: 2, epoch: "e2" }]);
  },

  "a new epoch under a live subscription is a resync, and its offsets are new"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    const got = [];
    pg.subscribe("tick", (d, meta) => got.push([d, meta.offset, meta.epoch]));
    pg.connect();
    let ws = env.last();
    ws.open();
    // A cluster channel without messages yet has no epoch; its first
    // message names one, and the subscriber missed nothing.
    ws.recv({ type: "subscribed", channel: "tick", offset: 0, epoch: "", recovered: false });
    ws.recv({ type: "subscribed", channel: "tick", offset: 0, epoch: "e1", recovered: true });
    ws.recv({ type: "message", channel: "tick", offset: 1, data: "a" });
    ws.recv({ type: "message", channel: "tick", offset: 2, data: "b" });
    assert.deepEqual(ev.resync, [], "naming the first epoch loses nothing");
    // The channel restarts (idle past the history TTL): offsets from 1 again.
    ws.recv({ type: "subscribed", channel: "tick", offset: 0, epoch: "e2", recovered: false });
    ws.recv({ type: "message", channel: "tick", offset: 1, data: "c" });
    assert.deepEqual(ev.resync, [{ channel: "tick", epoch: "e2", reason: "epoch" }]);
    assert.deepEqual(got, [["a", 1, "e1"], ["b", 2, "e1"], ["c", 1, "e2"]]);
    ws.drop(1006);
    env.fire();
    ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "tick", since: 1, epoch: "e2" }]);
  },

  async "the token is refreshed before it expires; 4001 reconnects at once with a fresh one"() {
    const env = load();
    env.now = 1_000_000_000; // ms
    let n = 0;
    const issued = [];
    const token = async () => {
      const t = jwt({ sub: "alice", exp: env.now / 1000 + 100, n: ++n });
      issued.push(t);
      return t;
    };
    const pg = new env.Pushgate("ws://gw.test/ws", { token, minBackoff: 100 });
    const ev = record(pg);
    pg.connect();
    await tick();
    let ws = env.last();
    assert.equal(ws.url.searchParams.get("token"), issued[0]);
    assert.equal(env.timers.length, 0, "no refresh before the connection opens");
    ws.open();
    assert.deepEqual(env.timers.map((t) => t.ms), [75_000], "refresh at 3/4 of the 100 s left");
    env.now += 75_000;
    env.fire();
    await tick();
    assert.deepEqual(ws.sent, [{ op: "refresh", token: issued[1] }]);
    ws.recv({ type: "refreshed", expires: env.now / 1000 + 100 });
    assert.deepEqual(ev.refreshed, [{ expires: env.now / 1000 + 100 }]);
    assert.deepEqual(env.timers.map((t) => t.ms), [75_000], "the next refresh is scheduled from the new exp");
    // The server closed it anyway (the refresh came too late): reconnect
    // at once with a fresh token.
    env.timers.length = 0;
    ws.drop(4001);
    assert.deepEqual(env.fire().map(Math.round), [100]);
    await tick();
    assert.equal(env.last().url.searchParams.get("token"), issued[2]);
    // A static token cannot be refreshed: no timer.
    const fixed = new env.Pushgate("ws://gw.test/ws", { token: jwt({ exp: env.now / 1000 + 10 }) });
    env.timers.length = 0;
    fixed.connect();
    env.last().open();
    assert.equal(env.timers.length, 0);
  },

  async "a cached token is not refreshed again and again"() {
    const env = load();
    env.now = 1_000_000_000;
    const cached = jwt({ sub: "alice", exp: env.now / 1000 + 100 });
    const pg = new env.Pushgate("ws://gw.test/ws", { token: async () => cached });
    const ev = record(pg);
    pg.connect();
    await tick();
    const ws = env.last();
    ws.open();
    env.now += 75_000;
    env.fire();
    await tick();
    assert.deepEqual(ws.sent, [{ op: "refresh", token: cached }]);
    ws.recv({ type: "refreshed", expires: env.now / 1000 + 25 }); // the same exp
    assert.equal(ev.refreshed.length, 1);
    assert.deepEqual(env.timers, [], "no refresh for a token that is no fresher");
  },

  "subscribe, unsubscribe, subscribe again before the reply: no epoch resync"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.connect();
    const ws = env.last();
    ws.open();
    pg.subscribe("news", () => {}).unsubscribe();
    pg.subscribe("news", () => {});
    assert.deepEqual(ws.sent.map((o) => o.op), ["subscribe", "unsubscribe", "subscribe"]);
    ws.recv({ type: "subscribed", channel: "news", offset: 4, epoch: "e1", recovered: false });
    ws.recv({ type: "unsubscribed", channel: "news" });
    ws.recv({ type: "subscribed", channel: "news", offset: 4, epoch: "e1", recovered: false });
    ws.recv({ type: "message", channel: "news", offset: 5, data: "x" });
    assert.deepEqual(ev.resync, []);
    assert.equal(ev.message.length, 1);
  },

  "a live gap is reported"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.subscribe("news", () => {});
    pg.connect();
    const ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "news", offset: 10, epoch: "e1" });
    ws.recv({ type: "message", channel: "news", offset: 12, data: null });
    assert.deepEqual(ev.resync, [{ channel: "news", epoch: "e1", reason: "gap" }]);
    assert.equal(ev.message.length, 1);
  },

  "personal channel is tracked and recovered through the URL"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws", { token: "tok" });
    const ev = record(pg);
    const mine = [];
    const s = pg.subscribe("#alice", (d) => mine.push(d));
    pg.connect();
    let ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [], "no op for a # channel");
    ws.recv({ type: "subscribed", channel: "#alice", offset: 4, epoch: "u1" });
    ws.recv({ type: "message", channel: "#alice", offset: 5, data: "hi" });
    assert.deepEqual(mine, ["hi"]);
    s.unsubscribe();
    ws.drop(1006);
    env.fire();
    ws = env.last();
    assert.equal(ws.url.searchParams.get("user_since"), "5");
    assert.equal(ws.url.searchParams.get("user_epoch"), "u1");
    ws.open();
    assert.deepEqual(ws.sent, []);
    ws.recv({ type: "subscribed", channel: "#alice", offset: 6, epoch: "u1", recovered: true });
    ws.recv({ type: "message", channel: "#alice", offset: 5, data: "hi" });
    ws.recv({ type: "message", channel: "#alice", offset: 6, data: "again" });
    assert.deepEqual(ev.message.map((m) => [m.channel, m.data]), [["#alice", "hi"], ["#alice", "again"]]);
    assert.deepEqual(mine, ["hi"], "the unsubscribed handler is not called");

    // History gone: recovered:false resets the position.
    ws.drop(1006);
    env.fire();
    ws = env.last();
    assert.equal(ws.url.searchParams.get("user_since"), "6");
    ws.open();
    ws.recv({ type: "subscribed", channel: "#alice", offset: 1, epoch: "u2", recovered: false });
    ws.recv({ type: "message", channel: "#alice", offset: 1, data: "new" });
    assert.deepEqual(ev.resync, [{ channel: "#alice", epoch: "u2", reason: "recovery" }]);
    assert.equal(ev.message[ev.message.length - 1].data, "new");
  },

  "unsubscribe sends the op when the last handler goes"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const a = pg.subscribe("news", () => {});
    const b = pg.subscribe("news", () => {});
    pg.connect();
    const ws = env.last();
    ws.open();
    assert.equal(ws.sent.length, 1, "one subscribe per channel");
    a.unsubscribe();
    a.unsubscribe();
    assert.equal(ws.sent.length, 1);
    b.unsubscribe();
    assert.deepEqual(ws.sent[1], { op: "unsubscribe", channel: "news" });
    ws.recv({ type: "message", channel: "news", offset: 1, data: 1 });
    assert.equal(pg._subs.size, 0);
  },

  "publishes wait in a bounded outbox and follow the subscribes"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws", { outboxSize: 2 });
    const ev = record(pg);
    assert.equal(pg.publish("chat:x", { text: 1 }), true);
    assert.equal(pg.publish("chat:x", { text: 2 }), true);
    assert.equal(pg.publish("chat:x", { text: 3 }), false);
    assert.deepEqual(ev.error, [{ code: "outbox_full", message: "outbox full, publish dropped", channel: "chat:x" }]);
    pg.subscribe("chat:x", () => {});
    pg.connect();
    const ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [
      { op: "subscribe", channel: "chat:x" },
      { op: "publish", channel: "chat:x", data: { text: 1 } },
      { op: "publish", channel: "chat:x", data: { text: 2 } },
    ]);
    assert.equal(pg.publish("chat:x", "live"), true);
    assert.equal(ws.sent.length, 4);
    ws.recv({ type: "error", code: "forbidden", message: "no", channel: "chat:x" });
    assert.deepEqual(ev.error[1], { code: "forbidden", message: "no", channel: "chat:x" });
  },

  "backoff grows with failures, resets on health, not after 1013"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws", { minBackoff: 100, maxBackoff: 1000 });
    pg.connect();
    const delays = [];
    for (let i = 0; i < 6; i++) {
      env.last().drop(1006); // never opened
      delays.push(...env.fire());
    }
    assert.deepEqual(delays.map(Math.round), [100, 200, 400, 800, 1000, 1000]);
    pg.subscribe("news", () => {});
    let ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "news", offset: 0, epoch: "e" });
    ws.drop(1006);
    assert.equal(Math.round(env.fire()[0]), 100, "healthy connection resets the backoff");
    env.last().drop(1006);
    assert.equal(Math.round(env.fire()[0]), 200);
    ws = env.last();
    ws.open();
    env.now += 5000; // open long enough
    ws.drop(1006);
    assert.equal(Math.round(env.fire()[0]), 100);
    for (const want of [200, 400]) {
      ws = env.last();
      ws.open();
      ws.recv({ type: "subscribed", channel: "news", offset: 0, epoch: "e", recovered: true });
      ws.drop(1013);
      assert.equal(Math.round(env.fire()[0]), want, "1013 keeps backing off");
    }
    env.last().drop(1001);
    assert.equal(Math.round(env.fire()[0]), 100, "1001: short delay");
  },

  "close stops reconnecting; connect resumes"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.connect();
    const ws = env.last();
    ws.open();
    pg.close();
    assert.equal(ws.closedWith, 1000);
    assert.equal(pg.state, "disconnected");
    ws.drop(1000); // the browser's close event, later
    assert.deepEqual(env.fire(), []);
    assert.deepEqual(ev.state, ["connecting", "connected", "disconnected"]);
    pg.connect();
    assert.equal(env.sockets.length, 2);
    pg.connect();
    assert.equal(env.sockets.length, 2, "connect while connecting is a no-op");
  },

  async "token function is called on each connect"() {
    const env = load();
    let n = 0;
    const pg = new env.Pushgate("ws://gw.test/ws", { token: async () => "t" + ++n });
    pg.connect();
    await tick();
    assert.equal(env.last().url.searchParams.get("token"), "t1");
    env.last().drop(1008);
    env.fire();
    await tick();
    assert.equal(env.last().url.searchParams.get("token"), "t2");
    pg.close();
    const bad = new env.Pushgate("ws://gw.test/ws", { token: () => Promise.reject(new Error("no token")) });
    const ev = record(bad);
    bad.connect();
    await tick();
    assert.deepEqual(ev.error, [{ code: "connect", message: "no token" }]);
    assert.equal(bad.state, "reconnecting");
    assert.equal(env.timers.length, 1, "retries");
  },

  "reconnecting while it retries, disconnected only once stopped"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.connect();
    env.last().drop(1006); // the first attempt fails
    assert.deepEqual(ev.state, ["connecting", "reconnecting"]);
    env.fire();
    assert.equal(pg.state, "reconnecting", "the retry itself is still reconnecting");
    env.last().open();
    env.last().drop(1001);
    env.fire();
    env.last().open();
    assert.deepEqual(ev.state, ["connecting", "reconnecting", "connected", "reconnecting", "connected"]);
    // 4003: disconnected by the server, do not reconnect.
    env.last().drop(4003);
    assert.equal(pg.state, "disconnected");
    assert.deepEqual(env.fire(), [], "no retry after 4003");
    // 4002 may reconnect.
    pg.connect();
    assert.equal(pg.state, "connecting");
    env.last().open();
    env.last().drop(4002);
    assert.equal(pg.state, "reconnecting");
    assert.equal(env.fire().length, 1);
  },

  "history: the first subscribe asks for all the server holds, once"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    const got = [];
    pg.subscribe("room", (d, meta) => got.push([d, meta.offset]), { history: true });
    pg.connect();
    let ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "room", since: 0 }]);
    ws.recv({ type: "subscribed", channel: "room", offset: 7, epoch: "e1", recovered: false });
    assert.deepEqual(ev.resync, [], "a history load is no resync");
    assert.deepEqual(ev.synced, [], "not synced before the replay is in");
    for (const o of [5, 6, 7]) ws.recv({ type: "message", channel: "room", offset: o, data: o });
    assert.deepEqual(got, [[5, 5], [6, 6], [7, 7]]);
    assert.deepEqual(ev.synced, [{ channel: "room", epoch: "e1", offset: 7 }]);
    ws.recv({ type: "message", channel: "room", offset: 7, data: "again" });
    ws.recv({ type: "message", channel: "room", offset: 8, data: 8 });
    assert.deepEqual(got.map((g) => g[1]), [5, 6, 7, 8]);
    assert.equal(ev.synced.length, 1);
    // A reconnect recovers from the position, not the whole history again.
    ws.drop(1006);
    env.fire();
    ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "room", since: 8, epoch: "e1" }]);
    ws.recv({ type: "subscribed", channel: "room", offset: 9, epoch: "e1", recovered: true });
    ws.recv({ type: "message", channel: "room", offset: 9, data: 9 });
    assert.deepEqual(ev.synced[1], { channel: "room", epoch: "e1", offset: 9 });
    // Recovery failed: the server replays what it holds; synced after it.
    ws.drop(1006);
    env.fire();
    ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "room", offset: 2, epoch: "e2", recovered: false });
    assert.deepEqual(ev.resync, [{ channel: "room", epoch: "e2", reason: "recovery" }]);
    assert.equal(ev.synced.length, 2);
    ws.recv({ type: "message", channel: "room", offset: 1, data: "x1" });
    ws.recv({ type: "message", channel: "room", offset: 2, data: "x2" });
    assert.deepEqual(ev.synced[2], { channel: "room", epoch: "e2", offset: 2 });
    assert.deepEqual(got.slice(5).map((g) => g[0]), ["x1", "x2"]);
  },

  "synced: at once with nothing to replay, else with the replay's last message"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.subscribe("plain", () => {}); // no history: live from the reply
    pg.subscribe("empty", () => {}, { history: true });
    pg.subscribe("expired", () => {}, { history: true });
    pg.connect();
    const ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "plain", offset: 4, epoch: "p", recovered: false });
    ws.recv({ type: "subscribed", channel: "empty", offset: 0, epoch: "", recovered: false });
    assert.deepEqual(ev.synced, [
      { channel: "plain", epoch: "p", offset: 4 },
      { channel: "empty", epoch: "", offset: 0 },
    ]);
    // History expired: nothing is replayed; the next message syncs it.
    ws.recv({ type: "subscribed", channel: "expired", offset: 3, epoch: "x", recovered: false });
    assert.equal(ev.synced.length, 2);
    ws.recv({ type: "message", channel: "expired", offset: 4, data: 4 });
    assert.deepEqual(ev.synced[2], { channel: "expired", epoch: "x", offset: 4 });
    assert.deepEqual(ev.resync, []);
    // A second handler does not ask for history again.
    pg.subscribe("plain", () => {}, { history: true });
    assert.equal(ws.sent.length, 3);
  },

  async "presence: the list, its errors, join and leave"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    const joins = [], leaves = [];
    pg.subscribe("room:a", () => {}, { onJoin: (e) => joins.push(e), onLeave: (e) => leaves.push(e) });
    pg.subscribe("room:a", () => {}); // no presence callbacks
    pg.subscribe("room:b", () => {}, { onJoin: () => assert.fail("room:b has no joins here") });
    const early = await pg.presence("room:a").then(() => "resolved", (e) => [e.code, e.channel]);
    assert.deepEqual(early, ["not_connected", "room:a"]);
    pg.connect();
    const ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "room:a", offset: 0, epoch: "e" });
    const me = { type: "join", channel: "room:a", client: "n1.1", user: "ann", info: { name: "Ann" } };
    ws.recv(me);
    const asked = pg.presence("room:a");
    const off = pg.presence("news");
    const other = pg.presence("room:b");
    const bad = pg.presence("no spaces");
    assert.deepEqual(ws.sent.slice(-3), [
      { op: "presence", channel: "room:a" },
      { op: "presence", channel: "news" },
      { op: "presence", channel: "room:b" },
    ], "no op for an invalid name");
    ws.recv({ type: "error", code: "presence_off", message: "this channel does not keep presence", channel: "news" });
    ws.recv({ type: "presence", channel: "room:a", clients: [{ client: "n1.1", user: "ann", info: { name: "Ann" } }, { client: "n1.2" }], truncated: true });
    const list = JSON.parse(JSON.stringify(await asked));
    assert.deepEqual(list, { channel: "room:a", clients: [{ client: "n1.1", user: "ann", info: { name: "Ann" } }, { client: "n1.2" }], truncated: true });
    const e = await off.catch((e) => e);
    assert.deepEqual([e.code, e.channel, e.message], ["presence_off", "news", "this channel does not keep presence"]);
    assert.equal((await bad.catch((e) => e)).code, "invalid_channel");
    ws.recv({ type: "leave", channel: "room:a", client: "n1.2" });
    ws.recv({ type: "join", channel: "room:gone", client: "n1.3" }); // not subscribed: ignored
    const copy = (x) => JSON.parse(JSON.stringify(x));
    assert.deepEqual(copy(joins), [{ channel: "room:a", client: "n1.1", user: "ann", info: { name: "Ann" } }]);
    assert.deepEqual(copy(leaves), [{ channel: "room:a", client: "n1.2" }]);
    assert.deepEqual(ev.join, copy(joins));
    assert.deepEqual(ev.leave, copy(leaves));
    assert.deepEqual(ev.error, [], "answered presence errors are the promise's, not error events");
    // The lagging notice is its own event, with a delay of 1 to 3 s.
    env.random = 0.5;
    ws.recv({ type: "error", code: "presence_lagging", message: "dropped", channel: "room:a" });
    assert.deepEqual(ev.lagging, [{ channel: "room:a", message: "dropped", retryAfter: 2000 }]);
    assert.deepEqual(ev.error, []);
    // The connection closes with a request in flight: it rejects.
    const lost = pg.presence("room:b");
    ws.drop(1006);
    assert.equal((await lost.catch((e) => e)).code, "not_connected");
    assert.equal((await other.catch((e) => e)).code, "not_connected");
  },

  "the server's subscriptions are kept and recovered; its unsubscribes drop them"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.connect();
    let ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "alerts", offset: 3, epoch: "a1", recovered: false });
    assert.deepEqual(ev.serverSubscribed, [{ channel: "alerts", offset: 3, epoch: "a1", recovered: false }]);
    ws.recv({ type: "message", channel: "alerts", offset: 4, data: "one" });
    const got = [];
    pg.subscribe("alerts", (d) => got.push(d)); // a handler for it: no op
    assert.deepEqual(ws.sent, []);
    ws.recv({ type: "message", channel: "alerts", offset: 5, data: "two" });
    assert.deepEqual(ev.message.map((m) => m.data), ["one", "two"]);
    assert.deepEqual(got, ["two"]);
    // A reconnect resubscribes it from where it was.
    ws.drop(1006);
    env.fire();
    ws = env.last();
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "alerts", since: 5, epoch: "a1" }]);
    ws.recv({ type: "subscribed", channel: "alerts", offset: 6, epoch: "a1", recovered: true });
    ws.recv({ type: "message", channel: "alerts", offset: 6, data: "three" });
    assert.deepEqual(got, ["two", "three"]);
    assert.equal(ev.serverSubscribed.length, 1, "our own resubscribe is no server subscription");
    // The server unsubscribes it: dropped, not resubscribed.
    ws.recv({ type: "unsubscribed", channel: "alerts" });
    assert.deepEqual(ev.serverUnsubscribed, [{ channel: "alerts" }]);
    ws.recv({ type: "message", channel: "alerts", offset: 7, data: "late" });
    assert.deepEqual(got, ["two", "three"]);
    // The answer to our own unsubscribe is not the server's; nor is the
    // late reply to a subscribe taken back before it came.
    pg.subscribe("news", () => {}).unsubscribe();
    ws.recv({ type: "subscribed", channel: "news", offset: 1, epoch: "n" });
    ws.recv({ type: "unsubscribed", channel: "news" });
    assert.equal(ev.serverSubscribed.length, 1);
    assert.equal(ev.serverUnsubscribed.length, 1);
    // The server unsubscribes a channel we asked for.
    pg.subscribe("mine", () => {});
    ws.recv({ type: "subscribed", channel: "mine", offset: 0, epoch: "m" });
    ws.recv({ type: "unsubscribed", channel: "mine" });
    assert.deepEqual(ev.serverUnsubscribed[1], { channel: "mine" });
    ws.drop(1006);
    env.fire();
    env.last().open();
    assert.deepEqual(env.last().sent, [], "nothing to resubscribe");
  },

  "4002 reconnects, 4003 stops and says why"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const ev = record(pg);
    pg.connect();
    env.last().open();
    env.last().onclose({ code: 4002, reason: "moved" });
    assert.deepEqual(ev.disconnected, [{ code: 4002, reason: "moved", reconnect: true }]);
    assert.equal(pg.state, "reconnecting");
    assert.equal(env.fire().length, 1);
    env.last().open();
    env.last().onclose({ code: 4003, reason: "banned for spam" });
    assert.deepEqual(ev.disconnected[1], { code: 4003, reason: "banned for spam", reconnect: false });
    assert.deepEqual(JSON.parse(JSON.stringify(pg.lastDisconnect)), { code: 4003, reason: "banned for spam", reconnect: false });
    assert.deepEqual(ev.state.slice(-2), ["connected", "disconnected"]);
    assert.deepEqual(env.fire(), []);
    pg.connect();
    assert.equal(pg.lastDisconnect, null);
  },

  "liveness: app pings are answered; a silent connection is replaced"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws", { pingTimeout: 1000, info: { name: "Ann" } });
    const ev = record(pg);
    pg.subscribe("news", () => {});
    pg.connect();
    let ws = env.last();
    assert.equal(ws.url.searchParams.get("ping"), "1");
    assert.equal(ws.url.searchParams.get("info"), '{"name":"Ann"}');
    assert.deepEqual(env.timers.map((t) => t.ms), [1000], "one watchdog, armed at once");
    ws.open();
    ws.recv({ type: "subscribed", channel: "news", offset: 0, epoch: "e" });
    env.now += 600;
    ws.recv({ type: "ping" });
    assert.deepEqual(ws.sent.slice(-1), [{ op: "pong" }]);
    for (let i = 0; i < 50; i++) ws.recv({ type: "message", channel: "news", offset: i + 1, data: i });
    assert.equal(env.timers.length, 1, "no timer per frame");
    env.now += 400;
    assert.deepEqual(env.fire(), [1000]);
    assert.deepEqual(env.timers.map((t) => t.ms), [600], "re-armed for the last frame's deadline");
    assert.equal(pg.state, "connected");
    env.now += 600;
    env.fire();
    assert.equal(ws.closedWith, 1000);
    assert.deepEqual(ev.close, [{ code: 1006, reason: "ping timeout" }]);
    assert.equal(pg.state, "reconnecting");
    env.fire(); // the reconnect
    ws.drop(1006); // the old socket's close, much later: ignored
    assert.equal(ev.close.length, 1);
    ws = env.last();
    assert.equal(env.sockets.length, 2);
    ws.open();
    assert.deepEqual(ws.sent, [{ op: "subscribe", channel: "news", since: 50, epoch: "e" }]);
    // pingTimeout 0: no pings asked, no watchdog.
    const quiet = new env.Pushgate("ws://gw.test/ws");
    env.timers.length = 0;
    quiet.connect();
    assert.equal(env.last().url.searchParams.get("ping"), null);
    assert.equal(env.last().url.searchParams.get("info"), null);
    assert.equal(env.timers.length, 0);
  },

  "as CommonJS it is the module's export, not a global"() {
    const module = { exports: {} };
    const env = load({ module });
    assert.equal(env.Pushgate, undefined);
    const P = module.exports;
    assert.equal(typeof P, "function");
    assert.equal(P.Pushgate, P);
    assert.equal(P.default, P);
    assert.equal(new P("ws://gw.test/ws").state, "disconnected");
  },

  "a throwing handler does not stop delivery"() {
    const env = load();
    const pg = new env.Pushgate("ws://gw.test/ws");
    const got = [];
    pg.subscribe("news", () => { throw new Error("app bug"); });
    pg.subscribe("news", (d) => got.push(d));
    pg.connect();
    const ws = env.last();
    ws.open();
    ws.recv({ type: "subscribed", channel: "news", offset: 0, epoch: "e" });
    ws.recv({ type: "message", channel: "news", offset: 1, data: "ok" });
    assert.deepEqual(got, ["ok"]);
    assert.equal(env.timers.length, 1, "the exception is rethrown from a timer");
  },
};

let failed = 0;
for (const [name, fn] of Object.entries(checks)) {
  try {
    await fn();
    console.log("ok   " + name);
  } catch (e) {
    failed++;
    console.log("FAIL " + name + "\n" + e.stack);
  }
}
process.exit(failed ? 1 : 0);
