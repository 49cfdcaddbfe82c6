"""The admin API over HTTP (a synchronous httpx client; a CLI does one thing at a time).

Every answer is parsed with the wire models of :mod:`shared.api_models`; every failure becomes
one of :mod:`pcctl.errors` here, so commands never see an httpx exception or a raw status.
The token goes in an ``Authorization`` header on ``/api`` requests only: public result
downloads are made without it.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from pcctl import __version__
from pcctl.errors import (
    ApiFailure,
    AuthFailure,
    Conflict,
    Invalid,
    NotFound,
    NotLoggedIn,
    PcctlError,
    Unreachable,
)
from shared.api_models import (
    Accepted,
    CleanupResult,
    JobList,
    JobOut,
    SettingsOut,
    SettingsUpdate,
    SlotDetail,
    SlotList,
    SlotStatsList,
    SlotUpdate,
    Stats,
    TemplateMedia,
    TemplateMediaList,
    TestRunResult,
    TokenResponse,
)

M = TypeVar("M", bound=BaseModel)
Progress = Callable[[int], None]  # called with the number of bytes just sent/received

CHUNK = 64 * 1024
# A test run waits for the whole pipeline: at most T_sync_response (≤ 60 s) plus the upload.
TEST_RUN_TIMEOUT = httpx.Timeout(10.0, read=120.0, write=60.0)
DEFAULT_TIMEOUT = httpx.Timeout(15.0, write=60.0)
LOGIN_HINT = "run `pcctl login`"
UNREACHABLE_HINT = "is photochangerd running? check --server or $PCCTL_SERVER"
HEALTH_PATH = "/healthz"  # answers without a token: "is anybody there?"


class ApiClient:
    """One server, optionally one token.  Use as a context manager (closes the connection)."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self._http = httpx.Client(
            base_url=self.server,
            timeout=DEFAULT_TIMEOUT,
            headers={"User-Agent": f"pcctl/{__version__}"},
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        if not self.token:
            # An unreachable server is the first thing to report, whatever the command:
            # "not logged in" would send people to `pcctl login`, which cannot work either.
            self._request("HEAD", HEALTH_PATH)
            raise NotLoggedIn(f"not logged in to {self.server}", hint=LOGIN_HINT)
        return {"Authorization": f"Bearer {self.token}"}

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange, any status; no answer at all raises :class:`Unreachable`."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise Unreachable(
                f"{self.server} did not answer in time ({type(exc).__name__})",
                hint="is photochangerd overloaded or the network down?",
            ) from exc
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach {self.server}: {exc or type(exc).__name__}",
                hint=UNREACHABLE_HINT,
            ) from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        subject: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request; a non-2xx answer raises (404 messages name ``subject``)."""
        all_headers = {**(self._auth_headers() if auth else {}), **(headers or {})}
        response = self._request(
            method, path, headers=all_headers, timeout=timeout or DEFAULT_TIMEOUT, **kwargs
        )
        if response.is_success:
            return response
        raise self._failure(response, auth=auth, subject=subject)

    def _failure(self, response: httpx.Response, *, auth: bool, subject: str | None) -> ApiFailure:
        status = response.status_code
        reason: str | None = None
        details: str | None = None
        errors: dict[str, str] = {}
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            reason = (
                body.get("failure_reason") if isinstance(body.get("failure_reason"), str) else None
            )
            details = body.get("details") if isinstance(body.get("details"), str) else None
            raw_errors = body.get("errors")
            if isinstance(raw_errors, dict):
                errors = {str(k): str(v) for k, v in raw_errors.items()}
        label = f"{status} {reason or response.reason_phrase}"
        if status == 401:
            if auth:
                return AuthFailure(
                    f"your session expired, run `pcctl login` ({details or reason})",
                    status=status,
                    reason=reason,
                    details=details,
                )
            return AuthFailure(
                details or "wrong username or password", status=status, reason=reason
            )
        if status == 404:
            text = details or reason or "not found"
            return NotFound(f"{subject}: {text}" if subject else text, status=status, reason=reason)
        if status == 409:
            return Conflict(details or "conflict", status=status, reason=reason, details=details)
        if status == 422:
            return Invalid(
                "the server rejected the values",
                status=status,
                reason=reason,
                details=details,
                errors=errors or ({"": details} if details else {}),
            )
        hint = None
        if status == 429 and "Retry-After" in response.headers:
            hint = f"try again in {response.headers['Retry-After']} s"
        return ApiFailure(
            f"{details or 'request failed'} ({label})",
            status=status,
            reason=reason,
            details=details,
            hint=hint,
        )

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise PcctlError(
                f"unexpected answer from {self.server} (not a {model.__name__}): "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
                hint="is pcctl the same version as the server?",
            ) from exc

    def _get(self, model: type[M], path: str, subject: str | None = None, **params: Any) -> M:
        query = {k: v for k, v in params.items() if v is not None}
        return self._parse(model, self._send("GET", path, params=query, subject=subject))

    # -- auth -------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> TokenResponse:
        response = self._send(
            "POST", "/api/login", auth=False, json={"username": username, "password": password}
        )
        return self._parse(TokenResponse, response)

    def logout(self) -> None:
        """Sign the token out on the server (every instance refuses it from now on)."""
        self._send("POST", "/api/logout")

    # -- slots ------------------------------------------------------------------------------
    def list_slots(self) -> SlotList:
        return self._get(SlotList, "/api/slots")

    def get_slot(self, slot_id: str) -> SlotDetail:
        return self._get(SlotDetail, f"/api/slots/{_segment(slot_id)}", slot_id)

    def update_slot(self, slot_id: str, update: SlotUpdate, version: int | None) -> SlotDetail:
        headers = {"If-Match": str(version)} if version is not None else {}
        response = self._send(
            "PUT",
            f"/api/slots/{_segment(slot_id)}",
            headers=headers,
            json=update.model_dump(mode="json", exclude_none=True),
            subject=slot_id,
        )
        return self._parse(SlotDetail, response)

    def test_run(
        self,
        slot_id: str,
        photo: Path,
        *,
        slot_payload: SlotUpdate | None = None,
        progress: Progress | None = None,
    ) -> TestRunResult:
        fields = {}
        if slot_payload is not None:
            fields["slot_payload"] = slot_payload.model_dump_json(exclude_none=True)
        headers, body = multipart_body(fields, "test_image", photo, progress)
        response = self._send(
            "POST",
            f"/api/slots/{_segment(slot_id)}/test-run",
            headers=headers,
            content=body,
            timeout=TEST_RUN_TIMEOUT,
            subject=slot_id,
        )
        return self._parse(TestRunResult, response)

    def cleanup_slot(self, slot_id: str) -> CleanupResult:
        return self._parse(
            CleanupResult,
            self._send("POST", f"/api/slots/{_segment(slot_id)}/cleanup", subject=slot_id),
        )

    def purge_cache(self) -> Accepted:
        return self._parse(Accepted, self._send("POST", "/api/media/cache/purge"))

    # -- template media ---------------------------------------------------------------------
    def list_templates(self) -> TemplateMediaList:
        return self._get(TemplateMediaList, "/api/template-media")

    def upload_template(self, path: Path, progress: Progress | None = None) -> TemplateMedia:
        headers, body = multipart_body({}, "file", path, progress)
        response = self._send("POST", "/api/template-media", headers=headers, content=body)
        return self._parse(TemplateMedia, response)

    def delete_template(self, template_id: str) -> None:
        self._send("DELETE", f"/api/template-media/{_segment(template_id)}", subject=template_id)

    # -- settings ---------------------------------------------------------------------------
    def get_settings(self) -> SettingsOut:
        return self._get(SettingsOut, "/api/settings")

    def put_settings(self, update: SettingsUpdate) -> SettingsOut:
        response = self._send(
            "PUT", "/api/settings", json=update.model_dump(mode="json", exclude_none=True)
        )
        return self._parse(SettingsOut, response)

    # -- jobs and stats ---------------------------------------------------------------------
    def list_jobs(
        self, *, slot_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> JobList:
        return self._get(JobList, "/api/jobs", slot_id, slot_id=slot_id, status=status, limit=limit)

    def get_job(self, job_id: str) -> JobOut:
        return self._get(JobOut, f"/api/jobs/{_segment(job_id)}", job_id)

    def stats_global(self, window_minutes: int) -> Stats:
        return self._get(Stats, "/api/stats/global", window_minutes=window_minutes)

    def stats_slot(self, slot_id: str, window_minutes: int) -> Stats:
        return self._get(
            Stats, f"/api/stats/{_segment(slot_id)}", slot_id, window_minutes=window_minutes
        )

    def stats_slots(self, window_minutes: int) -> SlotStatsList:
        return self._get(SlotStatsList, "/api/stats/slots", window_minutes=window_minutes)

    # -- public results ---------------------------------------------------------------------
    def download_result(
        self,
        job_id: str,
        dest: Callable[[str], Path] | BinaryIO,
        *,
        progress: Progress | None = None,
        on_start: Callable[[int | None], None] | None = None,
    ) -> tuple[Path | None, str, int]:
        """Fetch ``/public/results/{job_id}`` (no token sent) into ``dest``: the file
        ``dest(mime type)`` names (a failed download leaves no partial file behind) or an open
        binary stream such as stdout.  Returns (the file or None, mime type, bytes).

        Always fetched from the server pcctl talks to: the absolute ``public_result_url`` the
        daemon hands out may name an address only the outside world can reach.
        """
        path = f"/public/results/{_segment(job_id)}"
        try:
            with self._http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    raise self._failure(response, auth=False, subject=job_id)
                length = response.headers.get("Content-Length")
                if on_start is not None:
                    on_start(int(length) if length and length.isdigit() else None)
                content_type = response.headers.get("Content-Type", "application/octet-stream")
                mime = content_type.split(";")[0].strip()
                if callable(dest):
                    target = dest(mime)
                    return target, mime, _save(response, target, progress)
                return None, mime, _copy(response, dest, progress)
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot reach {self.server}: {exc}", hint=UNREACHABLE_HINT) from exc
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot download from {self.server}: {exc}") from exc
        except OSError as exc:
            raise PcctlError(f"cannot save the result: {exc}") from exc


def _copy(response: httpx.Response, handle: BinaryIO, progress: Progress | None) -> int:
    """Stream the body into ``handle``; the number of bytes."""
    size = 0
    for chunk in response.iter_bytes(CHUNK):
        handle.write(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    handle.flush()
    return size


def _save(response: httpx.Response, target: Path, progress: Progress | None) -> int:
    """Stream the body into ``target`` through a temp file renamed at the end."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with tmp.open("wb") as handle:
            size = _copy(response, handle, progress)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def _segment(value: str) -> str:
    """A path segment: ids are url-safe already; anything else is quoted, never a new path."""
    from urllib.parse import quote

    return quote(value, safe="")


def multipart_body(
    fields: dict[str, str], file_field: str, path: Path, progress: Progress | None
) -> tuple[dict[str, str], Iterator[bytes]]:
    """A streamed ``multipart/form-data`` body with a known length, reporting file progress."""
    boundary = secrets.token_hex(16)
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    safe_name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
    head = b""
    for name, value in fields.items():
        head += (
            (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n').encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{safe_name}"\r\nContent-Type: {mime}\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PcctlError(f"cannot read {path}: {exc.strerror}") from exc

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
                if progress is not None:
                    progress(len(chunk))
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    return headers, body()
