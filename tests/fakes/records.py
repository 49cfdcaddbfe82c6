"""What the fakes record about each request, and how they read request bodies.

A ``RecordedRequest`` is appended to ``fake.requests`` when the request line and headers arrive
and filled in as the body is read and the answer goes out.  Bodies are parsed by Content-Type
only: JSON, urlencoded forms, multipart (python-multipart's push parser); anything else stays
raw bytes in ``body``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["RecordedRequest", "UploadedFile", "parse_body"]


@dataclass
class UploadedFile:
    """An image a request carried: a multipart file part, or a decoded Gemini inline image."""

    field: str  # form field ("image[]") or JSON location ("contents[0].parts[0]")
    filename: str | None
    content_type: str | None
    data: bytes = dataclasses.field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One request as the fake saw it.  Times are ``trio.current_time()``."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    received_at: float  # when the request line and headers arrived
    body: bytes = dataclasses.field(default=b"", repr=False)
    body_received_at: float | None = None
    # The parsed JSON body (None if absent or invalid); kept out of repr: base64 images are long.
    json: Any = dataclasses.field(default=None, repr=False)
    # urlencoded fields or multipart text parts (a repeated name keeps its last value)
    form: dict[str, str] = dataclasses.field(default_factory=dict)
    files: list[UploadedFile] = dataclasses.field(default_factory=list)
    text: str | None = None  # Gemini: the request's text parts, joined with "\n"
    outcome: str | None = None  # scripted outcome applied (None: rejected before scripting)
    status: int | None = None  # status sent (None: nothing sent)
    responded_at: float | None = None  # when the last body chunk was handed to the server
    completed: bool = False  # the whole answer was sent (true by the time a client has it)
    disconnected: bool = False  # the client went away before the answer was complete
    disconnected_at: float | None = None

    @property
    def body_size(self) -> int:
        return len(self.body)

    @property
    def do(self) -> str | None:
        """Turbotext's ``do`` field."""
        return self.form.get("do")


def _parse_multipart(body: bytes, boundary: bytes) -> tuple[dict[str, str], list[UploadedFile]]:
    """Text fields and file parts of a multipart body (python-multipart's push parser)."""
    form: dict[str, str] = {}
    files: list[UploadedFile] = []
    headers: dict[bytes, bytes] = {}
    name_buf, value_buf, data_buf = bytearray(), bytearray(), bytearray()

    def on_part_begin() -> None:
        headers.clear()
        data_buf.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name_buf.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value_buf.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(name_buf).lower()] = bytes(value_buf)
        name_buf.clear()
        value_buf.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        data_buf.extend(data[start:end])

    def on_part_end() -> None:
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            form[name] = bytes(data_buf).decode("utf-8", "replace")
            return
        content_type = headers.get(b"content-type")
        files.append(
            UploadedFile(
                field=name,
                filename=filename.decode("utf-8", "replace"),
                content_type=content_type.decode("latin-1") if content_type else None,
                data=bytes(data_buf),
            )
        )

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return form, files


def parse_body(record: RecordedRequest) -> None:
    """Fill ``json`` / ``form`` / ``files`` from ``body`` by Content-Type (never raises)."""
    content_type, options = parse_options_header(record.headers.get("content-type", ""))
    try:
        if content_type == b"application/json":
            record.json = json.loads(record.body)
        elif content_type == b"application/x-www-form-urlencoded":
            pairs = parse_qsl(record.body.decode("utf-8", "replace"), keep_blank_values=True)
            record.form = dict(pairs)
        elif content_type == b"multipart/form-data" and b"boundary" in options:
            record.form, record.files = _parse_multipart(record.body, options[b"boundary"])
    except Exception:  # a garbled body is for the vendor logic to report
        pass
