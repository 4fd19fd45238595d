// Type-checked by TestPackage against the packed pushgate-client, as a
// CommonJS consumer would use it; each @ts-expect-error is a misuse the
// declarations must refuse.
import Pushgate = require("pushgate-client");

const pg = new Pushgate("ws://localhost:8080/ws", {
  token: async () => "jwt",
  minBackoff: 100,
  maxBackoff: 5000,
  outboxSize: 10,
  stableAfter: 1000,
});
new Pushgate(undefined, { token: "jwt" });
new Pushgate();
const sse = new Pushgate(undefined, { transports: ["sse"], fallbackFor: 60000 });
const transport: Pushgate.Transport = sse.transport;
void transport;
// @ts-expect-error: no such transport
new Pushgate(undefined, { transports: ["long-polling"] });

interface Chat {
  name: string;
  text: string;
  ts?: number;
}

const sub: Pushgate.Subscription = pg.subscribe<Chat>(
  "chat:lobby",
  (data, meta) => {
    const text: string = data.text;
    const where: [string, number, string] = [meta.channel, meta.offset, meta.epoch];
    void text;
    void where;
  },
  { history: true },
);
sub.unsubscribe();
pg.subscribe("news", (data: unknown) => void data);

const off: () => void = pg.on("state", (s) => {
  const state: "connecting" | "connected" | "reconnecting" | "disconnected" = s;
  void state;
});
off();
pg.on("message", (m) => void [m.channel, m.offset, m.epoch, m.data]);
pg.on("subscribed", (e) => {
  const r: boolean = e.recovered;
  void [r, e.offset, e.epoch];
});
pg.on("resync", (e) => {
  if (e.reason === "recovery" || e.reason === "gap" || e.reason === "epoch") void e.channel;
});
pg.on("synced", (e) => void [e.channel, e.epoch, e.offset]);
pg.on("refreshed", (e) => void (e.expires + 1));
pg.on("error", (e) => void [e.code, e.message, e.channel?.length]);
pg.on("close", (e) => void [e.code + 1, e.reason.length]);

pg.on("disconnected", (e) => {
  const code: 4002 | 4003 = e.code;
  void [code, e.reason.length, e.reconnect];
});
pg.on("join", (e) => void [e.channel, e.client, e.user?.length, e.info?.["name"]]);
pg.on("leave", (e) => void [e.channel, e.client]);
pg.on("lagging", (e) => void [e.channel, e.message, e.retryAfter + 1]);
pg.on("serverSubscribed", (e) => pg.subscribe(e.channel, (data) => void data));
pg.on("serverUnsubscribed", (e) => void e.channel.length);
pg.subscribe("room:1", () => {}, { onJoin: (e) => void e.client, onLeave: (e) => void e.user });
pg.presence("room:1").then(
  (list: Pushgate.PresenceList) => {
    const clients: Pushgate.PresenceClient[] = list.clients;
    const partial: boolean = list.truncated;
    void [clients[0]?.client, partial];
  },
  (err: Pushgate.PresenceError) => void [err.code, err.channel, err.message],
);
new Pushgate("ws://x/ws", { pingTimeout: 0, info: { name: "ann" } });
new Pushgate("ws://x/ws", { info: null });
const kicked: Pushgate.DisconnectedEvent | null = pg.lastDisconnect;
void kicked;

const queued: boolean = pg.publish("chat:lobby", { name: "ann", text: "hi", ts: Date.now() });
void queued;
const state: Pushgate.State = pg.state;
const states: Pushgate.State[] = ["connecting", "connected", "reconnecting", "disconnected"];
const reasons: Pushgate.ResyncEvent["reason"][] = ["recovery", "gap", "epoch"];
void [state, states, reasons];
const cap: number = pg.opts.maxBackoff;
void cap;
pg.connect();
pg.close();

const Same: typeof Pushgate = Pushgate.Pushgate;
const Default: typeof Pushgate = Pushgate.default;
void [Same, Default];

// @ts-expect-error: no such event
pg.on("messages", () => {});
// @ts-expect-error: the state is not a number
pg.on("state", (s: number) => void s);
// @ts-expect-error: no such state
const closed: Pushgate.State = "closed";
void closed;
// @ts-expect-error: the client sets the state
pg.state = "connected";
// @ts-expect-error: backoff is a number of ms
new Pushgate("ws://x/ws", { minBackoff: "1s" });
// @ts-expect-error: a channel is a string
pg.subscribe(1, () => {});
// @ts-expect-error: history is a boolean
pg.subscribe("news", () => {}, { history: "yes" });
// @ts-expect-error: there is no resync reason "timeout"
pg.on("resync", (e) => e.reason === "timeout");
// @ts-expect-error: info is an object, not a name
new Pushgate("ws://x/ws", { info: "ann" });
// @ts-expect-error: presence takes a channel
void pg.presence();
// @ts-expect-error: the client sets lastDisconnect
pg.lastDisconnect = null;
