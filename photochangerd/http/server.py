"""Hypercorn's Trio worker, with the accept loop owned here.

Hypercorn hands its listeners to ``trio.serve_listeners``, which accepts one connection per
pass of the scheduler.  When 30 booths upload at once, the last connection then waits behind
every other task's step for each earlier accept — measured: the last request head was read
~100 ms after its client connected, and its 504 left that much after the booth's deadline.
Here every pending connection is accepted in one step (up to :data:`ACCEPT_BATCH`), and each
connection carries the moment it was noticed, so the deadline of its first request starts
there (:func:`photochangerd.http.asgi.request_arrival`).

Everything past the accept — the HTTP/1.1 protocol, keep-alive, graceful shutdown, lifespan —
is Hypercorn's own ``TCPServer``, ``Lifespan`` and ``WorkerContext``, wired as its
``worker_serve`` wires them (Hypercorn 0.18).  Plain TCP only: TLS belongs to the reverse proxy
in front (README).  ALPN offers HTTP/1.1 only, which governs TLS; cleartext HTTP/2 is another
matter (docs/stack-traps.md, "HTTP/2 and h2c").
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

from photochangerd.http.linger import LingeringStream

log = logging.getLogger("photochangerd.http")

ACCEPT_BATCH = 256
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# A connection that died between the handshake and accept() (reset, firewall, network gone):
# skip it and go on, as trio's SocketListener does.
_SKIPPED_ERRNOS = {
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
}
_CAPACITY_PAUSE = 0.1
CONNECTION_KEY = "photochanger.connection"


@dataclass(slots=True)
class ConnectionInfo:
    """Per connection, shared by its requests (ASGI ``state`` is copied shallowly)."""

    accepted_at: float  # Trio clock: when the pending connection was noticed
    requests: int = 0
    linger: bool = False  # answered before its request body was read (http/linger.py)


async def _run_connection(server: TCPServer, stream: trio.SocketStream) -> None:
    try:
        await server
    finally:
        await trio.aclose_forcefully(stream)


async def _accept_loop(
    sock: socket.socket,
    make_server: Callable[[ConnectionState, Any], TCPServer],
    lifespan_state: LifespanState,
    connections: trio.Nursery,
) -> None:
    listener = trio.socket.from_stdlib_socket(sock)  # non-blocking from here on
    try:
        while True:
            await trio.lowlevel.wait_readable(sock)
            noticed = trio.current_time()
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, _address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno in _SKIPPED_ERRNOS:
                        continue
                    if exc.errno not in _CAPACITY_ERRNOS:
                        raise
                    # Out of descriptors or memory: say so, let connections finish, retry.
                    log.error("accept failed (%s); pausing", errno.errorcode[exc.errno])
                    await trio.sleep(_CAPACITY_PAUSE)
                    break
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                info = ConnectionInfo(noticed)
                state = ConnectionState({**lifespan_state, CONNECTION_KEY: info})
                server = make_server(state, LingeringStream(stream, info))
                connections.start_soon(_run_connection, server, stream)
            await trio.lowlevel.checkpoint()
    finally:
        listener.close()  # new connections are refused while the others drain


async def serve(
    app: Any,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    sockets: Sockets | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then drain for ``graceful_timeout``.

    ``sockets``: already bound (:mod:`photochangerd.http.listen`); None binds ``config.bind``.
    """
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            if sockets is None:
                sockets = config.create_sockets()
            if sockets.secure_sockets or sockets.quic_sockets:
                raise ValueError("TLS is not served here: terminate it at the reverse proxy")
            binds = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
                await config.log.info(f"Running on {binds[-1]} (CTRL + C to quit)")
            task_status.started(binds)
            make_server = partial(TCPServer, wrapped, config, context)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    for sock in sockets.insecure_sockets:
                        nursery.start_soon(
                            _accept_loop, sock, make_server, lifespan_state, connections
                        )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, others = error.split((ShutdownError, KeyboardInterrupt))
                if others is not None:
                    raise others from None
            finally:
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
