// Subscribe to chat:lobby and print what arrives. Node.js with the ws
// package (npm install ws).
const WebSocket = require("ws");

const url = process.argv[2] || "ws://localhost:8080/ws?channels=chat:lobby";
const ws = new WebSocket(url, "pushgate.v1");

ws.on("message", (frame) => {
  const msg = JSON.parse(frame);
  if (msg.type === "message") {
    console.log(msg.channel, msg.offset, JSON.stringify(msg.data));
  } else {
    console.log(msg.type, msg.channel ?? "");
  }
});
ws.on("close", (code, reason) => console.log("closed", code, reason.toString()));
