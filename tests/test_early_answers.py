"""Early answers (401/404/413/415 before the body is read) must not leave connections open.

Measured before the fix: 8 uploads of a 3 MB photo with a wrong password all got their 401, but
a server-side socket stayed ESTABLISHED with megabytes unread for minutes, and the next SIGTERM
took 65 s (the drain waited for them).  Hypercorn queues at most ``max_app_queue_size`` body
chunks for the application; an application that answered without reading on left Hypercorn's
reader blocked on that full queue — and Hypercorn's own end-of-response step (which puts
``http.disconnect`` on the same queue) blocked too, so the close never happened.  See
docs/http.md ("Early answers").

Each client here behaves like curl: it sends the body while reading, stops sending once a
final answer has arrived, and closes.  A second kind sends the whole body first and only then
reads (a naive booth), and the third waits for ``100 Continue``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from photochangerd.http.linger import LINGER_SECONDS, LingeringStream
from tests.conftest import make_config, start_daemon
from tests.support.dslr import build_dslr_body
from tests.support.images import make_jpeg

PHOTO_3MB = make_jpeg(2400, 1600, target_bytes=3 * 1024 * 1024)
_TCP_OPEN = {"01", "08"}  # ESTABLISHED, CLOSE_WAIT: states that hold a descriptor


def server_sockets(port: int) -> list[int]:
    """Client ports of the daemon's sockets on ``port`` that still hold a descriptor."""
    peers = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, remote, state = line.split()[1:4]
            if int(local.rsplit(":", 1)[1], 16) == port and state in _TCP_OPEN:
                peers.append(int(remote.rsplit(":", 1)[1], 16))
    return peers


@dataclass(frozen=True)
class Case:
    kind: str  # wrong_password | unknown_slot | too_large_declared | too_large_streamed | not_image
    expect_continue: bool
    keep_alive: bool
    chunked: bool

    @property
    def status(self) -> int:
        return {
            "wrong_password": 401,
            "unknown_slot": 404,
            "too_large_declared": 413,
            "too_large_streamed": 413,
            "not_image": 415,
        }[self.kind]


def _request(case: Case) -> bytes:
    photo = PHOTO_3MB
    if case.kind == "not_image":
        photo = b"%PDF-1.7 not a photo" + PHOTO_3MB
    elif case.kind == "too_large_streamed":
        photo = PHOTO_3MB * 2  # over the 4 MiB limit, noticed while streaming
    password = "wrong-password" if case.kind == "wrong_password" else "123456"
    body, content_type = build_dslr_body(photo, password=password)
    slot = "slot-016" if case.kind == "unknown_slot" else "slot-001"
    head = [
        f"POST /ingest/{slot} HTTP/1.1",
        "Host: booth-server",
        "User-Agent: DSLR Remote Pro",
        f"Content-Type: {content_type}",
        f"Connection: {'keep-alive' if case.keep_alive else 'close'}",
    ]
    if case.expect_continue:
        head.append("Expect: 100-continue")
    if case.kind == "too_large_declared":
        head.append(f"Content-Length: {40 * 1024 * 1024}")
    elif case.chunked or case.kind == "too_large_streamed":
        head.append("Transfer-Encoding: chunked")
        framed = bytearray()
        for start in range(0, len(body), 65536):
            piece = body[start : start + 65536]
            framed += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        body = bytes(framed + b"0\r\n\r\n")
    else:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _curl_like(port: int, case: Case, naive: bool) -> int:
    """Send while reading; stop sending at the final answer (``naive``: send it all first)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    cases_by_port[stream.socket.getsockname()[1]] = case
    wire = _request(case)
    head_end = wire.index(b"\r\n\r\n") + 4
    received = bytearray()
    answered = trio.Event()

    def final_status() -> int | None:
        text = bytes(received)
        while text.startswith(b"HTTP/1.1 100"):
            text = text[text.index(b"\r\n\r\n") + 4 :] if b"\r\n\r\n" in text else b""
        if b"\r\n\r\n" in text and text.startswith(b"HTTP/1.1 "):
            return int(text[9:12])
        return None

    async def reader() -> None:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not chunk:
                break
            received.extend(chunk)
            if final_status() is not None and b'"failure_reason"' in received:
                answered.set()
                break
        answered.set()

    async def sender() -> None:
        await stream.send_all(wire[:head_end])
        if case.expect_continue:
            with trio.move_on_after(1.0):  # curl's default wait for 100 Continue
                while not received.startswith(b"HTTP/1.1 100") and not answered.is_set():
                    await trio.sleep(0.005)
            if answered.is_set():
                return
        for start in range(head_end, len(wire), 65536):
            if answered.is_set() and not naive:
                return
            try:
                await stream.send_all(wire[start : start + 65536])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await sender()
            await answered.wait()
            nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)
    status = final_status()
    assert status is not None, bytes(received[:200])
    return status


cases_by_port: dict[int, Case] = {}  # client port -> case, to name what a failure left open
CASES = [
    Case(kind, expect, keep_alive, chunked)
    for kind, expect, keep_alive, chunked in itertools.product(
        ("wrong_password", "unknown_slot", "too_large_declared", "too_large_streamed", "not_image"),
        (True, False),
        (True, False),
        (False, True),
    )
    if not (kind == "too_large_declared" and chunked)
]


async def test_fifty_early_answers_leave_no_connection_and_shutdown_is_fast(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, max_upload_mb=4)
    statuses: list[tuple[Case, int]] = []
    async with trio.open_nursery() as outer:
        daemon = await start_daemon(outer, config)
        port = daemon.port
        rounds = list(itertools.islice(itertools.cycle(CASES), 50))
        limiter = trio.CapacityLimiter(8)

        async def one(number: int, case: Case) -> None:
            async with limiter:
                statuses.append((case, await _curl_like(port, case, naive=number % 3 == 0)))

        async with trio.open_nursery() as clients:
            for number, case in enumerate(rounds):
                clients.start_soon(one, number, case)

        wrong = [(case, status) for case, status in statuses if status != case.status]
        assert not wrong, wrong[:5]
        # Every client has closed its end: the daemon's ends must be gone within 2 s.
        with trio.move_on_after(2.0):
            while server_sockets(port):
                await trio.sleep(0.05)
        left = [cases_by_port.get(peer) for peer in server_sockets(port)]
        assert not left, f"the daemon kept connections open: {left}"

        started = trio.current_time()
        daemon.daemon.shutdown.set()
    stopped_after = trio.current_time() - started
    assert stopped_after < 2.0, stopped_after


class _Flag:
    def __init__(self, linger: bool) -> None:
        self.linger = linger


async def test_lingering_close_half_closes_reads_on_and_gives_up(autojump_clock: object) -> None:
    """The rules of http/linger.py on Trio's mock clock (socketpair, no daemon)."""
    ours, theirs = (trio.SocketStream(s) for s in trio.socket.socketpair())
    stream = LingeringStream(ours, _Flag(linger=True))
    await stream.send_all(b"HTTP/1.1 401 ...")
    await stream.aclose()  # half-close: our FIN follows the answer, the descriptor stays
    assert await theirs.receive_some(100) == b"HTTP/1.1 401 ..."
    assert await theirs.receive_some(100) == b""
    await theirs.send_all(b"rest of the photo")
    assert await stream.receive_some(100) == b"rest of the photo"  # read and dropped upstream
    started = trio.current_time()
    assert await stream.receive_some(100) == b""  # the client never closes: give up
    assert trio.current_time() - started == pytest.approx(LINGER_SECONDS)
    await trio.aclose_forcefully(ours)
    await theirs.aclose()


async def test_eof_from_the_client_closes_at_once() -> None:
    ours, theirs = (trio.SocketStream(s) for s in trio.socket.socketpair())
    stream = LingeringStream(ours, _Flag(linger=False))
    await theirs.aclose()
    assert await stream.receive_some(100) == b""
    assert ours.socket.fileno() == -1  # closed: no CLOSE_WAIT until a keep-alive timer fires
