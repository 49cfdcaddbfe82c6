"""The daemon's own accept loop (photochangerd/http/server.py): batching, and errors that must
not take the server down."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import pytest
import trio

from photochangerd.http.server import CONNECTION_KEY, ConnectionInfo, _accept_loop


def _inject_accept_errors(
    monkeypatch: pytest.MonkeyPatch, listener: socket.socket, errors: list[int]
) -> None:
    """Make ``listener.accept()`` first fail as the kernel sometimes does."""
    real = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        if self.fileno() == listener.fileno() and errors:
            code = errors.pop(0)
            raise OSError(code, errno.errorcode[code])
        return real(self)

    monkeypatch.setattr(socket.socket, "accept", accept)


async def test_accept_errors_are_skipped_or_paused_never_fatal(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = socket.socket()
    errors = [errno.ECONNABORTED, errno.EMFILE]
    _inject_accept_errors(monkeypatch, listener, errors)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    served: list[dict[str, Any]] = []
    done = trio.Event()

    async def handle(state: dict[str, Any], stream: trio.SocketStream) -> None:
        served.append(state)
        await stream.send_all(b"hello")
        done.set()

    def make_server(state: dict[str, Any], stream: trio.SocketStream) -> Any:
        return handle(state, stream)

    with caplog.at_level(logging.ERROR, logger="photochangerd.http"):
        nursery.start_soon(_accept_loop, listener, make_server, {"lifespan": 1}, nursery)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        async with client:
            with trio.fail_after(5):
                await done.wait()
                assert await client.receive_some(5) == b"hello"
    assert errors == []  # both injected failures happened
    assert "accept failed (EMFILE)" in caplog.text
    [state] = served
    assert state["lifespan"] == 1 and isinstance(state[CONNECTION_KEY], ConnectionInfo)


async def test_pending_connections_are_accepted_in_one_step(nursery: trio.Nursery) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    accepted: list[float] = []

    async def handle(state: dict[str, Any], stream: trio.SocketStream) -> None:
        accepted.append(state[CONNECTION_KEY].accepted_at)

    try:
        nursery.start_soon(_accept_loop, listener, lambda s, st: handle(s, st), {}, nursery)
        with trio.fail_after(5):
            while len(accepted) < 20:
                await trio.sleep(0.01)
        assert len(set(accepted)) == 1  # one wake-up, one step, all twenty
    finally:
        for client in clients:
            client.close()
