"""How much of a request body Quart may buffer, and for how long, route by route.

quart-trio reads every request body in the background into an in-memory buffer, as fast as the
client sends it, whether or not the handler reads it; the app-wide cap (``MAX_CONTENT_LENGTH``)
must admit a whole photo, and ``BODY_TIMEOUT`` is off because the upload routes bound their own
reads (docs/stack-traps.md, "Request bodies Quart buffers").  Left at that, any client could
send ~21 MB to ``POST /api/login`` and stop: the buffer stayed, and the connection, for good.

Three kinds of route:

* the uploads stream their body through their own reader, with its limits and deadline: the
  booth's ingest, the test runs, the template uploads and the images an admin registers for a
  provider (:data:`STREAMED_BODY`) — Quart's cap stays a backstop;
* the sign-in forms, the only routes that read a body from someone not signed in, take a name
  and a password: :data:`SIGN_IN_BODY_BYTES` and :data:`SIGN_IN_SECONDS`;
* every other route answers 401 before its body matters to anyone not signed in, and some take
  large documents (a slot's ComfyUI workflow may be 2 MB, a prompt 32 000 characters, the
  console's fallback chain 8 MB): Quart's cap, and :data:`DOCUMENT_SECONDS` to send it.

A larger body is answered 413 at once, one that stops coming 408, and the connection closes
(``asgi.py``).
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
SIGN_IN = re.compile(r"/(?:api|admin)/login")
SIGN_IN_BODY_BYTES = 64 * 1024  # a name and a password, as JSON or a form
SIGN_IN_SECONDS = 10
DOCUMENT_SECONDS = 60  # a slot document of a few MB over a slow uplink


class BoundedRequest(TrioRequest):
    """quart-trio's request with the body bounds of its route, and a JSON body that does not
    parse answered with where it breaks."""

    def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
        if SIGN_IN.fullmatch(path) is not None:
            kwargs["max_content_length"] = SIGN_IN_BODY_BYTES
            kwargs["body_timeout"] = SIGN_IN_SECONDS
        elif STREAMED_BODY.fullmatch(path) is None:
            kwargs["body_timeout"] = DOCUMENT_SECONDS
        super().__init__(method, scheme, path, *args, **kwargs)

    def on_json_loading_failed(self, error: Exception) -> Any:
        # Quart answers a bare "Bad Request" outside debug mode; the parser's message names the
        # line and column, and says nothing of the body's content.
        raise InvalidRequest(f"the body is not valid JSON: {error}")
