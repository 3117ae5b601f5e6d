"""permessage-deflate with Python's websockets client against the wsd echo
daemon; run by internal/interop/deflate_test.go, which records the wire in
between.

Usage: python3 deflate.py ws://127.0.0.1:PORT/ CONFIG_JSON

CONFIG_JSON: {"sizes": [N, ...], "offer": null or the keyword arguments of
ClientPerMessageDeflateFactory, e.g. {"server_max_window_bits": 10}}. With
"offer" null the client keeps websockets' default, which offers
"permessage-deflate; client_max_window_bits". websockets checks the
server's answer against its offer and refuses the connection if the answer
is not one it may accept (RFC 7692 section 7). It compresses every message
it sends.

For each size it sends a text message of JSON records, a binary message of
fixed-size records and, up to 64 KiB, a binary message of random bytes, one
at a time, and checks each echo. It prints one JSON object on stdout:
  {"version": ..., "header": the Sec-WebSocket-Extensions answer,
   "params": what the client negotiated, "sent": [{"size": N, "binary": B}],
   "errors": [...], "close": {"code": N} or null, "fatal": S (on failure)}
Exit status: 0 when it ran to the end (the caller judges the result), 1 on
a fatal error, 2 on bad usage.
"""

import asyncio
import json
import os
import struct
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

STEP_TIMEOUT = 10
OVERALL_TIMEOUT = 60
MAX_RANDOM = 64 << 10  # random messages go up to this size


def json_text(n):
    """n bytes of JSON records (ASCII), cut at n."""
    parts, size, i = ["["], 1, 0
    while size < n:
        rec = ('{"id":%d,"user":"u%d","event":"%s","price":%.2f,"qty":%d,"ts":"2026-03-01T12:%02d:00Z"},'
               % (1000 + i, (i * 7919) % 10007, ("trade", "quote", "cancel")[i % 3],
                  100 + ((i * 37) % 900) / 10, (i * 13) % 50, i % 60))
        parts.append(rec)
        size += len(rec)
        i += 1
    return "".join(parts)[:n]


def records(n):
    """n bytes of 16-byte binary records with slowly changing fields."""
    b = bytearray()
    i = 0
    while len(b) < n:
        b += struct.pack("<IId", i, 1700000000 + i * 3, 100 + (i % 50) / 4)
        i += 1
    return bytes(b[:n])


def answer_header(ws):
    headers = getattr(ws, "response_headers", None)
    if headers is None:  # websockets 14 and later
        headers = ws.response.headers
    return ", ".join(headers.get_all("Sec-WebSocket-Extensions"))


def negotiated(ws):
    exts = getattr(ws, "extensions", None)
    if exts is None:  # websockets 14 and later
        exts = ws.protocol.extensions
    out = []
    for e in exts:
        out.append({
            "name": e.name,
            "server_no_context_takeover": e.remote_no_context_takeover,
            "client_no_context_takeover": e.local_no_context_takeover,
            "server_max_window_bits": e.remote_max_window_bits,
            "client_max_window_bits": e.local_max_window_bits,
        })
    return out


async def run(url, config, result):
    kwargs = {"open_timeout": STEP_TIMEOUT, "max_size": 64 << 20, "ping_interval": None}
    if config.get("offer") is not None:
        kwargs["extensions"] = [ClientPerMessageDeflateFactory(client_max_window_bits=True, **config["offer"])]
    async with websockets.connect(url, **kwargs) as ws:
        result["header"] = answer_header(ws)
        result["params"] = negotiated(ws)
        for n in config["sizes"]:
            msgs = [json_text(n), records(n)]
            if n <= MAX_RANDOM:
                msgs.append(os.urandom(n))
            for payload in msgs:
                binary = isinstance(payload, bytes)
                result["sent"].append({"size": len(payload), "binary": binary})
                await ws.send(payload)
                got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                if got != payload:
                    result["errors"].append("echo of the %d-byte %s message: got %d bytes of %s" % (
                        len(payload), "binary" if binary else "text", len(got), type(got).__name__))
        await ws.close(1000, "done")
        result["close"] = {"code": ws.close_code}


def main():
    if len(sys.argv) != 3 or not sys.argv[1].startswith(("ws://", "wss://")):
        print("usage: python3 deflate.py ws://host:port/ CONFIG_JSON", file=sys.stderr)
        return 2
    result = {"version": websockets.__version__, "header": None, "params": None,
              "sent": [], "errors": [], "close": None}
    status = 0
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1], json.loads(sys.argv[2]), result), OVERALL_TIMEOUT))
    except Exception as e:  # reported to the caller, which fails the test
        result["fatal"] = "%s: %s" % (type(e).__name__, e)
        status = 1
    print(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
