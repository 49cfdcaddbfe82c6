"""The pinned dependency set, and the Hypercorn internals the HTTP layer is built on.

``requirements/deploy.txt`` (runtime) and ``requirements/test.txt`` (the same pins plus the test
tools) are made by ``bash requirements/lock.sh`` from pyproject.toml; tests/run.sh installs
``test.txt``, a deployment ``deploy.txt`` (README, "Install under /opt").  These tests fail when
pyproject.toml and the lock disagree (a dependency added without refreshing the lock), when the
two files pin different runtime versions, or when the environment under test is not the pinned
one.

``photochangerd/http/server.py`` wires Hypercorn's own ``TCPServer``, ``Lifespan`` and
``WorkerContext`` as Hypercorn's ``worker_serve`` does, and ``http/linger.py`` and ``http/asgi.py``
lean on how its HTTP/1.1 protocol reads, closes and stamps requests (docs/http.md).  Those are
private pieces: pyproject.toml pins Hypercorn's minor version, and the checks below name the
piece that changed shape when a new version is tried.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
REFRESH = "refresh the lock: bash requirements/lock.sh (README, 'Install under /opt')"


def _pins(name: str) -> dict[str, tuple[Version, Marker | None, int]]:
    """``requirements/<name>``: {package: (version, marker, number of hashes)}."""
    text = (REPO / "requirements" / name).read_text(encoding="utf-8")
    pins: dict[str, tuple[Version, Marker | None, int]] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        hashes = entry.count("--hash=sha256:")
        requirement = Requirement(entry.split(" --hash", 1)[0].strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{name}: {requirement} is not pinned with =="
        pins[canonicalize_name(requirement.name)] = (
            Version(specifier.version),
            requirement.marker,
            hashes,
        )
    return pins


def _project() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        "runtime": [Requirement(r) for r in project["dependencies"]],
        "test": [Requirement(r) for r in project["optional-dependencies"]["test"]],
    }


def test_every_dependency_is_pinned_within_what_pyproject_allows() -> None:
    deploy, test = _pins("deploy.txt"), _pins("test.txt")
    requirements = _project()
    for kind, pins in (("runtime", deploy), ("test", test)):
        for requirement in requirements[kind]:
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} ({kind}) is not in the lock: {REFRESH}"
            assert requirement.specifier.contains(pins[name][0], prereleases=True), (
                f"the lock pins {name}=={pins[name][0]}, pyproject.toml wants {requirement}: "
                + REFRESH
            )
    for name, (version, _marker, hashes) in deploy.items():
        # What is tested is what is deployed: the test set carries the very same runtime pins.
        assert name in test and test[name][0] == version, (
            f"{name}: deploy.txt pins {version}, test.txt "
            f"{test[name][0] if name in test else 'nothing'}: {REFRESH}"
        )
        assert hashes >= 1, f"deploy.txt: {name} has no --hash (pip --require-hashes needs one)"
    assert all(hashes >= 1 for _version, _marker, hashes in test.values())


def test_the_environment_under_test_is_the_pinned_one() -> None:
    """tests/run.sh installs requirements/test.txt: a test run on other versions says so."""
    drift = []
    for name, (version, marker, _hashes) in _pins("test.txt").items():
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            drift.append(f"{name} (pinned {version}) is not installed")
            continue
        if installed != version:
            drift.append(f"{name} {installed} is installed, the lock pins {version}")
    assert not drift, (
        "this environment is not the pinned set (bash tests/run.sh installs it): "
        + "; ".join(drift)
    )


def test_hypercorn_is_pinned_to_the_minor_version_the_http_layer_was_built_on() -> None:
    (hypercorn,) = [r for r in _project()["runtime"] if r.name.lower() == "hypercorn"]
    assert str(hypercorn.specifier) in ("<0.19,>=0.18", ">=0.18,<0.19"), hypercorn
    installed = Version(importlib.metadata.version("hypercorn"))
    assert (installed.major, installed.minor) == (0, 18), (
        f"Hypercorn {installed} is installed; photochangerd/http/server.py and linger.py were "
        "written against 0.18's internals (docs/http.md)"
    )


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _source(obj: Any) -> str:
    return inspect.getsource(obj)


# The Hypercorn names photochangerd/http imports (server.py, listen.py, app.py) or leans on.
HYPERCORN_NAMES = {
    "Config": "hypercorn.config",
    "Sockets": "hypercorn.config",
    "H11Protocol": "hypercorn.protocol.h11",
    "HTTPStream": "hypercorn.protocol.http_stream",
    "Lifespan": "hypercorn.trio.lifespan",
    "StatsdLogger": "hypercorn.trio.statsd",
    "TCPServer": "hypercorn.trio.tcp_server",
    "WorkerContext": "hypercorn.trio.worker_context",
    "ShutdownError": "hypercorn.utils",
    "raise_shutdown": "hypercorn.utils",
    "repr_socket_addr": "hypercorn.utils",
    "wrap_app": "hypercorn.utils",
}


def _hypercorn() -> dict[str, Any]:
    return {
        name: getattr(importlib.import_module(module), name)
        for name, module in HYPERCORN_NAMES.items()
    }


CONFIG_SETTINGS = (
    "bind",
    "keep_alive_timeout",
    "graceful_timeout",
    "alpn_protocols",
    "include_server_header",
    "accesslog",
    "errorlog",
    "h11_max_incomplete_size",
    "wsgi_max_body_size",
    "backlog",
    "log",
    "max_app_queue_size",
    "set_statsd_logger_class",
    "create_sockets",
)

# What photochangerd relies on → a check of it against the installed Hypercorn (``h``).
PIECES: dict[str, Callable[[Any], bool]] = {
    "TCPServer(app, config, context, state, stream), awaited to serve one connection": lambda h: (
        _params(h["TCPServer"].__init__) == ["self", "app", "config", "context", "state", "stream"]
        and hasattr(h["TCPServer"], "__await__")
    ),
    "TCPServer takes a stream without do_handshake() as plain TCP and reads stream.socket "
    "(LingeringStream)": lambda h: (
        "do_handshake" in _source(h["TCPServer"].run)
        and "self.stream.socket" in _source(h["TCPServer"].run)
    ),
    "TCPServer closes through stream.aclose() (where the lingering close starts)": lambda h: (
        "aclose" in _source(h["TCPServer"])
    ),
    "Lifespan(app, config, state) with handle_lifespan, wait_for_startup, wait_for_shutdown": (
        lambda h: (
            _params(h["Lifespan"].__init__) == ["self", "app", "config", "state"]
            and all(
                inspect.iscoroutinefunction(getattr(h["Lifespan"], name, None))
                for name in ("handle_lifespan", "wait_for_startup", "wait_for_shutdown")
            )
        )
    ),
    "WorkerContext(max_requests) with terminate.wait() and terminated.set()": lambda h: (
        _params(h["WorkerContext"].__init__) == ["self", "max_requests"]
        and inspect.iscoroutinefunction(h["WorkerContext"](None).terminate.wait)
        and inspect.iscoroutinefunction(h["WorkerContext"](None).terminated.set)
    ),
    "wrap_app(app, wsgi_max_body_size, mode), raise_shutdown, ShutdownError, repr_socket_addr": (
        lambda h: (
            _params(h["wrap_app"]) == ["app", "wsgi_max_body_size", "mode"]
            and inspect.iscoroutinefunction(h["raise_shutdown"])
            and issubclass(h["ShutdownError"], Exception)
            and callable(h["repr_socket_addr"])
        )
    ),
    "Config: the settings app.py and server.py set or read; StatsdLogger": lambda h: (
        all(hasattr(h["Config"](), name) for name in CONFIG_SETTINGS)
        and callable(h["StatsdLogger"])
    ),
    "Sockets(secure_sockets, insecure_sockets, quic_sockets)": lambda h: (
        _params(h["Sockets"]) == ["secure_sockets", "insecure_sockets", "quic_sockets"]
    ),
    "HTTPStream stamps start_time = time() as it parses a request head, and hands the app its "
    "bound app_send (asgi.request_arrival)": lambda h: (
        "self.start_time = time()" in _source(h["HTTPStream"].handle)
        and inspect.iscoroutinefunction(getattr(h["HTTPStream"], "app_send", None))
    ),
    "H11Protocol._maybe_recycle keeps a connection only when both sides are DONE and closes it "
    "otherwise (early answers: Connection: close, then the lingering close)": lambda h: (
        inspect.iscoroutinefunction(getattr(h["H11Protocol"], "_maybe_recycle", None))
        and "their_state is h11.DONE" in _source(h["H11Protocol"]._maybe_recycle)
        and "Closed()" in _source(h["H11Protocol"]._maybe_recycle)
    ),
}


@pytest.mark.parametrize("what", list(PIECES))
def test_hypercorn_private_pieces_still_have_the_shape_we_use(what: str) -> None:
    version = importlib.metadata.version("hypercorn")
    try:
        present = PIECES[what](_hypercorn())
    except (ImportError, AttributeError, TypeError, ValueError, OSError) as exc:
        present, what = False, f"{what} ({type(exc).__name__}: {exc})"
    assert present, (
        f"Hypercorn {version} changed what photochangerd/http relies on: {what}. Re-read "
        "docs/http.md, adapt photochangerd/http/server.py, linger.py or asgi.py, run "
        "tests/test_connections.py and tests/test_early_answers.py, then move the pin in "
        "pyproject.toml"
    )


def test_httpcore_still_reads_http11_answers_in_pieces_of_read_num_bytes() -> None:
    """providers/vendor_http.py widens ``AsyncHTTP11Connection.READ_NUM_BYTES`` (1-1.5 ms per
    Gemini answer); a release that no longer reads with it would quietly lose that."""
    import httpcore

    connection = httpcore.AsyncHTTP11Connection
    version = importlib.metadata.version("httpcore")
    reads = getattr(connection, "_receive_event", None)
    assert (
        isinstance(getattr(connection, "READ_NUM_BYTES", None), int)
        and reads is not None
        and "self.READ_NUM_BYTES" in _source(reads)
    ), (
        f"httpcore {version} no longer reads HTTP/1.1 answers in READ_NUM_BYTES pieces: find "
        "its read size again and set it in photochangerd/providers/vendor_http.py"
    )


def test_httpx_and_httpcore_still_have_the_pools_we_put_on_our_network() -> None:
    """providers/vendor_http.py sets the network backend of every httpcore pool of a vendor
    client (direct and proxies': TLS reads that drain, vendor_network.py); httpx has no
    parameter for it.  A release that renames these pieces would quietly drop ours."""
    import httpcore
    import httpx

    versions = f"httpx {importlib.metadata.version('httpx')}, httpcore " + (
        importlib.metadata.version("httpcore")
    )
    client = httpx.AsyncClient()
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    assert (
        isinstance(getattr(client, "_mounts", None), dict)
        and isinstance(pool, httpcore.AsyncConnectionPool)
        and hasattr(pool, "_network_backend")
        and "self._network_backend" in _source(httpcore.AsyncConnectionPool.__init__)
        and "network_backend=self._network_backend"
        in _source(httpcore.AsyncConnectionPool.create_connection)
        and issubclass(httpcore.AsyncHTTPProxy, httpcore.AsyncConnectionPool)
    ), (
        f"{versions}: the client's transports, their _pool or its _network_backend changed "
        "shape; find how to give the pools a network backend and change _pools "
        "in photochangerd/providers/vendor_http.py"
    )


def test_httpcore_still_tidies_its_pool_in_the_step_our_sweep_runs() -> None:
    """providers/vendor_http.py's close_expired_connections runs the pool's own housekeeping
    step on a timer (httpcore runs it only when a request starts or ends): the lock it takes,
    the step that drops expired connections and returns them, and the one that closes them."""
    import httpcore

    version = importlib.metadata.version("httpcore")
    pool = httpcore.AsyncConnectionPool()
    step = _source(httpcore.AsyncConnectionPool._assign_requests_to_connections)
    release = _source(httpcore.AsyncConnectionPool.handle_async_request)
    assert (
        hasattr(pool, "_optional_thread_lock")
        and "connection.has_expired()" in step
        and "closing_connections.append(connection)" in step
        and "return closing_connections" in step
        and "await self._close_connections(closing)" in release
    ), (
        f"httpcore {version}: the pool's housekeeping step changed shape; find how to close "
        "idle expired connections and change close_expired_connections in "
        "photochangerd/providers/vendor_http.py"
    )
