"""SQLAlchemy's asyncio engine without the ORM it does not need.

``import sqlalchemy.ext.asyncio`` runs that package's ``__init__``, which imports
``AsyncSession`` and with it SQLAlchemy's whole ORM: 5.6 MB of resident memory in a daemon that
uses Core only (measured: a PostgreSQL daemon idle at 92.3 MiB against SQLite's 81.5, with the
performance bar at 90).  The engine itself (``sqlalchemy/ext/asyncio/engine.py``) needs only
its sibling modules and SQLAlchemy's Core.

:func:`create_async_engine` therefore registers the package module unexecuted — its
``__path__`` lets its submodules load — and imports ``engine`` from it.  Code that imports the
package by name sees no difference: the first attribute anyone reads from it that it does not
hold yet (``from sqlalchemy.ext.asyncio import AsyncSession``, or ``dir()``) runs the real
``__init__`` in place, under a lock, and answers from it.  If the package was imported
before, it is used as it is.
Test: ``tests/test_footprint.py::test_the_postgresql_stack_leaves_the_orm_out``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

PACKAGE = "sqlalchemy.ext.asyncio"


_LOCK = threading.RLock()


def _engine_module() -> ModuleType:
    with _LOCK:
        if PACKAGE not in sys.modules:
            _register_unexecuted()
    # What the real __init__ does last (SQLAlchemy 2.1): greenlet is checked now, not at the
    # first query.  Earlier versions check it when sqlalchemy.util.concurrency is imported.
    from sqlalchemy.util import concurrency

    shim = getattr(concurrency, "_concurrency_shim", None)
    if shim is not None:
        shim._initialize()
    return importlib.import_module(f"{PACKAGE}.engine")


def _register_unexecuted() -> None:
    import sqlalchemy.ext  # the parent package, executed as usual

    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
    loader = spec.loader

    def complete(name: str) -> Any:
        # PEP 562: called only for names the module does not have (yet).  A submodule
        # (``from . import exc`` in engine.py asks this way first) is imported as such.
        with _LOCK:
            if package.__dict__.get("__getattr__") is complete:
                if importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
                    return importlib.import_module(f"{PACKAGE}.{name}")
                loader.exec_module(package)  # raises: the hooks stay, a later use retries
                for hook in ("__getattr__", "__dir__"):
                    if package.__dict__.get(hook) in (complete, listing):
                        del package.__dict__[hook]
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    def listing() -> list[str]:
        complete("__name__")
        return sorted(package.__dict__)

    package.__dict__.update({"__getattr__": complete, "__dir__": listing})
    sys.modules[PACKAGE] = package
    sqlalchemy.ext.asyncio = package


def create_async_engine(url: Any, **kwargs: Any) -> AsyncEngine:
    """``sqlalchemy.ext.asyncio.create_async_engine``, loaded without the ORM."""
    engine: AsyncEngine = _engine_module().create_async_engine(url, **kwargs)
    return engine
