"""``GET /api/docs``: Swagger UI for ``/api/openapi.json``, served entirely by the daemon.

Booths run at events without internet access, so the page loads no CDN: its script and style
come from the ``swagger-ui-bundle-v2`` package and are served under ``/api/docs/``.  The page
starts Swagger UI from a script file of ours (``init.js``), not an inline one: the daemon's
Content-Security-Policy (``script-src 'self'``) blocks inline scripts, and the page was blank."""

from __future__ import annotations

from pathlib import Path

import trio
from quart import Blueprint, Response, render_template_string, url_for
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path

from photochangerd import __version__
from photochangerd.http.errors import NotFound
from photochangerd.http.files import send_file_ranged

bp = Blueprint("docs", __name__)

# What the page needs of the bundle (nothing else in it is served: no source maps, no index).
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>PhotoChanger API {{ version }}</title>
  <link rel="icon" type="image/png" href="{{ assets['favicon-32x32.png'] }}">
  <link rel="stylesheet" href="{{ assets['swagger-ui.css'] }}">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{{ openapi_url }}"></div>
  <script src="{{ assets['swagger-ui-bundle.js'] }}"></script>
  <script src="{{ init_url }}"></script>
</body>
</html>
"""

_INIT = b"""window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapiUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""


@bp.get("/api/docs")
@hide
async def page() -> Response:
    html = await render_template_string(
        _PAGE,
        version=__version__,
        openapi_url=url_for("openapi"),
        assets={name: url_for("docs.asset", filename=name) for name in ASSETS},
        init_url=url_for("docs.init"),
    )
    return Response(html, mimetype="text/html")


@bp.get("/api/docs/init.js")
@hide
async def init() -> Response:
    response = Response(_INIT, mimetype="text/javascript")
    response.cache_control.max_age = 3600
    return response


@bp.get("/api/docs/<filename>")
@hide
async def asset(filename: str) -> Response:
    mimetype = ASSETS.get(filename)
    if mimetype is None:
        raise NotFound("no such file")
    path = Path(swagger_ui_path, filename)
    if not await trio.to_thread.run_sync(path.is_file):
        raise NotFound("no such file")
    return await send_file_ranged(path, mimetype, cache_timeout=24 * 3600)
