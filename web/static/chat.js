// chat.js: the chat room on index.html, built on pushgate.js. A room is the
// channel "chat:<room>"; a message is published as {name, text, ts, id}:
// ts the sender's clock in Unix milliseconds, id a random string that lets
// the sender recognise its own message when it comes back. Messages from
// elsewhere may lack either. With the gateway's --presence 'chat:*' the
// page lists who is in the room (presence, kept current by join and leave
// events, which the log announces); names come from the clients' info:
// a token's "info" claim, or in open mode the name each page sends itself
// (?info), shown as unverified. A page the backend admitted without a
// token (--proxy-connect: by its session cookie) learns who it is from
// its own join, which names the backend's user and info; without
// --presence it keeps the name it gave. User data only ever reaches the
// page through textContent.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const notice = $("notice");
  const list = $("messages");
  const maxShown = 1000; // older list items are removed beyond this

  const RESYNC = "Some messages may be missing (history did not reach back). Catching up…";
  const GAP = "Some messages may be missing here.";

  const token = new URLSearchParams(location.search).get("token") || undefined;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const pg = new Pushgate(url, { token });
  // The token's user and info, as it says (the gateway verifies it).
  const claims = token ? decodeClaims(token) : {};
  const tokenName = claims.info && typeof claims.info.name === "string" && claims.info.name
    ? claims.info.name : typeof claims.sub === "string" ? claims.sub : "";
  const members = new Map(); // client id -> {client, user, info}, for the room
  let self = null; // this page's client id in the room
  let asking = 0; // counts presence requests: only the last one's answer counts
  let reask = null; // timer of a presence request after presence_lagging

  let name = "";
  let vouched = false; // the gateway named this page's user (vouch)
  let room = null; // {channel, sub} once joined
  const confirmed = new Set(); // channels the server said we are subscribed to
  let conn = 0; // counts connections: a publish remembers the one it went out on
  // shown holds a key per message on the page, so that none is shown twice
  // (a history replay after a reconnection, a retried publish): its id
  // when it has one, else channel, epoch and offset.
  const shown = new Set();
  // outgoing holds this page's messages not yet back from the server, by
  // id, in the order they were (last) sent: {data, li, state: "queued" |
  // "sending" | "failed", reason, refused (by the server), conn, sends}.
  const outgoing = new Map();

  function show(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function clear() {
    notice.textContent = "";
    notice.hidden = true;
  }

  // when returns a message's time as a Date, or null when it has none
  // that makes sense.
  function when(d) {
    const t = typeof d.ts === "number" ? d.ts : typeof d.ts === "string" ? Date.parse(d.ts) : NaN;
    if (!Number.isFinite(t)) return null;
    const date = new Date(t);
    return isNaN(date.getTime()) ? null : date;
  }

  // timeElement shows a time in local time: the hour and minute today, with
  // the date otherwise; the full date and time on hover.
  function timeElement(date) {
    const el = document.createElement("time");
    el.dateTime = date.toISOString();
    const today = date.toDateString() === new Date().toDateString();
    const hm = { hour: "2-digit", minute: "2-digit" };
    el.textContent = today ? date.toLocaleTimeString([], hm) : date.toLocaleString([], Object.assign({ month: "short", day: "numeric" }, hm));
    el.title = date.toLocaleString();
    return el;
  }

  // line builds a message's list item; channel is null for this page's
  // own messages not yet delivered.
  function line(data, channel) {
    const d = data !== null && typeof data === "object" ? data : { text: data };
    const li = document.createElement("li");
    li.className = "msg";
    const date = when(d);
    if (date) li.append(timeElement(date));
    const who = document.createElement("span");
    who.className = "name";
    who.textContent = typeof d.name === "string" && d.name ? d.name : channel && channel[0] === "#" ? "to you" : "anonymous";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = typeof d.text === "string" ? d.text : JSON.stringify(data) ?? "";
    if (channel && channel[0] === "#") li.classList.add("personal");
    else if (!channel || d.name === name) li.classList.add("mine");
    li.append(who, text);
    return li;
  }

  // place puts a delivered item (or a divider) in the log, above this
  // page's own undelivered messages, and keeps the log bounded.
  function place(li) {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.insertBefore(li, list.querySelector("li[data-state]"));
    while (list.childElementCount > maxShown) {
      const old = list.firstElementChild;
      if (old.dataset.state) break; // only undelivered messages left
      shown.delete(old.dataset.key);
      old.remove();
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // render shows one delivered message, once; a personal message has no
  // room.
  function render(data, meta) {
    const id = data !== null && typeof data === "object" && typeof data.id === "string" && data.id ? data.id : null;
    const key = id ? "id:" + id : "at:" + meta.channel + "/" + meta.epoch + "/" + meta.offset;
    const out = id && outgoing.get(id);
    if (out) delivered(id, out);
    if (shown.has(key)) return;
    shown.add(key);
    const li = line(data, meta.channel);
    li.dataset.key = key;
    li.dataset.offset = String(meta.offset);
    li.dataset.channel = meta.channel;
    if (meta.epoch != null) li.dataset.epoch = meta.epoch;
    place(li);
  }

  // delivered forgets one of this page's messages that came back. If it
  // had been marked refused by the server, the refusal was for another
  // one in flight: the server does not say which.
  function delivered(id, out) {
    outgoing.delete(id);
    out.li.remove();
    if (out.state === "failed" && out.refused) refuse(out.reason);
  }

  // refuse marks the oldest message in flight failed, for an error the
  // server sent about a publish to the room.
  function refuse(reason) {
    const out = [...outgoing.values()].find((o) => o.state === "sending");
    if (!out) return false;
    mark(out, "failed", reason);
    out.refused = true;
    return true;
  }

  // mark sets the state of an undelivered message and what it shows.
  function mark(out, state, reason) {
    out.state = state;
    out.reason = reason || "";
    out.refused = false;
    const li = out.li;
    li.dataset.state = state;
    li.querySelector(".mark")?.remove();
    li.querySelector(".actions")?.remove();
    const m = document.createElement("span");
    m.className = "mark";
    m.textContent = state === "failed" ? "not sent: " + reason : state;
    li.append(m);
    if (state !== "failed") return;
    const actions = document.createElement("span");
    actions.className = "actions";
    for (const [action, label] of [["retry", "Retry"], ["edit", "Edit"]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.action = action;
      b.textContent = label;
      actions.append(b);
    }
    li.append(actions);
  }

  // send publishes one of this page's messages (again), and shows it as
  // queued, or sending, until it comes back on the channel.
  function send(out) {
    outgoing.delete(out.data.id);
    outgoing.set(out.data.id, out); // last sent last
    list.append(out.li); // undelivered messages stay at the bottom
    list.scrollTop = list.scrollHeight;
    const live = pg.state === "connected";
    out.li.dataset.sends = String(++out.sends);
    if (!pg.publish(room.channel, out.data)) {
      mark(out, "failed", "not connected, and too many messages are waiting");
      return;
    }
    out.conn = conn;
    mark(out, live ? "sending" : "queued");
  }

  // decodeClaims reads a JWT's claims, without verifying them: the
  // gateway does.
  function decodeClaims(jwt) {
    try {
      const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const c = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
      return c && typeof c === "object" ? c : {};
    } catch {
      return {};
    }
  }

  // whoName is the name a client goes by: its info's, else its user.
  function whoName(c) {
    return (c.info && typeof c.info.name === "string" && c.info.name) || c.user || "anonymous";
  }

  // unverified marks a name the client gave itself: no token vouches for
  // it.
  function unverified() {
    const u = document.createElement("span");
    u.className = "unverified";
    u.textContent = "unverified";
    u.title = "open mode: this name is what the page says, not a verified user";
    return u;
  }

  // showMembers draws the member list, sorted by name.
  function showMembers() {
    const items = [...members.values()].sort((a, b) => whoName(a).localeCompare(whoName(b)) || (a.client < b.client ? -1 : 1));
    $("member-list").replaceChildren(...items.map((c) => {
      const li = document.createElement("li");
      li.dataset.client = c.client;
      const n = document.createElement("span");
      n.className = "member-name";
      n.textContent = whoName(c);
      li.append(n);
      if (!c.user) li.append(unverified());
      if (c.client === self) {
        li.classList.add("self");
        li.append(" (you)");
      }
      return li;
    }));
    $("members-title").textContent = "In the room (" + members.size + ")";
  }

  // presenceNote says why the member list is missing or partial, or
  // clears that.
  function presenceNote(text) {
    const note = $("presence-note");
    note.textContent = text;
    note.hidden = !text;
  }

  // askPresence fetches the room's member list, replacing what the page
  // had: join and leave events keep it current from then on.
  function askPresence() {
    clearTimeout(reask);
    reask = null;
    if (!room) return;
    const channel = room.channel;
    const mine = ++asking;
    pg.presence(channel).then((list) => {
      if (mine !== asking || !room || room.channel !== channel) return;
      members.clear();
      for (const c of list.clients) members.set(c.client, c);
      showMembers();
      presenceNote(list.truncated ? "Only some of the room's members are listed." : "");
      $("member-list").hidden = false;
      $("members").hidden = false;
      document.body.dataset.presence = channel;
    }, (e) => {
      if (mine !== asking || !room || room.channel !== channel || e.code !== "presence_off") return;
      // not_connected: asked again once subscribed again.
      members.clear();
      showMembers();
      $("members-title").textContent = "In the room";
      $("member-list").hidden = true;
      presenceNote("No member list: the gateway shows who is in a room when started with --presence 'chat:*'.");
      $("members").hidden = false;
      document.body.dataset.presence = "off";
    });
  }

  // announce puts "<name> joined" or "left" in the log.
  function announce(c, what) {
    const li = document.createElement("li");
    li.className = "event";
    li.dataset.event = what;
    li.dataset.client = c.client;
    li.textContent = whoName(c) + " " + what;
    if (!c.user) li.append(" ", unverified());
    place(li);
  }

  function onJoin(e) {
    if (!room || e.channel !== room.channel) return;
    const c = { client: e.client, user: e.user, info: e.info };
    // The server sends a client its own join right after its subscribed.
    if (self === null) self = c.client;
    if (c.client === self) vouch(c);
    const known = members.has(c.client);
    members.set(c.client, c);
    showMembers();
    if (!known && c.client !== self) announce(c, "joined");
  }

  function onLeave(e) {
    if (!room || e.channel !== room.channel) return;
    const c = members.get(e.client) || { client: e.client, user: e.user, info: e.info };
    if (!members.delete(e.client)) return;
    showMembers();
    announce(c, "left");
  }

  // showMe says who this page is: the token's name, or the one the
  // gateway gave it (vouch), or in open mode the name it sends,
  // unverified.
  function showMe() {
    const me = $("me");
    me.textContent = "you are " + name;
    if (!token && !vouched) me.append(" ", unverified());
    me.hidden = !name;
  }

  // vouch takes this page's name from its own join when that names a
  // user and the page has no token: the backend admitted the connection
  // (the connect proxy) and said who it is, as a token would have.
  function vouch(c) {
    if (token || !c.user) return;
    vouched = true;
    name = whoName(c);
    showMe();
    $("name").value = name;
    $("name").readOnly = true;
    $("name").title = "the name your login gives you";
  }

  function newID() {
    if (typeof crypto !== "undefined" && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  pg.on("state", (s) => {
    status.textContent = s;
    status.dataset.state = s;
    // "sse" where WebSocket is blocked: pushgate.js fell back to an event stream.
    status.title = s === "connected" ? "connected over " + pg.transport : "";
    status.dataset.transport = pg.transport;
    if (s === "connected") {
      conn++;
      // pushgate.js sends its outbox as it connects.
      for (const out of outgoing.values()) {
        if (out.state !== "queued") continue;
        out.conn = conn;
        mark(out, "sending");
      }
    } else {
      confirmed.clear();
      delete document.body.dataset.joined;
      delete document.body.dataset.synced;
      delete document.body.dataset.presence;
      // The list is asked again once subscribed again.
      members.clear();
      self = null;
      asking++;
      showMembers();
    }
  });
  // body[data-joined] names the room's channel while the server confirms
  // the subscription: from then on every message of the room is shown;
  // body[data-synced] once the history replayed with it is in, too.
  pg.on("subscribed", (e) => {
    confirmed.add(e.channel);
    if (room && e.channel === room.channel) {
      document.body.dataset.joined = e.channel;
      self = null; // its join comes next
      askPresence();
    }
  });
  pg.on("lagging", (e) => {
    // Some joins and leaves were dropped: ask again, after the random
    // delay that keeps the room's pages from asking all at once.
    if (!room || e.channel !== room.channel || reask !== null) return;
    reask = setTimeout(askPresence, e.retryAfter);
  });
  // Kicked by the backend: after 4003 pushgate.js stays disconnected.
  pg.on("disconnected", (e) => {
    if (e.reconnect) return;
    document.body.dataset.kicked = "true";
    $("text").disabled = $("send").disabled = $("join").disabled = true;
    show("Disconnected by the server" + (e.reason ? ": " + e.reason : "") + ". It asked this page not to reconnect; reload to try again.");
  });
  pg.on("resync", (e) => {
    if (!(room && e.channel === room.channel) && e.channel[0] !== "#") return;
    const gap = document.createElement("li");
    gap.className = "gap";
    gap.textContent = GAP;
    place(gap);
    // A gap seen live has nothing to catch up with; after a reconnection
    // or a new epoch, the replay follows.
    if (e.reason !== "gap") show(RESYNC);
  });
  pg.on("synced", (e) => {
    if (!(room && e.channel === room.channel) && e.channel[0] !== "#") return;
    if (room && e.channel === room.channel) document.body.dataset.synced = e.channel;
    if (notice.textContent === RESYNC) clear();
    // Sent on a connection that broke before they came back: they may
    // never have reached the gateway.
    for (const out of outgoing.values()) {
      if (out.state === "sending" && out.conn < conn) mark(out, "failed", "the connection dropped before it was confirmed");
    }
  });
  pg.on("message", (m) => {
    if (m.channel[0] === "#") render(m.data, m);
  });
  pg.on("close", (e) => {
    if (e.code === 1008) show("The gateway refused the connection" + (e.reason ? ": " + e.reason : "") + ". Check the token.");
  });
  pg.on("error", (e) => {
    if (room && e.channel === room.channel && confirmed.has(e.channel)) {
      // The server answers ops in order and our subscribe went first: a
      // refusal after its reply is about a publish, the oldest in flight.
      const reason = e.code === "forbidden"
        ? "client publishing is not enabled for " + e.channel + " (start the gateway with --client-publish 'chat:*')"
        : e.message || e.code;
      if (!refuse(reason)) show("Error " + e.code + ": " + reason);
    } else if (e.code === "forbidden" && room && e.channel === room.channel) {
      show("Not allowed to join " + e.channel + (e.message ? ": " + e.message : "."));
    } else if (e.code !== "connect" && e.code !== "outbox_full") {
      show("Error " + e.code + (e.message ? ": " + e.message : "") + (e.channel ? " (" + e.channel + ")" : ""));
    }
  });

  $("room").addEventListener("input", (e) => {
    e.target.value = e.target.value.replace(/[^A-Za-z0-9_-]/g, "");
  });

  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (document.body.dataset.kicked) return;
    const n = tokenName || $("name").value.trim();
    if (!n) {
      show("Pick a name first.");
      $("name").focus();
      return;
    }
    const renamed = name !== n;
    name = n;
    showMe();
    if (!token && renamed) {
      // Open mode: the name is the info this page gives the gateway, for
      // presence; a new name takes a new connection.
      pg.opts.info = { name };
      if (pg.state !== "disconnected") pg.close();
    }
    const r = $("room").value.replace(/[^A-Za-z0-9_-]/g, "") || "lobby";
    $("room").value = r;
    const channel = "chat:" + r;
    if (!room || room.channel !== channel) {
      if (room) room.sub.unsubscribe();
      members.clear();
      self = null;
      asking++;
      showMembers();
      $("members").hidden = true;
      delete document.body.dataset.presence;
      list.replaceChildren();
      shown.clear();
      outgoing.clear();
      clear();
      delete document.body.dataset.synced;
      // A late joiner sees what the gateway's history holds.
      room = { channel, sub: pg.subscribe(channel, render, { history: true, onJoin, onLeave }) };
      $("room-title").textContent = "Room " + r;
    }
    document.body.dataset.room = r;
    $("text").disabled = $("send").disabled = false;
    $("text").focus();
    pg.connect(); // a no-op while connected
  });

  $("send-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!room || !text) return;
    const data = { name, text, ts: Date.now(), id: newID() };
    send({ data, li: line(data, null), state: "", reason: "", refused: false, conn, sends: 0 });
    $("text").value = "";
  });

  // The buttons of a message that was not sent: send it again, or take it
  // back into the input to change it.
  list.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    const li = b && b.closest("li");
    const out = li && [...outgoing.values()].find((o) => o.li === li);
    if (!out || out.state !== "failed") return;
    if (b.dataset.action === "retry") {
      send(out);
      return;
    }
    outgoing.delete(out.data.id);
    li.remove();
    $("text").value = out.data.text;
    $("text").focus();
  });

  notice.addEventListener("click", clear);
  if (tokenName) {
    // The token names the user: that is the name.
    $("name").value = tokenName;
    $("name").readOnly = true;
    $("name").title = "the name in your token";
  }
})();
