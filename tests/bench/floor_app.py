"""The harness floor: Hypercorn on Trio with an ASGI app that does nothing else.

``bench_ingest`` runs it as a subprocess beside the daemon and sends it the same requests with
the same client, so the daemon's figures can be read against what the HTTP stack, the loopback
and the benchmark client (on the same two cores) cost by themselves on this machine:

* ``POST /echo`` reads the body and answers it back (the floor of the overhead figures);
* ``POST /small`` reads the whole body and answers 136 bytes (``bench_path``'s floor: an
  upload whose answer is as small as a JSON status);
* ``POST /hang`` reads the body and answers 504 two seconds after the request head was parsed
  (the floor of the deadline figures; the daemon's deadline starts at the same instant);
* ``GET /readyz`` answers 200.

Run: ``python -m tests.bench.floor_app`` with ``PHOTOCHANGER_BIND=127.0.0.1:PORT``.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from photochangerd.http.asgi import request_arrival

HANG_SECONDS = 2.0
SMALL_BYTES = 136
_SMALL_HEAD = b'{"status":"ok","floor":true,"note":"'
SMALL_ANSWER = _SMALL_HEAD + b"x" * (SMALL_BYTES - len(_SMALL_HEAD) - 2) + b'"}'


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    arrival = request_arrival(send)
    path = scope["path"]
    if path == "/readyz":
        await _answer(send, 200, b"{}")
        return
    body = await _read_body(receive)
    if path == "/hang":
        await trio.sleep_until(arrival + HANG_SECONDS)
        await _answer(send, 504, b'{"failure_reason":"provider_timeout"}')
    elif path == "/small":
        await _answer(send, 200, SMALL_ANSWER)
    else:
        await _answer(send, 200, body)


def main() -> None:
    config = Config()
    config.bind = [os.environ.get("PHOTOCHANGER_BIND", "127.0.0.1:8099")]
    config.accesslog = None
    config.loglevel = "WARNING"
    trio.run(partial(serve, app, config, mode="asgi"))


if __name__ == "__main__":
    main()
