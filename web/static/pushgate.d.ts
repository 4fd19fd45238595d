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
   * The handler is called with each message's data, once per offset.
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
  }

  /** Options with their defaults. */
  interface ResolvedOptions extends Options {
    minBackoff: number;
    maxBackoff: number;
    outboxSize: number;
    stableAfter: number;
  }

  interface SubscribeOptions {
    /**
     * When this call creates the channel's subscription, its first
     * subscribe asks for all the history the gateway holds, delivered
     * before live messages; "synced" says when it is in. Ignored for "#"
     * channels.
     */
    history?: boolean;
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
   * "outbox_full", "connect" (the token function failed), "refresh".
   */
  interface ErrorEvent {
    code: string;
    message: string;
    channel?: string;
  }

  /** A closed connection: the WebSocket close code and reason. */
  interface CloseEvent {
    code: number;
    reason: string;
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
  }
}
