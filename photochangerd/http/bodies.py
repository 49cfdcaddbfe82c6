"""How much of a request body Quart may buffer, and for how long, route by route.

quart-trio reads every request body in the background into an in-memory buffer, as fast as the
client sends it, whether or not the handler reads it; the app-wide cap (``MAX_CONTENT_LENGTH``)
must admit a whole photo, and ``BODY_TIMEOUT`` is off because the upload routes bound their own
reads (docs/stack-traps.md, "Request bodies Quart buffers").  Left at that, any client could
send ~21 MB to ``POST /api/login`` and stop: the buffer stayed, and the connection, for good.

The routes that take a file stream it through their own reader, with its limits and deadline:
the booth's ingest, the test runs, the template uploads and the images an admin registers for a
provider (:data:`STREAMED_BODY`).  Every
other route takes a JSON document or a form of a few hundred bytes: its request gets
:data:`SMALL_BODY_BYTES` and :data:`SMALL_BODY_SECONDS`, so a larger body is answered 413 and a
client that stops sending is answered 408 — then the connection closes (``asgi.py``).
"""

from __future__ import annotations

import re
from typing import Any

from quart_trio.wrappers import TrioRequest

from photochangerd.http.errors import InvalidRequest

# tests/test_hostile_input.py lists every route that takes a body: a new one must be placed here
# or not, on purpose.
STREAMED_BODY = re.compile(
    r"/(?:api/)?ingest/[^/]+"
    r"|/(?:api|admin)/slots/[^/]+/test-run"
    r"|/admin/slots/[^/]+/templates"
    r"|/api/template-media(?:/register)?"
    r"|/api/media/register"
)
SMALL_BODY_BYTES = 64 * 1024  # the largest slot settings document is a few KB
SMALL_BODY_SECONDS = 10


class BoundedRequest(TrioRequest):
    """quart-trio's request with the small body bounds on every route that does not stream,
    and a JSON body that does not parse answered with where it breaks."""

    def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
        if STREAMED_BODY.fullmatch(path) is None:
            kwargs["max_content_length"] = SMALL_BODY_BYTES
            kwargs["body_timeout"] = SMALL_BODY_SECONDS
        super().__init__(method, scheme, path, *args, **kwargs)

    def on_json_loading_failed(self, error: Exception) -> Any:
        # Quart answers a bare "Bad Request" outside debug mode; the parser's message names the
        # line and column, and says nothing of the body's content.
        raise InvalidRequest(f"the body is not valid JSON: {error}")
