"""The harness floor: Hypercorn on Trio with an ASGI app that does nothing else.

``bench_ingest`` runs it as a subprocess beside the daemon and sends it the same requests with
the same client, so the daemon's figures can be read against what the HTTP stack, the loopback
and the benchmark client (on the same two cores) cost by themselves on this machine:

* ``POST /echo`` reads the body and answers it back (the floor of the overhead figures);
* ``POST /small`` reads the whole body and answers 136 bytes (``bench_path``'s floor: an
  upload whose answer is as small as a JSON status);
* ``POST /hang`` reads the body and answers 504 two seconds after the request head was parsed
  (the floor of the deadline figures; the daemon's deadline starts at the same instant);
* ``GET /readyz`` answers 200;
* ``POST /gemini`` (with ``PHOTOCHANGER_FLOOR_GEMINI_URL`` set): the *path floor* of
  ``bench_path`` — the work the Gemini path cannot avoid and nothing else (:class:`PathFloor`).

Run: ``python -m tests.bench.floor_app`` with ``PHOTOCHANGER_BIND=127.0.0.1:PORT``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pybase64
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from photochangerd.http.asgi import request_arrival
from photochangerd.media.store import write_atomic
from photochangerd.providers.vendor_http import make_client

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


_GEMINI_HEAD = (
    b'{"contents":[{"role":"user","parts":[{"inline_data":{"mime_type":"image/jpeg","data":"'
)
_GEMINI_TAIL = (
    b'"}},{"text":"turn it into a watercolour"}]}],'
    b'"generationConfig":{"responseModalities":["IMAGE"]}}'
)


@dataclass
class PathFloor:
    """What the Gemini path cannot avoid, done with the best plumbing we have and nothing else:
    the booth's photo cut out of the body (no multipart parser, no checks), base64 in one JSON
    request to the vendor (the daemon's own client: wide reads, TLS draining), the answer parsed
    once (msgspec) and its image decoded (pybase64), the job's row inserted (SQLite, WAL,
    ``synchronous=NORMAL``, as the daemon's) while the vendor works, the image written durably
    (the daemon's ``write_atomic``: write, ``fdatasync``, rename), the row updated, the image
    sent back.  No password, slot, deadline, checks, metrics, logs or checksum.
    """

    client: httpx.AsyncClient
    url: str
    key: str
    directory: Path
    db: sqlite3.Connection

    @classmethod
    def open(cls, client: httpx.AsyncClient, url: str, key: str, directory: Path) -> PathFloor:
        db = sqlite3.connect(directory / "jobs.sqlite3", check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE job (id TEXT PRIMARY KEY, status TEXT, result TEXT)")
        return cls(client, url, key, directory, db)

    def _write_row(self, statement: str, *values: str) -> None:
        self.db.execute(statement, values)
        self.db.commit()

    async def __call__(self, body: bytes) -> bytes:
        job = secrets.token_hex(8)
        photo = body[body.find(b"\xff\xd8") : body.rfind(b"\xff\xd9") + 2]
        request = b"".join((_GEMINI_HEAD, pybase64.b64encode(photo), _GEMINI_TAIL))
        del photo
        headers = {"x-goog-api-key": self.key, "content-type": "application/json"}
        insert = "INSERT INTO job VALUES (?, 'processing', NULL)"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(trio.to_thread.run_sync, self._write_row, insert, job))
            response = await self.client.post(self.url, content=request, headers=headers)
        del request
        parts = msgspec.json.decode(response.content)["candidates"][0]["content"]["parts"]
        image = pybase64.b64decode(parts[-1]["inlineData"]["data"], validate=True)
        del response, parts
        target = self.directory / f"{job}.png"
        await trio.to_thread.run_sync(write_atomic, target, image)
        update = "UPDATE job SET status = 'succeeded', result = ? WHERE id = ?"
        await trio.to_thread.run_sync(self._write_row, update, str(target), job)
        return image


async def app(
    scope: dict[str, Any], receive: Any, send: Any, path_floor: PathFloor | None = None
) -> None:
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
    elif path == "/gemini" and path_floor is not None:
        await _answer(send, 200, await path_floor(body))
    else:
        await _answer(send, 200, body)


async def _serve(config: Config) -> None:
    url = os.environ.get("PHOTOCHANGER_FLOOR_GEMINI_URL")
    if not url:
        await serve(app, config, mode="asgi")
        return
    key = os.environ.get("PHOTOCHANGER_FLOOR_GEMINI_KEY", "")
    with tempfile.TemporaryDirectory(prefix="floor-app-") as directory:
        async with make_client() as client:
            path_floor = PathFloor.open(client, url, key, Path(directory))
            try:
                await serve(partial(app, path_floor=path_floor), config, mode="asgi")
            finally:
                path_floor.db.close()


def main() -> None:
    config = Config()
    config.bind = [os.environ.get("PHOTOCHANGER_BIND", "127.0.0.1:8099")]
    config.accesslog = None
    config.loglevel = "WARNING"
    trio.run(_serve, config)


if __name__ == "__main__":
    main()
