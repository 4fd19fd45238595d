// End-to-end tests of ../static/pushgate.js against real gateways: run by
// TestJSClientEndToEnd (cmd/gateway) with `node --test`, which starts
// nats-server and two gateways in cluster mode and passes their addresses:
//   PG_WS_A, PG_WS_B       ws://host:port of each gateway's public listener
//   PG_ADMIN_A, PG_ADMIN_B http://host:port of each admin listener
//   PG_SECRET              the HS256 secret both gateways verify tokens with
//   PG_NODE_MODULES        a node_modules directory holding the ws package
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";

const env = process.env;
// Node 20 has no WebSocket of its own: the ws package stands in for the
// browser's.
globalThis.WebSocket = createRequire(env.PG_NODE_MODULES + "/")("ws");
// Under require, pushgate.js is the module's export (the package's main).
const { Pushgate } = createRequire(import.meta.url)("../static/pushgate.js");

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
