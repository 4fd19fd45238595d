// Exchanges text and binary messages of each size with an echo server and
// exits non-zero on the first mismatch. Usage: node client.mjs URL MODE,
// MODE plain, deflate, or deflate-memlevel1: zlib's smallest blocks, which
// grow incompressible data by about 4% (as Python's websockets, at its
// memLevel 5, grows it by 0.25%).
import { randomBytes } from "node:crypto";
import WebSocket from "ws";

const [url, mode] = process.argv.slice(2);
const sizes = [0, 125, 126, 65535, 65536, 1 << 20];
const deflate = mode.startsWith("deflate");
const perMessageDeflate = mode === "deflate-memlevel1" ? { zlibDeflateOptions: { memLevel: 1 }, threshold: 0 } : deflate;
const ws = new WebSocket(url, { perMessageDeflate, maxPayload: 2 << 20 });

function fail(msg) {
  console.error(msg);
  process.exit(1);
}

function text(size) {
  const b = Buffer.from("push ✓ gate ".repeat(Math.ceil(size / 14) + 1)).subarray(0, size);
  // Cut back to whole runes, padding with dots.
  while (b.length > 0 && Buffer.from(b.toString("utf8")).length !== b.length) b[b.length - 1] = 0x2e;
  return b.toString("utf8");
}

const queue = [];
for (const size of sizes) {
  queue.push({ binary: false, data: text(size) });
  queue.push({ binary: true, data: randomBytes(size) });
}

let current;
function next() {
  current = queue.shift();
  if (!current) {
    ws.close(1000, "done");
    return;
  }
  ws.send(current.data, { binary: current.binary });
}

ws.on("open", () => {
  const ext = ws.extensions;
  if (deflate !== ext.includes("permessage-deflate")) fail(`extensions ${JSON.stringify(ext)} in mode ${mode}`);
  next();
});
ws.on("message", (data, isBinary) => {
  const want = current.binary ? current.data : Buffer.from(current.data);
  if (isBinary !== current.binary || !Buffer.from(data).equals(want)) {
    fail(`${current.binary ? "binary" : "text"} of ${want.length} bytes came back as ${isBinary ? "binary" : "text"} of ${data.length} bytes`);
  }
  next();
});
ws.on("close", (code) => {
  if (queue.length > 0 || code !== 1000) fail(`closed with ${code}, ${queue.length} messages left`);
  console.log(`ws ${mode}: ${sizes.length * 2} messages echoed, closed with ${code}`);
  process.exit(0);
});
ws.on("error", (err) => fail(`error: ${err.message}`));
