// chat.js: the chat room on index.html, built on pushgate.js. A room is the
// channel "chat:<room>"; a message is published as {name, text}. User data
// only ever reaches the page through textContent.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const notice = $("notice");
  const list = $("messages");
  const maxShown = 1000; // older list items are removed beyond this

  const RESYNC = "Some messages may be missing (history did not reach back).";

  const token = new URLSearchParams(location.search).get("token") || undefined;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const pg = new Pushgate(url, { token });

  let name = "";
  let room = null; // {channel, sub} once joined
  const confirmed = new Set(); // channels the server said we are subscribed to

  function show(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function clear() {
    notice.textContent = "";
    notice.hidden = true;
  }

  // render appends one message; a personal message has no room.
  function render(data, meta) {
    const d = data !== null && typeof data === "object" ? data : { text: data };
    const li = document.createElement("li");
    li.dataset.offset = String(meta.offset);
    li.dataset.channel = meta.channel;
    if (meta.epoch != null) li.dataset.epoch = meta.epoch;
    const who = document.createElement("span");
    who.className = "name";
    who.textContent = typeof d.name === "string" && d.name ? d.name : meta.channel[0] === "#" ? "to you" : "anonymous";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = typeof d.text === "string" ? d.text : JSON.stringify(data) ?? "";
    if (meta.channel[0] === "#") li.classList.add("personal");
    else if (d.name === name) li.classList.add("mine");
    li.append(who, text);
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    while (list.childElementCount > maxShown) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  pg.on("state", (s) => {
    status.textContent = s;
    status.dataset.state = s;
    if (s !== "connected") {
      confirmed.clear();
      delete document.body.dataset.joined;
    }
  });
  // body[data-joined] names the room's channel while the server confirms
  // the subscription: from then on every message of the room is shown.
  pg.on("subscribed", (e) => {
    confirmed.add(e.channel);
    if (room && e.channel === room.channel) document.body.dataset.joined = e.channel;
  });
  pg.on("resync", (e) => {
    if ((room && e.channel === room.channel) || e.channel[0] === "#") show(RESYNC);
  });
  pg.on("message", (m) => {
    if (m.channel[0] === "#") render(m.data, m);
  });
  pg.on("close", (e) => {
    if (e.code === 1008) show("The gateway refused the connection" + (e.reason ? ": " + e.reason : "") + ". Check the token.");
  });
  pg.on("error", (e) => {
    if (e.code === "forbidden" && room && e.channel === room.channel) {
      // The server answers ops in order and our subscribe went first: a
      // refusal after its reply is about publishing.
      show(confirmed.has(e.channel)
        ? "Client publishing is not enabled for " + e.channel + ". Start the gateway with --client-publish 'chat:*'."
        : "Not allowed to join " + e.channel + (e.message ? ": " + e.message : "."));
    } else if (e.code === "outbox_full") {
      show("Not connected, and too many messages are waiting: this one was not sent.");
    } else if (e.code !== "connect") {
      show("Error " + e.code + (e.message ? ": " + e.message : "") + (e.channel ? " (" + e.channel + ")" : ""));
    }
  });

  $("room").addEventListener("input", (e) => {
    e.target.value = e.target.value.replace(/[^A-Za-z0-9_-]/g, "");
  });

  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const n = $("name").value.trim();
    if (!n) {
      show("Pick a name first.");
      $("name").focus();
      return;
    }
    name = n;
    const r = $("room").value.replace(/[^A-Za-z0-9_-]/g, "") || "lobby";
    $("room").value = r;
    const channel = "chat:" + r;
    if (!room || room.channel !== channel) {
      if (room) room.sub.unsubscribe();
      list.replaceChildren();
      clear();
      room = { channel, sub: pg.subscribe(channel, render) };
      $("room-title").textContent = "Room " + r;
    }
    document.body.dataset.room = r;
    $("text").disabled = $("send").disabled = false;
    $("text").focus();
  });

  $("send-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!room || !text) return;
    if (pg.publish(room.channel, { name, text })) $("text").value = "";
  });

  notice.addEventListener("click", clear);
  pg.connect();
})();
