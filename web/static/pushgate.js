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
 * refreshes the connection's token before it expires.
 *
 * Presence (channels the gateway runs with --presence): presence(channel)
 * lists who is subscribed; subscribe(channel, fn, {onJoin, onLeave}) and
 * the "join" and "leave" events tell who comes and goes; "lagging" says
 * the server dropped some of them (ask presence again after its
 * retryAfter). The server may subscribe the client to a channel itself
 * ("serverSubscribed"): the client then keeps it as its own, recovered on
 * reconnects, until it or the server ("serverUnsubscribed") ends it. A
 * server disconnect is a "disconnected" event with its code and reason:
 * 4002 reconnects, 4003 stops the client (lastDisconnect keeps why). The
 * connection asks for app-level pings (?ping=1), answers them, and is
 * dropped and reconnected when no frame at all came for pingTimeout.
 * Outside a browser it needs a global WebSocket (Node 22 has one) and an
 * explicit URL.
 *
 * Where WebSocket is blocked (a proxy that refuses the upgrade), it falls
 * back to an event stream (GET /events, Server-Sent Events) for what the
 * server sends and POST /events/commands for its ops, with the same API:
 * a WebSocket that closes before it ever opened is followed by a stream;
 * once that stream is open a WebSocket is tried once more beside it, and
 * if it fails again the fallback is remembered (localStorage) for
 * opts.fallbackFor, during which reconnects take the stream first.
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
   * @property {number} [pingTimeout=40000] ms without any frame from the
   *   server after which the connection counts as dead and is replaced;
   *   the client asks for app-level pings (?ping=1), which the server
   *   sends after 25 s of silence by default. 0: no pings, no watchdog.
   * @property {Object|null} [info=null] a JSON object describing the
   *   client, sent as ?info= for presence: an open-mode gateway (no
   *   authentication) shows it, unverified; with a token the token's
   *   "info" claim is used instead.
   * @property {Array<"websocket"|"sse">} [transports=["websocket","sse"]]
   *   the transports to use, in order of preference: ["sse"] never tries
   *   WebSocket, ["websocket"] never falls back.
   * @property {number} [fallbackFor=600000] ms for which a fallback to the
   *   event stream is remembered, by every client of the page's origin.
   */

  class Pushgate {
    /**
     * @param {string} [url] ws:// or wss:// URL of /ws; by default the page's
     *   own host.
     * @param {Options} [opts]
     */
    constructor(url, opts) {
      this.url = url || (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
      this.opts = Object.assign({ minBackoff: 250, maxBackoff: 10000, outboxSize: 100, stableAfter: 5000, pingTimeout: 40000, info: null,
        transports: ["websocket", "sse"], fallbackFor: 600000 }, opts);
      /**
       * The transport of the current or last connection: "websocket", or
       * "sse" (an event stream and POSTed ops).
       * @type {"websocket"|"sse"}
       */
      this.transport = this._preferred();
      /**
       * "connecting": the first attempt after connect(); "connected";
       * "reconnecting": the connection failed or closed, and the client is
       * waiting to retry or retrying; "disconnected": stopped for good, by
       * close() or by the server (close code 4003), until connect().
       * @type {"connecting"|"connected"|"reconnecting"|"disconnected"}
       */
      this.state = "disconnected";
      /**
       * The last close by the server's disconnect ({code: 4002|4003,
       * reason, reconnect}), null until one, and again after connect().
       */
      this.lastDisconnect = null;
      this._subs = new Map(); // channel -> newSub()
      this._personal = null; // "#user" once the server subscribed us to it
      this._outbox = []; // publish frames waiting for a connection
      this._listeners = new Map();
      this._ws = null;
      this._gen = 0; // bumped by every connect/close; stale work checks it
      this._timer = null;
      this._refreshTimer = null;
      this._pingTimer = null; // the connection's watchdog
      this._asked = []; // presence requests waiting for their answer, in order
      this._unsubscribing = new Map(); // channel -> own unsubscribes in flight
      this._expires = 0; // "exp" of the token the connection was opened with
      this._attempt = 0; // consecutive failed connections
      this._retrying = false; // a connection failed or closed since connect()
      this._closed = true;
      this._failed = null; // the transport that last failed before opening
      this._switched = false; // the last retry switched transports at once
    }

    /** Starts connecting, and keeps reconnecting until close(). */
    connect() {
      if (!this._closed) return;
      this._closed = false;
      this.lastDisconnect = null;
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
      this._ended();
      this._setState("disconnected");
    }

    /**
     * Subscribes to a channel. A channel starting with "#" is the personal
     * channel, which the server subscribes by itself; no op is sent for it.
     * @param {string} channel
     * @param {function(*, {channel: string, offset: number, epoch: string}): void} onMessage
     * @param {{history?: boolean, onJoin?: function(Object): void, onLeave?: function(Object): void}} [opts]
     *   history: when this call creates the channel's subscription, its
     *   first subscribe asks the server for all the history it holds
     *   ("since": 0), delivered before live messages; a "synced" event says
     *   when it is in. onJoin, onLeave: called with each join and leave
     *   event of the channel ({channel, client, user, info}), as the
     *   "join" and "leave" events, the client's own join included.
     * @returns {{unsubscribe: function(): void}} unsubscribe removes this
     *   handler; the channel is unsubscribed when its last handler goes
     *   (a subscription the server made too, once a handler was added).
     */
    subscribe(channel, onMessage, opts) {
      let sub = this._subs.get(channel);
      if (!sub) {
        this._subs.set(channel, (sub = newSub()));
        sub.history = !!(opts && opts.history) && channel[0] !== "#";
        if (channel[0] !== "#") this._sendSubscribe(channel, sub);
      }
      // distinct per call, even for one fn
      const entry = { fn: onMessage, onJoin: opts && opts.onJoin, onLeave: opts && opts.onLeave };
      sub.handlers.add(entry);
      return {
        unsubscribe: () => {
          // A "#" channel stays tracked: the server keeps it subscribed.
          if (!sub.handlers.delete(entry) || sub.handlers.size > 0 || channel[0] === "#") return;
          if (this._subs.get(channel) !== sub) return;
          this._subs.delete(channel);
          // Its "unsubscribed" answers this, and is no server's.
          if (this._send({ op: "unsubscribe", channel })) this._unsubscribing.set(channel, (this._unsubscribing.get(channel) || 0) + 1);
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
     * Asks who is subscribed to a channel that keeps presence; the client
     * must be subscribed to it (or have sent its subscribe).
     * @param {string} channel
     * @returns {Promise<{channel: string, clients: Array<{client: string, user?: string, info?: Object}>, truncated: boolean}>}
     *   truncated: the server lists only part of the channel's clients. It
     *   rejects with an Error whose code is the server's ("presence_off":
     *   the channel keeps no presence, "not_subscribed", "invalid_channel")
     *   or "not_connected" (not connected when asked, or the connection
     *   closed before the answer), and whose channel is the channel.
     */
    presence(channel) {
      return new Promise((resolve, reject) => {
        const fail = (code, message) => reject(Object.assign(new Error(message), { code, channel }));
        if (!validName(channel)) return fail("invalid_channel", "not a channel name: " + channel);
        if (!this._send({ op: "presence", channel })) return fail("not_connected", "not connected");
        this._asked.push({ channel, resolve, fail });
      });
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
     * "outbox_full", "connect", "refresh" or, on the event-stream
     * fallback, "commands_refused" from the client), "close" ({code,
     * reason} of each closed connection; 1006 "ping timeout" when the
     * watchdog gave up on it), "disconnected" ({code, reason, reconnect}:
     * the server disconnected the client: 4002, it reconnects; 4003, it
     * stops), "join" and "leave" ({channel, client, user, info}: a client
     * subscribed to or left a channel with presence), "lagging" ({channel,
     * message, retryAfter}: the channel's join and leave events were over
     * their rate and some were dropped: ask presence() again after
     * retryAfter ms, a random 1 to 3 s), "serverSubscribed" ({channel,
     * offset, epoch, recovered}: the server subscribed the client to a
     * channel it did not ask for; the client keeps it as its own, and its
     * messages come as "message" events and to handlers that subscribe()
     * adds), "serverUnsubscribed" ({channel}: the server ended a
     * subscription; the client dropped it).
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
      let wsURL = ""; // this attempt's WebSocket URL, query included
      try {
        const t = this.opts.token;
        const token = typeof t === "function" ? await t() : t;
        if (gen !== this._gen) return; // close() or another connect meanwhile
        const u = new URL(this.url);
        if (token) u.searchParams.set("token", token);
        if (this.opts.pingTimeout > 0) u.searchParams.set("ping", "1");
        if (this.opts.info != null) u.searchParams.set("info", JSON.stringify(this.opts.info));
        const p = this._personal && this._subs.get(this._personal);
        if (p) p.recovering = p.offset !== null; // through the URL: no op for it
        if (p && p.recovering) {
          u.searchParams.set("user_since", p.offset);
          u.searchParams.set("user_epoch", p.epoch);
        }
        this.transport = this._next();
        wsURL = u.toString();
        ws = this.transport === "sse" ? new StreamSocket(eventsURL(u)) : new WebSocket(wsURL, "pushgate.v1");
        // Ops the gateway refused whole (a POST over its size): said, as
        // a WebSocket's 1009 would be.
        if (this.transport === "sse") ws.onrefused = (status, n) => this._emit("error", { code: "commands_refused", message: n + " op(s) refused by POST /events/commands (" + status + ")" });
        this._expires = tokenExpiry(token);
      } catch (e) {
        if (gen !== this._gen) return;
        this._emit("error", { code: "connect", message: String((e && e.message) || e) });
        return this._retry(0, false);
      }
      this._ws = ws;
      let openedAt = null;
      let healthy = false; // a message or subscribed reply arrived
      let heard = Date.now(); // when the last frame arrived
      // lost ends the connection ws, closed with code and reason.
      const lost = (code, reason) => {
        this._ws = null;
        this._failed = openedAt === null ? this.transport : null; // the other next
        this._ended();
        this._emit("close", { code, reason });
        if (code === 4002 || code === 4003) {
          this.lastDisconnect = { code, reason, reconnect: code === 4002 };
          this._emit("disconnected", this.lastDisconnect);
        }
        this._retry(code, healthy || (openedAt !== null && Date.now() - openedAt >= this.opts.stableAfter));
      };
      // The watchdog: one timer, re-armed for when the connection would
      // have been silent for pingTimeout, given the last frame.
      const limit = this.opts.pingTimeout;
      const watch = () => {
        if (this._ws !== ws) return;
        const idle = Date.now() - heard;
        if (idle < limit) {
          this._pingTimer = setTimeout(watch, limit - idle);
          return;
        }
        try { ws.close(1000, "ping timeout"); } catch { /* closing anyway */ }
        lost(1006, "ping timeout");
      };
      if (limit > 0) this._pingTimer = setTimeout(watch, limit);
      ws.onerror = () => {}; // a close follows
      ws.onopen = () => {
        if (this._ws !== ws) return;
        openedAt = heard = Date.now();
        if (this.transport === "sse" && this._failed === "websocket") probe(wsURL, this.opts.fallbackFor);
        this._failed = null;
        this._retrying = false;
        this._setState("connected");
        this._scheduleRefresh(gen, this._expires);
        for (const [channel, sub] of this._subs) if (channel[0] !== "#") this._sendSubscribe(channel, sub);
        while (this._outbox.length > 0 && this._send(this._outbox[0])) this._outbox.shift();
      };
      ws.onmessage = (e) => {
        if (this._ws !== ws) return;
        heard = Date.now();
        let f;
        try { f = JSON.parse(e.data); } catch { return; }
        if (!f) return;
        if (f.type === "message" || f.type === "subscribed") healthy = true;
        this._frame(f);
      };
      ws.onclose = (e) => {
        if (this._ws !== ws) return;
        lost(e.code, e.reason || "");
      };
    }

    /** _preferred is the transport to try first: the stream while a
     * fallback is remembered, else the first of opts.transports. */
    _preferred() {
      const t = this._usable();
      if (t.length === 0) return "websocket";
      return t.includes("sse") && remembered() ? "sse" : t[0];
    }

    /** _next is the transport of the next attempt: the preferred one,
     * unless it just failed before opening and there is another. */
    _next() {
      const first = this._preferred();
      if (this._failed !== first) return first;
      const other = first === "websocket" ? "sse" : "websocket";
      return this._usable().includes(other) ? other : first;
    }

    /** _usable is opts.transports that this runtime has (a stream needs
     * EventSource). */
    _usable() {
      return this.opts.transports.filter((t) => t === "websocket" || (t === "sse" && typeof EventSource !== "undefined"));
    }

    /** Forgets what waited for answers on the connection that ended. */
    _ended() {
      clearTimeout(this._pingTimer);
      this._unsubscribing.clear();
      const asked = this._asked.splice(0);
      for (const a of asked) a.fail("not_connected", "the connection closed before the answer");
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
      // A transport that failed before it opened: the other one at once
      // (once), before backing off.
      if (this._failed && this._next() !== this._failed && !this._switched) {
        this._switched = true;
        const gen = this._gen;
        this._timer = setTimeout(() => gen === this._gen && !this._closed && this._open(), 0);
        return;
      }
      this._switched = false;
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
        case "error": return this._error(f);
        case "ping": return this._send({ op: "pong" });
        case "presence": {
          const i = this._asked.findIndex((a) => a.channel === f.channel);
          if (i < 0) return;
          const [a] = this._asked.splice(i, 1);
          return a.resolve({ channel: f.channel, clients: Array.isArray(f.clients) ? f.clients : [], truncated: !!f.truncated });
        }
        case "join":
        case "leave": {
          if (!sub) return;
          const e = { channel: f.channel, client: f.client, user: f.user, info: f.info };
          const join = f.type === "join";
          for (const h of [...sub.handlers]) {
            const fn = join ? h.onJoin : h.onLeave;
            if (fn) call(fn, e);
          }
          return join ? this._emit("join", e) : this._emit("leave", e);
        }
        case "refreshed":
          // A token no fresher than the last (a cached one) is not asked
          // again before the server closes with 4001 and a reconnect asks.
          if (f.expires > this._expires) {
            this._expires = f.expires;
            this._scheduleRefresh(this._gen, f.expires);
          }
          return this._emit("refreshed", { expires: f.expires });
        case "unsubscribed": {
          const own = this._unsubscribing.get(f.channel) || 0;
          if (own > 0) {
            // The reply to our unsubscribe. A subscription made again
            // before it came: the next "subscribed" answers it, not an
            // epoch change.
            this._unsubscribing.set(f.channel, own - 1);
            if (sub) sub.live = false;
            return;
          }
          if (!sub) return;
          // The server ended the subscription.
          this._subs.delete(f.channel);
          if (this._personal === f.channel) this._personal = null;
          return this._emit("serverUnsubscribed", { channel: f.channel });
        }
      }
    }

    _error(f) {
      const e = { code: f.code, message: f.message, channel: f.channel };
      if (f.code === "presence_lagging") {
        return this._emit("lagging", { channel: f.channel, message: f.message, retryAfter: 1000 + Math.random() * 2000 });
      }
      if (f.code === "presence_off" || f.code === "not_subscribed") {
        const i = this._asked.findIndex((a) => a.channel === f.channel);
        if (i >= 0) return this._asked.splice(i, 1)[0].fail(f.code, f.message);
      }
      if (f.code === "not_subscribed" && this._unsubscribing.get(f.channel) > 0) {
        // Our unsubscribe came after the server's: it answered ours.
        this._unsubscribing.set(f.channel, this._unsubscribing.get(f.channel) - 1);
      }
      this._emit("error", e);
    }

    _subscribed(f, sub) {
      let server = false;
      if (!sub && typeof f.channel === "string" && f.channel[0] === "#") {
        // Unasked: the personal channel of the token's user.
        this._subs.set(f.channel, (sub = newSub()));
      } else if (!sub && typeof f.channel === "string" && !(this._unsubscribing.get(f.channel) > 0)) {
        // Unasked, and no answer to a subscribe we took back since: the
        // server subscribed us. From now on it is ours.
        this._subs.set(f.channel, (sub = newSub()));
        server = true;
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
      if (server) this._emit("serverSubscribed", { channel: f.channel, offset: f.offset, epoch: f.epoch, recovered: !!f.recovered });
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
      for (const { fn } of [...sub.handlers]) if (fn) call(fn, f.data, meta);
      this._emit("message", Object.assign({ data: f.data }, meta));
      if (sub.syncTo !== null && f.offset >= sub.syncTo) {
        sub.syncTo = null;
        this._emit("synced", { channel: f.channel, epoch: sub.epoch, offset: f.offset });
      }
    }
  }

  /**
   * StreamSocket is an event stream (GET /events) and POST
   * /events/commands behind the part of the WebSocket interface the client
   * uses: readyState, send, close, onopen, onmessage, onclose. It opens
   * when the stream's first event names its client id and key. Ops sent
   * in one turn go in one POST, and POSTs go one at a time, in order. The
   * browser's own reconnect is not used: the stream ends (onclose, 1006)
   * on an error, and the client reconnects and recovers through its
   * subscribes, as on WebSocket. A close event is the close frame.
   */
  class StreamSocket {
    constructor(url) {
      this.readyState = 0;
      this.onopen = this.onmessage = this.onclose = this.onerror = this.onrefused = null;
      const c = new URL(url);
      c.pathname = c.pathname.replace(/\/?$/, "/commands");
      c.search = "";
      this._commands = c.toString();
      this._queue = []; // ops, as JSON text, waiting for a POST
      this._posting = false;
      this._es = new EventSource(url);
      this._es.onmessage = (e) => {
        let f;
        try { f = JSON.parse(e.data); } catch { return; }
        if (!f) return;
        if (this.readyState === 0 && f.type === "connected") {
          this._client = f.client;
          this._key = f.key;
          this.readyState = 1;
          if (this.onopen) this.onopen({});
          return;
        }
        if (f.type === "close") return this._end(f.code, f.reason || "");
        if (this.readyState === 1 && this.onmessage) this.onmessage({ data: e.data });
      };
      this._es.onerror = () => this._end(1006, "event stream failed");
    }

    send(text) {
      if (this.readyState !== 1) throw new Error("the event stream is not open");
      if (text === '{"op":"pong"}') return; // a stream is never asked to answer
      this._queue.push(text);
      if (!this._posting) {
        this._posting = true;
        Promise.resolve().then(() => this._post());
      }
    }

    async _post() {
      let tries = 0;
      while (this._queue.length > 0 && this.readyState !== 3) {
        // At most 100 ops and about 60 KiB a POST (the gateway takes 64
        // KiB, or one op as large as its --max-message-bytes).
        let n = 0;
        let size = 64;
        while (n < this._queue.length && n < 100 && (n === 0 || size + utf8Length(this._queue[n]) + 1 <= 60000)) {
          size += utf8Length(this._queue[n]) + 1;
          n++;
        }
        const ops = this._queue.slice(0, n);
        const body = '{"client":' + JSON.stringify(this._client) + ',"key":' + JSON.stringify(this._key) + ',"ops":[' + ops.join(",") + "]}";
        let status = 0;
        try {
          // text/plain: a simple request, with no preflight across origins.
          const r = await fetch(this._commands, { method: "POST", body, headers: { "Content-Type": "text/plain" } });
          status = r.status;
        } catch { /* status 0: no answer */ }
        if (this.readyState === 3) return;
        if ((status === 0 || status === 503) && tries < 4) {
          // The stream's node did not answer (NATS down?), or no answer
          // at all: the same ops again, a little later.
          await new Promise((r) => setTimeout(r, 250 * 2 ** tries++));
          continue;
        }
        tries = 0;
        this._queue.splice(0, n);
        // 200 ran them; 429 dropped some, each answered on the stream.
        if (status === 400 || status === 413) {
          if (this.onrefused) this.onrefused(status, n);
          continue;
        }
        // Any other answer: the stream is gone or cannot be reached.
        if (status !== 200 && status !== 429) return this._end(1006, "commands not taken (" + status + ")");
      }
      this._posting = false;
      if (this.readyState === 2) this._end(1000, ""); // close() waited for them
    }

    /** close ends the stream once the ops already sent are posted, as a
     * WebSocket sends what it buffered before its close frame. */
    close() {
      if (this.readyState === 1 && this._posting) {
        this.readyState = 2;
        return;
      }
      this._end(1000, "");
    }

    _end(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this._queue = [];
      this._es.close();
      // Later, as a WebSocket's close event: whoever closed it has moved on.
      Promise.resolve().then(() => this.onclose && this.onclose({ code, reason }));
    }
  }

  /** utf8Length is the UTF-8 size of s. */
  function utf8Length(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
    }
    return n;
  }

  /** eventsURL is the event stream's URL for u, a /ws URL with its query. */
  function eventsURL(u) {
    const e = new URL(u.toString());
    e.protocol = e.protocol === "wss:" ? "https:" : "http:";
    e.pathname = e.pathname.replace(/\/ws$/, "") + "/events";
    return e.toString();
  }

  const fallbackKey = "pushgate.fallback";

  /** remember notes, for ms, that WebSocket failed where a stream did not. */
  function remember(ms) {
    try { global.localStorage.setItem(fallbackKey, String(Date.now() + ms)); } catch { /* no storage: this client only */ }
    memory = Date.now() + ms;
  }
  let memory = 0;

  /**
   * probe tries a WebSocket to url once the stream that followed a failed
   * one is open: if it opens too, the failure was the gateway's (down,
   * restarting), not a proxy's, and nothing is remembered; if it fails,
   * the fallback is, for ms.
   */
  function probe(url, ms) {
    let ws;
    try { ws = new WebSocket(url, "pushgate.v1"); } catch { return remember(ms); }
    let opened = false;
    ws.onerror = () => {};
    ws.onopen = () => { opened = true; ws.close(1000); };
    ws.onclose = () => { if (!opened) remember(ms); };
  }

  /** remembered reports whether a fallback is remembered now. */
  function remembered() {
    let until = memory;
    try { until = Math.max(until, Number(global.localStorage.getItem(fallbackKey)) || 0); } catch { /* none */ }
    return Date.now() < until;
  }

  /** newSub is a channel's state: handlers, and the position (epoch,
   * offset) of its last message; offset is null until the server gives one. */
  function newSub() {
    return {
      handlers: new Set(), epoch: null, offset: null, history: false,
      pending: false, recovering: false, loading: false, live: false, syncTo: null,
    };
  }

  /** validName reports whether a channel name is one the server takes:
   * 1-128 of A-Z a-z 0-9 _ - . : @ + =, or "#" and a user's name. */
  function validName(channel) {
    return typeof channel === "string" && /^(#[\w\-.:@+=]{1,127}|[\w\-.:@+=]{1,128})$/.test(channel);
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
