// A minimal backend for pushgate's hooks, in Node with no package: it
// admits the connections whose session cookie it knows (--proxy-connect
// http://127.0.0.1:$PORT/connect) and prints the webhooks it receives
// (--webhook http://127.0.0.1:$PORT/webhook), once their signature checks.
//
//   PORT=8000 WEBHOOK_SECRET=… node web/examples/backend.js
const http = require("http");
const crypto = require("crypto");

const secret = process.env.WEBHOOK_SECRET;
if (!secret) throw new Error("set WEBHOOK_SECRET: anyone can sign with an empty key");
const sessions = { "s3cr3t-alice": "alice" }; // session cookie → user

http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > 1 << 20) req.destroy(); // a body this large is no hook's
    else chunks.push(c);
  });
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (req.method === "POST" && req.url === "/connect") {
      let cookie = "";
      try {
        cookie = JSON.parse(body).headers.Cookie || "";
      } catch {}
      const sid = (cookie.match(/(?:^|;\s*)session=([^;]*)/) || [])[1];
      const user = sessions[sid];
      if (!user) {
        res.writeHead(401).end(JSON.stringify({ error: { message: "log in first" } }));
        return;
      }
      res.end(JSON.stringify({ user, channels: ["chat:*"], publish: ["chat:*"] }));
    } else if (req.method === "POST" && req.url === "/webhook") {
      const want = "sha256=" + crypto.createHmac("sha256", secret).update(body).digest("hex");
      const got = req.headers["x-pushgate-signature"] || "";
      if (got.length !== want.length || !crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want))) {
        res.writeHead(401).end();
        return;
      }
      for (const e of JSON.parse(body).events) console.log(e.type, e.user || e.channel);
      res.end();
    } else {
      res.writeHead(404).end();
    }
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
