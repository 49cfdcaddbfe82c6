"""The web pages, server-rendered with Quart's Jinja2 (docs/web.md).

- the guest page ``/r/<job_id>`` (no login: the job id is the capability) — :mod:`.guest`;
- the admin console ``/admin/`` (cookie session, CSRF token) — :mod:`.console`;
- their assets under ``/assets/`` (CSS, a little JavaScript, all served by the daemon: venue
  Wi-Fi is often offline from the internet, so no CDN, no web fonts, no build step).

Every page works without JavaScript; scripts only add conveniences (copy buttons, Web Share,
the test-run progress).  :func:`security_headers` puts a strict Content-Security-Policy (no
inline scripts) and framing denial on every HTML answer.
"""

from __future__ import annotations

from quart import Blueprint, Quart, Response, request

assets = Blueprint(
    "web",
    __name__,
    static_folder="static",
    static_url_path="/assets",
    template_folder="templates",
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


async def security_headers(response: Response) -> Response:
    """CSP, no framing, no sniffing on HTML; the console's pages are never cached."""
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith("/admin"):
            response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def register_web(app: Quart) -> None:
    from photochangerd.web import console, guest

    app.register_blueprint(assets)
    app.register_blueprint(guest.bp)
    app.register_blueprint(console.bp)
    app.after_request(security_headers)
