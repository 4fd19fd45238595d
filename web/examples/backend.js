// A minimal backend for pushgate's hooks, in Node with no package: it
// admits the connections whose session cookie it knows (--proxy-connect
// http://127.0.0.1:$PORT/connect) and prints the webhooks it receives
// (--webhook http://127.0.0.1:$PORT/webhook), once their signature checks.
//
//   PORT=8000 WEBHOOK_SECRET=… node web/examples/backend.js
const http = require("http");
const crypto = require("crypto");

const sessions = { "s3cr3t-alice": "alice" }; // session cookie → user

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (req.method === "POST" && req.url === "/connect") {
      const cookie = JSON.parse(body).headers.Cookie || "";
      const sid = (cookie.match(/(?:^|;\s*)session=([^;]*)/) || [])[1];
      const user = sessions[sid];
      if (!user) {
        res.writeHead(401).end(JSON.stringify({ error: { message: "log in first" } }));
        return;
      }
      res.end(JSON.stringify({ user, channels: ["chat:*"], publish: ["chat:*"] }));
    } else if (req.method === "POST" && req.url === "/webhook") {
      const want = "sha256=" + crypto.createHmac("sha256", process.env.WEBHOOK_SECRET).update(body).digest("hex");
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
