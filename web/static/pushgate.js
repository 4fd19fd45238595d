/*
 * pushgate.js: a dependency-free browser client for the pushgate.v1
 * protocol; <script src="/pushgate.js"></script> defines window.Pushgate,
 * and under CommonJS (require, or import from Node) it is the module's
 * export instead. It reconnects with exponential backoff and full jitter
 * and resubscribes each channel from the {epoch, offset} it last saw, so
 * the server replays what was missed. A gap it cannot fill, or a channel
 * restarted in a new epoch under a live subscription, is a "resync" event;
 * no message is delivered twice within an epoch. A subscription may ask for
 * the history the gateway holds. Given the token as a function, it
 * refreshes the connection's token before it expires. Outside a browser it
 * needs a global WebSocket (Node 22 has one) and an explicit URL.
 */
(function (global) {
  "use strict";

  /**
   * @typedef {Object} Options
   * @property {string|function(): (string|Promise<string>)} [token] JWT sent
   *   as ?token=; a function is called before each (re)connect, and again
   *   before the token in use expires (its "exp"), to send the server a
   *   fresh one ({"op":"refresh"}) on the open connection.
   * @property {number} [minBackoff=250] first reconnect delay cap, in ms.
   * @property {number} [maxBackoff=10000] largest reconnect delay cap, in ms.
   * @property {number} [outboxSize=100] publishes kept while disconnected.
   * @property {number} [stableAfter=5000] ms open after which a connection
   *   counts as healthy even without a frame (resets the backoff).
   */

  class Pushgate {
    /**
     * @param {string} [url] ws:// or wss:// URL of /ws; by default the page's
     *   own host.
     * @param {Options} [opts]
     */
    constructor(url, opts) {
      this.url = url || (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
      this.opts = Object.assign({ minBackoff: 250, maxBackoff: 10000, outboxSize: 100, stableAfter: 5000 }, opts);
      /**
       * "connecting": the first attempt after connect(); "connected";
       * "reconnecting": the connection failed or closed, and the client is
       * waiting to retry or retrying; "disconnected": stopped for good, by
       * close() or by the server (close code 4003), until connect().
       * @type {"connecting"|"connected"|"reconnecting"|"disconnected"}
       */
      this.state = "disconnected";
      this._subs = new Map(); // channel -> newSub()
      this._personal = null; // "#user" once the server subscribed us to it
      this._outbox = []; // publish frames waiting for a connection
      this._listeners = new Map();
      this._ws = null;
      this._gen = 0; // bumped by every connect/close; stale work checks it
      this._timer = null;
      this._refreshTimer = null;
      this._expires = 0; // "exp" of the token the connection was opened with
      this._attempt = 0; // consecutive failed connections
      this._retrying = false; // a connection failed or closed since connect()
      this._closed = true;
    }

    /** Starts connecting, and keeps reconnecting until close(). */
    connect() {
      if (!this._closed) return;
      this._closed = false;
      this._attempt = 0;
      this._retrying = false;
      this._open();
    }

    /** Closes the connection and stops reconnecting. Subscriptions, their
     * positions and the outbox are kept, so a later connect() resumes. */
    close() {
      this._closed = true;
      this._gen++;
      clearTimeout(this._timer);
      clearTimeout(this._refreshTimer);
      const ws = this._ws;
      this._ws = null;
      if (ws) ws.close(1000);
      this._setState("disconnected");
    }

    /**
     * Subscribes to a channel. A channel starting with "#" is the personal
     * channel, which the server subscribes by itself; no op is sent for it.
     * @param {string} channel
     * @param {function(*, {channel: string, offset: number, epoch: string}): void} onMessage
     * @param {{history?: boolean}} [opts] history: when this call creates
     *   the channel's subscription, its first subscribe asks the server for
     *   all the history it holds ("since": 0), delivered before live
     *   messages; a "synced" event says when it is in.
     * @returns {{unsubscribe: function(): void}} unsubscribe removes this
     *   handler; the channel is unsubscribed when its last handler goes.
     */
    subscribe(channel, onMessage, opts) {
      let sub = this._subs.get(channel);
      if (!sub) {
        this._subs.set(channel, (sub = newSub()));
        sub.history = !!(opts && opts.history) && channel[0] !== "#";
        if (channel[0] !== "#") this._sendSubscribe(channel, sub);
      }
      const entry = { fn: onMessage }; // distinct per call, even for one fn
      sub.handlers.add(entry);
      return {
        unsubscribe: () => {
          // A "#" channel stays tracked: the server keeps it subscribed.
          if (!sub.handlers.delete(entry) || sub.handlers.size > 0 || channel[0] === "#") return;
          if (this._subs.get(channel) !== sub) return;
          this._subs.delete(channel);
          this._send({ op: "unsubscribe", channel });
        },
      };
    }

    /**
     * Publishes data to a channel. While not connected the frame waits in a
     * bounded outbox (opts.outboxSize) that is flushed, after the
     * subscribes, once connected. The server does not acknowledge a
     * publish: one sent just as the connection breaks can be lost.
     * @returns {boolean} false when the outbox is full and data was dropped
     *   (an "error" event with code "outbox_full" is emitted too).
     */
    publish(channel, data) {
      const frame = { op: "publish", channel, data };
      if (this._send(frame)) return true;
      if (this._outbox.length >= this.opts.outboxSize) {
        this._emit("error", { code: "outbox_full", message: "outbox full, publish dropped", channel });
        return false;
      }
      this._outbox.push(frame);
      return true;
    }

    /**
     * Adds an event listener. Events: "state" (the new state), "message"
     * ({channel, offset, epoch, data}), "subscribed" (the server's reply),
     * "resync" ({channel, epoch, reason: "recovery"|"gap"|"epoch"}: messages
     * may be missing; "epoch": the channel restarted under a live
     * subscription), "synced" ({channel, epoch, offset}: after a
     * "subscribed", the replay it announced has been delivered: the
     * subscription holds everything the server had when it answered; when
     * the server's history holds nothing newer than the client, at once,
     * and when it holds nothing at all, with the next message), "refreshed" ({expires}: the server took a fresh token),
     * "error" ({code, message, channel}: a server error reply, or code
     * "outbox_full", "connect" or "refresh" from the client), "close" ({code,
     * reason} of each closed connection).
     * @returns {function(): void} removes the listener.
     */
    on(name, fn) {
      const set = this._listeners.get(name) || new Set();
      this._listeners.set(name, set);
      const entry = { fn }; // distinct per call, even for one fn
      set.add(entry);
      return () => set.delete(entry);
    }

    _emit(name, arg) {
      for (const { fn } of this._listeners.get(name) || []) call(fn, arg);
    }

    _setState(s) {
      if (this.state === s) return;
      this.state = s;
      this._emit("state", s);
    }

    /** Sends a frame if connected; reports whether it did. */
    _send(frame) {
      if (!this._ws || this._ws.readyState !== 1 /* OPEN */) return false;
      this._ws.send(JSON.stringify(frame));
      return true;
    }

    _sendSubscribe(channel, sub) {
      const op = { op: "subscribe", channel };
      if (sub.offset !== null) Object.assign(op, { since: sub.offset, epoch: sub.epoch });
      // No position yet: "since" 0 and no epoch, which matches none, asks
      // for all the history the server holds (with recovered: false).
      else if (sub.history) op.since = 0;
      sub.pending = this._send(op);
      sub.recovering = sub.pending && sub.offset !== null;
      sub.loading = sub.pending && sub.offset === null && sub.history;
    }

    async _open() {
      const gen = ++this._gen;
      this._setState(this._retrying ? "reconnecting" : "connecting");
      let ws;
      try {
        const t = this.opts.token;
        const token = typeof t === "function" ? await t() : t;
        if (gen !== this._gen) return; // close() or another connect meanwhile
        const u = new URL(this.url);
        if (token) u.searchParams.set("token", token);
        const p = this._personal && this._subs.get(this._personal);
        if (p) p.recovering = p.offset !== null; // through the URL: no op for it
        if (p && p.recovering) {
          u.searchParams.set("user_since", p.offset);
          u.searchParams.set("user_epoch", p.epoch);
        }
        ws = new WebSocket(u.toString(), "pushgate.v1");
        this._expires = tokenExpiry(token);
      } catch (e) {
        if (gen !== this._gen) return;
        this._emit("error", { code: "connect", message: String((e && e.message) || e) });
        return this._retry(0, false);
      }
      this._ws = ws;
      let openedAt = null;
      let healthy = false; // a message or subscribed reply arrived
      ws.onopen = () => {
        if (this._ws !== ws) return;
        openedAt = Date.now();
        this._retrying = false;
        this._setState("connected");
        this._scheduleRefresh(gen, this._expires);
        for (const [channel, sub] of this._subs) if (channel[0] !== "#") this._sendSubscribe(channel, sub);
        while (this._outbox.length > 0 && this._send(this._outbox[0])) this._outbox.shift();
      };
      ws.onmessage = (e) => {
        if (this._ws !== ws) return;
        let f;
        try { f = JSON.parse(e.data); } catch { return; }
        if (!f) return;
        if (f.type === "message" || f.type === "subscribed") healthy = true;
        this._frame(f);
      };
      ws.onclose = (e) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._emit("close", { code: e.code, reason: e.reason || "" });
        this._retry(e.code, healthy || (openedAt !== null && Date.now() - openedAt >= this.opts.stableAfter));
      };
    }

    /**
     * Schedules a token refresh at about three quarters of the time left
     * before expires (Unix seconds; 0 or null: the token does not expire,
     * or cannot be refreshed because opts.token is not a function).
     */
    _scheduleRefresh(gen, expires) {
      clearTimeout(this._refreshTimer);
      if (!expires || typeof this.opts.token !== "function") return;
      const left = expires * 1000 - Date.now();
      this._refreshTimer = setTimeout(() => this._refresh(gen), Math.max(0, left * 0.75));
    }

    async _refresh(gen) {
      if (gen !== this._gen) return;
      let token;
      try {
        token = await this.opts.token();
      } catch (e) {
        // The server closes the connection with 4001 when the old token
        // expires; the reconnect asks for a token again.
        if (gen === this._gen) this._emit("error", { code: "refresh", message: String((e && e.message) || e) });
        return;
      }
      if (gen !== this._gen || !token) return;
      this._send({ op: "refresh", token });
    }

    /** Schedules the next connection attempt after a close with code. */
    _retry(code, healthy) {
      clearTimeout(this._refreshTimer);
      for (const sub of this._subs.values()) {
        sub.pending = sub.recovering = sub.loading = sub.live = false;
        sub.syncTo = null;
      }
      // 4003: the server disconnected this client and says not to come back.
      if (code === 4003) this._closed = true;
      this._retrying = !this._closed;
      this._setState(this._closed ? "disconnected" : "reconnecting");
      if (this._closed) return;
      // A healthy connection resets the backoff, except when the server
      // closed it for overload (1013): then keep backing off.
      if (healthy && code !== 1013) this._attempt = 0;
      const o = this.opts;
      // 1001 (the server drains) and 4001 (the token expired: the token
      // function is asked again) reconnect at once, plus jitter.
      const soon = code === 1001 || code === 4001;
      const cap = soon ? o.minBackoff : Math.min(o.maxBackoff, o.minBackoff * 2 ** this._attempt);
      this._attempt = Math.min(this._attempt + 1, 30);
      const gen = this._gen;
      this._timer = setTimeout(() => gen === this._gen && !this._closed && this._open(), Math.random() * cap);
    }

    _frame(f) {
      const sub = this._subs.get(f.channel);
      switch (f.type) {
        case "subscribed": return this._subscribed(f, sub);
        case "message": return this._message(f, sub);
        case "error": return this._emit("error", { code: f.code, message: f.message, channel: f.channel });
        case "refreshed":
          // A token no fresher than the last (a cached one) is not asked
          // again before the server closes with 4001 and a reconnect asks.
          if (f.expires > this._expires) {
            this._expires = f.expires;
            this._scheduleRefresh(this._gen, f.expires);
          }
          return this._emit("refreshed", { expires: f.expires });
        case "unsubscribed":
          // A subscription made again before this reply came: the next
          // "subscribed" answers it, not an epoch change.
          if (sub) sub.live = false;
          return;
      }
    }

    _subscribed(f, sub) {
      if (!sub && typeof f.channel === "string" && f.channel[0] === "#") {
        // Unasked: the personal channel of the token's user.
        this._subs.set(f.channel, (sub = newSub()));
      }
      if (!sub) return; // unsubscribed since
      if (sub.live) return this._epochChanged(f, sub);
      sub.live = true;
      if (f.channel[0] === "#" && this._personal !== f.channel) {
        const old = this._subs.get(this._personal);
        if (old && old.handlers.size === 0) this._subs.delete(this._personal);
        this._personal = f.channel;
      }
      const resync = sub.recovering && !f.recovered;
      // The replay (all the history holds, for a history load or a failed
      // recovery) restarts at the oldest retained message.
      if (resync || sub.loading) sub.offset = 0;
      else if (!sub.recovering) sub.offset = f.offset; // fresh: live from here on
      sub.epoch = f.epoch;
      sub.pending = sub.recovering = sub.loading = false;
      this._emit("subscribed", { channel: f.channel, offset: f.offset, epoch: f.epoch, recovered: !!f.recovered });
      if (resync) this._emit("resync", { channel: f.channel, epoch: f.epoch, reason: "recovery" });
      this._syncTo(f.channel, sub, f.offset);
    }

    /**
     * Waits for the replay that follows a "subscribed" reply, up to offset
     * (the channel's last when the server answered): history always holds
     * its newest message, so the replay ends with it. "synced" at once when
     * there is nothing to wait for.
     */
    _syncTo(channel, sub, offset) {
      sub.syncTo = sub.offset >= offset ? null : offset;
      if (sub.syncTo === null) this._emit("synced", { channel, epoch: sub.epoch, offset: sub.offset });
    }

    /**
     * A "subscribed" for a subscription already live on this connection:
     * the server restarted the channel in a new epoch. Offsets start again
     * after f.offset; unless f.recovered, what came before is gone.
     */
    _epochChanged(f, sub) {
      sub.offset = f.offset;
      sub.epoch = f.epoch;
      this._emit("subscribed", { channel: f.channel, offset: f.offset, epoch: f.epoch, recovered: !!f.recovered });
      if (!f.recovered) this._emit("resync", { channel: f.channel, epoch: f.epoch, reason: "epoch" });
      this._syncTo(f.channel, sub, f.offset);
    }

    _message(f, sub) {
      // Not subscribed, or a leftover of an earlier subscription arriving
      // before this one's reply: not ours to deliver.
      if (!sub || (sub.pending && sub.offset === null)) return;
      if (sub.offset !== null && f.offset <= sub.offset) return; // duplicate
      const gap = sub.offset !== null && sub.offset > 0 && f.offset > sub.offset + 1;
      sub.offset = f.offset;
      if (gap) this._emit("resync", { channel: f.channel, epoch: sub.epoch, reason: "gap" });
      const meta = { channel: f.channel, offset: f.offset, epoch: sub.epoch };
      for (const { fn } of [...sub.handlers]) call(fn, f.data, meta);
      this._emit("message", Object.assign({ data: f.data }, meta));
      if (sub.syncTo !== null && f.offset >= sub.syncTo) {
        sub.syncTo = null;
        this._emit("synced", { channel: f.channel, epoch: sub.epoch, offset: f.offset });
      }
    }
  }

  /** newSub is a channel's state: handlers, and the position (epoch,
   * offset) of its last message; offset is null until the server gives one. */
  function newSub() {
    return {
      handlers: new Set(), epoch: null, offset: null, history: false,
      pending: false, recovering: false, loading: false, live: false, syncTo: null,
    };
  }

  /** tokenExpiry returns a JWT's "exp" (Unix seconds), or 0 when it has
   * none or is not a JWT. Reading it needs no key: the server verifies. */
  function tokenExpiry(token) {
    try {
      const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const exp = JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).exp;
      return typeof exp === "number" ? exp : 0;
    } catch {
      return 0;
    }
  }

  /** Calls an app callback; its exception is rethrown outside the client. */
  function call(fn, ...args) {
    try { fn(...args); } catch (e) { setTimeout(() => { throw e; }); }
  }

  if (typeof module === "object" && module && typeof module.exports === "object") {
    // CommonJS: require("pushgate-client") is the class; so are its
    // .Pushgate and .default, for named and default imports from ES modules.
    module.exports = Pushgate;
    module.exports.Pushgate = Pushgate;
    module.exports.default = Pushgate;
  } else {
    global.Pushgate = Pushgate;
  }
})(typeof window !== "undefined" ? window : globalThis);
