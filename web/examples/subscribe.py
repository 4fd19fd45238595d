# Subscribe to chat:lobby and print what arrives. Python 3 with the
# websockets package: Debian's python3-websockets (for /usr/bin/python3),
# or pip install websockets.
import asyncio
import json
import sys

import websockets

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8080/ws?channels=chat:lobby"


async def main():
    async with websockets.connect(URL, subprotocols=["pushgate.v1"]) as ws:
        async for frame in ws:
            msg = json.loads(frame)
            if msg["type"] == "message":
                data = json.dumps(msg["data"], separators=(",", ":"), ensure_ascii=False)
                print(msg["channel"], msg["offset"], data, flush=True)
            else:
                print(msg["type"], msg.get("channel", ""), flush=True)
    print("closed", ws.close_code, ws.close_reason, flush=True)


asyncio.run(main())
