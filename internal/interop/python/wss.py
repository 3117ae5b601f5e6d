"""Python's websockets client over wss:// against an in-process wsd engine;
run by internal/interop/wss_test.go.

Usage: python3 wss.py wss://127.0.0.1:PORT/ CA_PEM_FILE 1.2|1.3 SIZES_JSON

The client trusts only the CA in CA_PEM_FILE (ssl.create_default_context)
and speaks TLS up to the given version. For each size it sends a text
message and a binary message of random bytes, one at a time, checks each
echo, then closes with 1000. It prints one JSON object on stdout:
  {"version": ..., "tlsVersion": e.g. "TLSv1.3", "sent": N, "errors": [...],
   "close": {"code": N} or null, "fatal": S (on failure)}
Exit status: 0 when it ran to the end (the caller judges the result), 1 on
a fatal error, 2 on bad usage.
"""

import asyncio
import json
import os
import ssl
import sys

import websockets

STEP_TIMEOUT = 10
OVERALL_TIMEOUT = 60
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def text(n):
    """n bytes of UTF-8: ASCII with a two-byte character now and then."""
    unit = "wss echo, ünïcode "
    s = (unit * (n // len(unit.encode()) + 1)).encode()[:n].decode("utf-8", errors="ignore")
    return s + "x" * (n - len(s.encode()))


async def run(url, ctx, sizes, result):
    kwargs = {"ssl": ctx, "open_timeout": STEP_TIMEOUT, "max_size": 64 << 20, "ping_interval": None}
    async with websockets.connect(url, **kwargs) as ws:
        result["tlsVersion"] = ws.transport.get_extra_info("ssl_object").version()
        for n in sizes:
            for payload in (text(n), os.urandom(n)):
                binary = isinstance(payload, bytes)
                result["sent"] += 1
                await ws.send(payload)
                got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                if got != payload:
                    result["errors"].append("echo of the %d-byte %s message: got %d bytes of %s" % (
                        len(payload), "binary" if binary else "text", len(got), type(got).__name__))
        await ws.close(1000, "done")
        result["close"] = {"code": ws.close_code}


def main():
    if len(sys.argv) != 5 or not sys.argv[1].startswith("wss://") or sys.argv[3] not in VERSIONS:
        print("usage: python3 wss.py wss://host:port/ CA_PEM_FILE 1.2|1.3 SIZES_JSON", file=sys.stderr)
        return 2
    result = {"version": websockets.__version__, "tlsVersion": None, "sent": 0, "errors": [], "close": None}
    status = 0
    try:
        ctx = ssl.create_default_context(cafile=sys.argv[2])
        ctx.maximum_version = VERSIONS[sys.argv[3]]
        asyncio.run(asyncio.wait_for(run(sys.argv[1], ctx, json.loads(sys.argv[4]), result), OVERALL_TIMEOUT))
    except Exception as e:  # reported to the caller, which fails the test
        result["fatal"] = "%s: %s" % (type(e).__name__, e)
        status = 1
    print(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
