"""Outbound HTTP to AI vendors: one shared ``httpx.AsyncClient`` per provider, bounded reads.

httpx's timeouts are per phase and per chunk (a vendor dripping one byte a second never times
out) and it has no response-size cap (docs/stack-traps.md, "Outbound HTTP: httpx").  So:
every call runs inside the job's cancel scope (the only bound on a whole call), responses are
streamed and abandoned past ``max_bytes``, and the connect/read timeouts stay as inner network
guards only.

Network failures become :class:`VendorUnreachable`; what a vendor said is a
:class:`VendorResponse` for the driver to classify.  Error texts are truncated before they reach
logs or job records, and never include request headers (where the keys are).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import secrets
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, cast

import httpcore
import httpx
import msgspec
import orjson
import pybase64
import trio

from photochangerd.providers.base import ProviderRejected
from photochangerd.providers.vendor_network import VendorNetwork

log = logging.getLogger("photochangerd.providers")

ERROR_TEXT_LIMIT = 300


class VendorUnreachable(Exception):
    """Connection refused/reset, DNS failure, TLS error, network timeout."""


class ResponseTooLarge(ProviderRejected):
    """The vendor's response exceeded our cap."""


_UNPARSED: Any = object()
_decode_json = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class VendorResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    # The parsed body, filled by the first successful json() call.
    _document: Any = field(default=_UNPARSED, init=False, repr=False, compare=False)

    def json(self) -> Any:
        """Parsed JSON body; ``ValueError`` when it is not JSON.

        Parsed once and cached: a driver classifying the answer and logging its id reads the
        same document (a Gemini answer is ~2 MB of JSON).  The document is shared: do not
        modify it.  A body that is not JSON is not cached (the rare error path parses again
        rather than keeping an exception, and its traceback, on the response).  msgspec:
        0.5 ms for a 1.5 MB image's answer, json.loads 1.3-1.5 ms; orjson took 0.6 ms but
        allocated a ~22 MiB work buffer per parse, 490 page faults (≈ 1 ms) each time
        (docs/stack-traps.md, "Memory").  Its ``DecodeError`` is a ``ValueError``.
        """
        document = self._document
        if document is _UNPARSED:
            try:
                document = _decode_json(self.body)
            except RecursionError:  # nested past the stack (orjson said ValueError at 1024)
                raise ValueError("JSON nested too deeply") from None
            object.__setattr__(self, "_document", document)
        return document

    def snippet(self) -> str:
        """A short, printable excerpt of the body for logs and job records (no API key)."""
        text = self.body[:ERROR_TEXT_LIMIT].decode("utf-8", errors="replace")
        return redact(" ".join(text.split()))


def decode_base64(text: Any) -> bytes:
    """Strict base64 → bytes; ``ValueError`` when ``text`` is not a valid base64 string.

    pybase64 (SIMD): a 1.5 MB image's 2 MB string decodes in ≈ 0.1 ms where the standard
    library takes 4-5 ms (its decode loop is the cost, not the validation or a copy).
    """
    if not isinstance(text, str | bytes):
        raise ValueError(f"base64 data is a {type(text).__name__}, not a string")
    return pybase64.b64decode(text, validate=True)


# Raw bytes of the photo per base64 piece sent (a multiple of 3).  Plain HTTP: 1 MiB of text,
# the fewest steps of the event loop (256 KiB pieces took /healthz p95 under 30 booths with
# 1.5 MB results from 26-35 to 46-53 ms).  TLS: 256 KiB of text.  Sends over TLS are slower,
# so more of them are in flight at once, each piece held twice (its text and OpenSSL's sealed
# copy): with 1 MiB pieces thirty booths peaked at 199.8-222.9 MiB, with 256 KiB at
# 146.3-170.6 MiB (bench_path --tls, two interleaved pairs, CPU per upload and throughput the
# same or better).  vendor_network.TLS_WRITE_BYTES bounds what other drivers write over TLS.
BASE64_CHUNK = 3 * 256 * 1024
TLS_BASE64_CHUNK = 3 * 64 * 1024


def base64_piece(url: str) -> int:
    """The base64 piece size for a request to ``url`` (see :data:`BASE64_CHUNK`)."""
    return TLS_BASE64_CHUNK if url.startswith("https:") else BASE64_CHUNK


class JsonWithImages:
    """A JSON request body whose images go in as base64 strings, encoded while it is sent.

    Built from a document holding :meth:`image` placeholders: serialized once with orjson, split
    at the placeholders, and streamed as text, base64 pieces, text... with an exact
    ``Content-Length``.  The base64 copy of a photo (1.4 MB for a 1 MB JPEG) and the JSON text
    around it (1.4 MB more) never exist in memory: with 30 booths waiting on a vendor that was
    ≈ 85 MB.  Each :meth:`chunks` call starts a fresh stream (a retry sends it again).
    """

    def __init__(self) -> None:
        self._token = secrets.token_hex(8)
        self._images: list[bytes] = []
        self._segments: list[bytes] = []

    def image(self, data: bytes) -> str:
        """A placeholder string for ``data``'s base64 text, to put in the document."""
        self._images.append(data)
        return f"\x00{self._token}:{len(self._images) - 1}\x00"

    def seal(self, document: Any) -> JsonWithImages:
        """Serialize ``document`` (placeholders in it) and cut it where the images go."""
        text = orjson.dumps(document)
        segments = []
        for index in range(len(self._images)):
            marker = f"\\u0000{self._token}:{index}\\u0000".encode()
            before, found, text = text.partition(marker)
            if not found:
                raise ValueError(f"image {index} is not in the document")
            segments.append(before)
        segments.append(text)
        self._segments = segments
        return self

    @property
    def length(self) -> int:
        encoded = sum(4 * -(-len(image) // 3) for image in self._images)
        return sum(len(segment) for segment in self._segments) + encoded

    async def chunks(self, piece: int = BASE64_CHUNK) -> AsyncIterator[bytes]:
        """The body, the images' base64 in pieces of ``piece`` raw bytes (a multiple of 3:
        only the last piece of an image is padded, so :attr:`length` stays exact)."""
        if piece <= 0 or piece % 3:
            raise ValueError(f"a base64 piece is a positive multiple of 3 bytes, not {piece}")
        for index, segment in enumerate(self._segments):
            yield segment
            if index < len(self._images):
                view = memoryview(self._images[index])
                for start in range(0, len(view), piece):
                    yield pybase64.b64encode(view[start : start + piece])


def truncate(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """A vendor's text made fit for a job record, a log and the booth's answer: one line, at
    most ``limit`` characters, no API key (:func:`redact`)."""
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit] + "…"


# API keys as vendors echo them in their errors: Google's "Consumer 'api_key:AIza…' has been
# suspended", an OpenAI key, a bearer token, a key in a query string.
_KEY_SHAPES = re.compile(
    r"(?i)(api[_-]?key[:=])[^\s'\",;&]+"
    r"|AIza[0-9A-Za-z_\-]{20,}"
    r"|\bsk-[0-9A-Za-z_\-]{16,}"
    r"|(bearer\s+)[0-9A-Za-z._~+/=\-]{16,}"
    r"|([?&]key=)[^\s&'\"]+"
)
_known_keys: set[str] = set()  # every provider key this process has used (ProviderKeys.get)


def remember_key(key: str) -> None:
    """A provider key to keep out of every vendor text from now on (see :func:`redact`)."""
    if len(key) >= 8:  # a shorter "key" would blank ordinary words
        _known_keys.add(key)


def redact(text: str) -> str:
    """``text`` without the provider keys this process knows, nor anything shaped like one.

    Vendors echo the caller's key in some errors (Google's 403 for a suspended key names it);
    the text then went to the job record, the log, the admin API and the booth's answer."""
    for key in _known_keys:
        if key in text:
            text = text.replace(key, "***")
    return _KEY_SHAPES.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + "***", text)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context (the CA bundle loaded once) for every vendor client: each context of its
    own held ~1 MiB of certificates, and there is a client per provider."""
    return httpx.create_ssl_context()


# httpcore reads an answer 64 KiB at a time, and every read is a trip through trio, h11,
# httpcore's and httpx's stream layers and our loop in :func:`send`: ≈ 40-50 µs each, 32 trips
# for a Gemini answer (~2 MB of JSON).  256 KiB reads take 8.  Measured (2 vCPU, a 2 MB answer
# over loopback, four interleaved rounds): 1-1.5 ms less per answer, the same in the daemon's
# CPU per 1.5 MB-result upload.  A read never waits for the size: it takes what has arrived.
# Over TLS trio reads one record (16 KiB) per call whatever is asked: the network under the
# clients takes the records already received as well (vendor_network.py).
# 1 MiB and 4 MiB were no better (4 MiB is past the mmap threshold: a mapping per read).
# ``READ_NUM_BYTES`` is a class constant of httpcore's public HTTP/1.1 connection
# (tests/test_dependencies.py checks that it is still what reads use).
VENDOR_READ_BYTES = 256 * 1024


# As many idle connections kept as may be open: a worker's call (30 workers by default) finds
# one, instead of closing it and opening another for the next job.  With 16, thirty booths
# turned connections over all the time; over TLS each new one is a handshake, and the closed
# ones' TLS buffers were not given back in time: peak RSS 425-593 MiB with 30 booths
# (bench_path --tls), 203-224 MiB with 64, and throughput up.  httpcore closes a connection idle
# past its 5 s expiry only when the client next starts or ends a request: the clients' pools
# are swept on a timer instead (:func:`close_expired_connections`).
VENDOR_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)

# How often the pools are swept.  After 15 s of 30 booths over TLS (bench_path's fake Gemini)
# 28-29 connections stayed open until the next photo, half-closed (the vendor had hung up):
# sockets in CLOSE_WAIT; with the sweep none are left 10 s later.  Their memory was small: RSS
# once the idle heap was trimmed 102.1 MiB without the sweep, 100.4 MiB with it.
KEEPALIVE_SWEEP_SECONDS = 5.0


def make_client(
    connect_timeout: float = 10.0, read_timeout: float = 120.0, tls: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    """A shared client: pooled keep-alive connections, inner network guards as timeouts.

    ``tls``: the context that verifies the vendor (default: the system's CA bundle).  Proxies
    from the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) apply as in any httpx
    client; every connection pool, direct or through a proxy, runs on :class:`VendorNetwork`.
    """
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = VENDOR_READ_BYTES
    client = httpx.AsyncClient(
        verify=tls or _tls(),
        timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=60.0, pool=None),
        limits=VENDOR_LIMITS,
        follow_redirects=False,
        headers={"User-Agent": "photochangerd"},
    )
    for pool in _pools(client):
        # httpx has no parameter for its pool's network backend, and the pool only uses it
        # when it opens a connection, so it is set on the fresh pool here.
        pool._network_backend = VendorNetwork()
    return client


def _pools(client: httpx.AsyncClient) -> list[httpcore.AsyncConnectionPool]:
    """The httpcore pools under an httpx client: the direct one and each proxy's.

    httpx keeps them in private attributes (``_transport``, ``_mounts``, a transport's
    ``_pool``); tests/test_dependencies.py fails when httpx or httpcore change that shape.
    """
    transports = (client._transport, *client._mounts.values())
    pools = (getattr(transport, "_pool", None) for transport in transports)
    # Proxies' pools are subclasses.
    return [pool for pool in pools if isinstance(pool, httpcore.AsyncConnectionPool)]


async def close_expired_connections(
    clients: Sequence[httpx.AsyncClient], every: float = KEEPALIVE_SWEEP_SECONDS
) -> None:
    """Every ``every`` seconds, close the clients' connections that are idle past their
    keep-alive expiry or that the vendor has closed, and let go of them.

    httpcore does that housekeeping itself only when a request starts or ends; this runs the
    pool's own step (the one that also assigns waiting requests) on a timer, so an idle daemon
    does not keep a busy spell's connections and their buffers.
    """
    while True:
        await trio.sleep(every)
        for client in clients:
            try:
                for pool in _pools(client):
                    with pool._optional_thread_lock:
                        closing = pool._assign_requests_to_connections()
                    await pool._close_connections(closing)
            except Exception:  # housekeeping: never a reason to stop the daemon
                log.warning("vendor_http.sweep_failed", exc_info=True)


async def send(client: httpx.AsyncClient, request: httpx.Request, max_bytes: int) -> VendorResponse:
    """Send ``request`` and read at most ``max_bytes`` of the answer."""
    try:
        response = await client.send(request, stream=True)
    except httpx.TransportError as exc:
        raise VendorUnreachable(type(exc).__name__) from None
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(f"vendor response of {declared} bytes is over the cap")
        # The chunks as received, joined once: a growing bytearray reallocated (and copied)
        # a 2 MB answer several times over, and bytes() copied it once more.
        parts: list[bytes] = []
        size = 0
        try:
            # aclosing: leaving the loop early (the cap) must close httpx's stream generators
            # now, not whenever the garbage collector finds them.
            raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
            async with aclosing(raw) as chunks:
                async for chunk in chunks:
                    parts.append(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResponseTooLarge(f"vendor response over {max_bytes} bytes")
        except httpx.TransportError as exc:
            raise VendorUnreachable(type(exc).__name__) from None
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        del parts
        if response.headers.get("content-encoding"):
            body = httpx.Response(200, headers=response.headers, content=body).content
        return VendorResponse(response.status_code, dict(response.headers), body)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await response.aclose()


def remaining() -> float:
    """Seconds left before the enclosing deadline (``inf`` outside any)."""
    return trio.current_effective_deadline() - trio.current_time()


async def sleep_if_time(seconds: float, reserve: float = 1.0) -> bool:
    """Back off for ``seconds`` if at least ``seconds + reserve`` remain; False if not.

    A retry that cannot finish before the deadline is not worth starting: the caller then
    fails with the last error instead of being cut off by the deadline mid-way.
    """
    if remaining() < seconds + reserve:
        return False
    await trio.sleep(seconds)
    return True


def parse_duration(text: str | None) -> float | None:
    """``"42s"`` / ``"1.5s"`` / ``"7"`` → seconds."""
    if not text:
        return None
    try:
        value = float(str(text).strip().removesuffix("s"))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
