// Type declarations for pushgate.js, the client of the pushgate.v1
// WebSocket protocol. As a <script>, pushgate.js defines the global
// Pushgate; under CommonJS (require, or import from Node) the module's
// export is the class, also as its Pushgate and default properties.

export = Pushgate;
export as namespace Pushgate;

declare class Pushgate {
  /**
   * @param url ws:// or wss:// URL of the gateway's /ws; by default the
   *   page's own host. Required outside a browser (there is no location).
   */
  constructor(url?: string, opts?: Pushgate.Options);

  /** The URL connected to (a token is added as ?token=). */
  url: string;
  /** The options, with their defaults filled in; read at each use. */
  opts: Pushgate.ResolvedOptions;
  /** Where the connection stands; each change is a "state" event. */
  readonly state: Pushgate.State;
  /**
   * The transport of the current or last connection: "websocket", or
   * "sse" (an event stream and POSTed ops: the fallback where WebSocket
   * is blocked).
   */
  readonly transport: Pushgate.Transport;
  /**
   * The last close by the server's disconnect (4002: the client
   * reconnected; 4003: it stopped, and reason says why); null until one,
   * and again after connect().
   */
  readonly lastDisconnect: Pushgate.DisconnectedEvent | null;

  /** Starts connecting, and keeps reconnecting until close(). */
  connect(): void;

  /**
   * Closes the connection and stops reconnecting. Subscriptions, their
   * positions and the outbox are kept, so a later connect() resumes.
   */
  close(): void;

  /**
   * Subscribes to a channel. A channel starting with "#" is the personal
   * channel, which the server subscribes by itself; no op is sent for it.
   * The handler is called with each message's data, once per offset;
   * opts.onJoin and opts.onLeave with the channel's presence events.
   * Subscribing to a channel the server subscribed the client to adds a
   * handler to that subscription.
   */
  subscribe<T = unknown>(
    channel: string,
    onMessage: (data: T, meta: Pushgate.MessageMeta) => void,
    opts?: Pushgate.SubscribeOptions,
  ): Pushgate.Subscription;

  /**
   * Publishes data (anything JSON.stringify accepts) to a channel. While
   * not connected the frame waits in a bounded outbox (opts.outboxSize),
   * sent after the subscribes once connected. The server does not
   * acknowledge a publish: a refusal is an "error" event with the channel.
   * @returns false when the outbox is full and data was dropped (an
   *   "error" event with code "outbox_full" is emitted too).
   */
  publish(channel: string, data: unknown): boolean;

  /**
   * Lists the clients subscribed to a channel that keeps presence (the
   * gateway's --presence); the client must be subscribed to it. Rejects
   * with a Pushgate.PresenceError: the server's "presence_off",
   * "not_subscribed" or "invalid_channel", or "not_connected" (not
   * connected when asked, or the connection closed before the answer).
   */
  presence(channel: string): Promise<Pushgate.PresenceList>;

  /**
   * Adds an event listener.
   * @returns a function that removes it.
   */
  on<K extends keyof Pushgate.Events>(name: K, fn: (event: Pushgate.Events[K]) => void): () => void;

  /** The class itself, for `import { Pushgate } from "pushgate-client"`. */
  static readonly Pushgate: typeof Pushgate;
  /** The class itself, for default imports. */
  static readonly default: typeof Pushgate;
}

declare namespace Pushgate {
  /**
   * "connecting": the first attempt after connect(); "connected";
   * "reconnecting": the connection failed or closed and the client waits
   * to retry, or retries; "disconnected": stopped for good, by close() or
   * by the server (close code 4003), until connect().
   */
  type State = "connecting" | "connected" | "reconnecting" | "disconnected";

  /** A transport: WebSocket, or an event stream (GET /events) and POST /events/commands. */
  type Transport = "websocket" | "sse";

  interface Options {
    /**
     * JWT sent as ?token=. A function is called before each (re)connect,
     * and again before the token in use expires (its "exp"), to send the
     * server a fresh one on the open connection.
     */
    token?: string | (() => string | Promise<string>);
    /** First reconnect delay cap, in ms. Default 250. */
    minBackoff?: number;
    /** Largest reconnect delay cap, in ms. Default 10000. */
    maxBackoff?: number;
    /** Publishes kept while disconnected. Default 100. */
    outboxSize?: number;
    /**
     * ms open after which a connection counts as healthy even without a
     * frame (resets the backoff). Default 5000.
     */
    stableAfter?: number;
    /**
     * ms without any frame from the server after which the connection
     * counts as dead and is replaced (a "close" event with 1006 and
     * "ping timeout"). The client asks for app-level pings (?ping=1), sent
     * after the gateway's --ping-interval (25 s) of silence, and answers
     * them. 0: neither. Default 40000.
     */
    pingTimeout?: number;
    /**
     * A JSON object (at most 1 KiB) describing the client in presence,
     * sent as ?info=: only an open-mode gateway (no authentication) uses
     * it, unverified; with a token, the token's "info" claim is used.
     * Default null.
     */
    info?: Record<string, unknown> | null;
    /**
     * The transports to use, in order of preference. A WebSocket that
     * closes before it ever opened is followed by the other at once; when
     * a stream opens after a failed WebSocket, one more WebSocket is tried
     * beside it, and if it fails too the fallback is remembered for
     * fallbackFor. ["sse"]: never WebSocket; ["websocket"]: no fallback.
     * Default ["websocket", "sse"].
     */
    transports?: Transport[];
    /**
     * ms for which a fallback to the event stream is remembered (in
     * localStorage, for the page's origin). Default 600000.
     */
    fallbackFor?: number;
  }

  /** Options with their defaults. */
  interface ResolvedOptions extends Options {
    minBackoff: number;
    maxBackoff: number;
    outboxSize: number;
    stableAfter: number;
    pingTimeout: number;
    info: Record<string, unknown> | null;
    transports: Transport[];
    fallbackFor: number;
  }

  interface SubscribeOptions {
    /**
     * When this call creates the channel's subscription, its first
     * subscribe asks for all the history the gateway holds, delivered
     * before live messages; "synced" says when it is in. Ignored for "#"
     * channels.
     */
    history?: boolean;
    /** Called with each client that joins the channel, this one included. */
    onJoin?: (event: PresenceEvent) => void;
    /** Called with each client that leaves the channel. */
    onLeave?: (event: PresenceEvent) => void;
  }

  interface Subscription {
    /**
     * Removes this handler; the channel is unsubscribed when its last
     * handler goes.
     */
    unsubscribe(): void;
  }

  /** Where a message stands in its channel. */
  interface MessageMeta {
    channel: string;
    offset: number;
    epoch: string;
  }

  interface MessageEvent extends MessageMeta {
    data: unknown;
  }

  /** The server's reply to a subscribe (or a subscription it made). */
  interface SubscribedEvent {
    channel: string;
    /** The channel's last offset when the server answered. */
    offset: number;
    epoch: string;
    /** Whether the server replays exactly what the client missed. */
    recovered: boolean;
  }

  /**
   * Messages may be missing. "recovery": the history did not reach back
   * to the client's position (what it holds is replayed); "gap": a live
   * message skipped offsets; "epoch": the channel restarted under a live
   * subscription.
   */
  interface ResyncEvent {
    channel: string;
    epoch: string;
    reason: "recovery" | "gap" | "epoch";
  }

  /**
   * After a "subscribed", the replay it announced has been delivered: at
   * once when there was nothing to replay, and with the next message when
   * the server's history held nothing.
   */
  interface SyncedEvent {
    channel: string;
    epoch: string;
    offset: number;
  }

  /**
   * A server error reply (codes such as "forbidden", "overloaded",
   * "unavailable", "bad_request"), or one of the client's own:
   * "outbox_full", "connect" (the token function failed), "refresh",
   * "commands_refused" (on the event-stream fallback: ops the gateway's
   * POST /events/commands refused whole, too large or malformed).
   */
  interface ErrorEvent {
    code: string;
    message: string;
    channel?: string;
  }

  /**
   * A closed connection: the WebSocket close code and reason (1006 and
   * "ping timeout" when nothing came for opts.pingTimeout).
   */
  interface CloseEvent {
    code: number;
    reason: string;
  }

  /** A client as presence shows it. */
  interface PresenceClient {
    /** The connection's id, unique in the cluster. */
    client: string;
    /** Its token's user; none when anonymous. */
    user?: string;
    /**
     * Its token's "info" claim, or in open mode what the client sent
     * (unverified).
     */
    info?: Record<string, unknown>;
  }

  /** The answer of presence(). */
  interface PresenceList {
    channel: string;
    clients: PresenceClient[];
    /** The server listed only part of the channel's clients. */
    truncated: boolean;
  }

  /** Why presence() rejected. */
  interface PresenceError extends Error {
    code: "presence_off" | "not_subscribed" | "invalid_channel" | "not_connected" | (string & {});
    channel: string;
  }

  /** A client subscribed to ("join") or left ("leave") a channel. */
  interface PresenceEvent extends PresenceClient {
    channel: string;
  }

  /**
   * The channel's join and leave events were over the gateway's rate and
   * some were dropped: ask presence() again after retryAfter ms (a random
   * 1 to 3 s, so that clients do not all ask at once).
   */
  interface LaggingEvent {
    channel: string;
    message: string;
    retryAfter: number;
  }

  /**
   * The server disconnected the client: 4002, it may reconnect (the client
   * does, as after any close); 4003, it must not (the client stops, in
   * state "disconnected"). reason is the backend's.
   */
  interface DisconnectedEvent {
    code: 4002 | 4003;
    reason: string;
    reconnect: boolean;
  }

  /** The server ended a subscription: the client dropped the channel. */
  interface ServerUnsubscribedEvent {
    channel: string;
  }

  /** The server took a fresh token; expires is its "exp" (Unix seconds). */
  interface RefreshedEvent {
    expires: number;
  }

  interface Events {
    state: State;
    message: MessageEvent;
    subscribed: SubscribedEvent;
    resync: ResyncEvent;
    synced: SyncedEvent;
    refreshed: RefreshedEvent;
    error: ErrorEvent;
    close: CloseEvent;
    disconnected: DisconnectedEvent;
    join: PresenceEvent;
    leave: PresenceEvent;
    lagging: LaggingEvent;
    /**
     * The server subscribed the client to a channel it did not ask for:
     * the client keeps it as its own (resubscribed, recovered, on
     * reconnects); its messages are "message" events, and go to handlers
     * that subscribe() adds.
     */
    serverSubscribed: SubscribedEvent;
    serverUnsubscribed: ServerUnsubscribedEvent;
  }
}
