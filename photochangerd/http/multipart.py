"""Streaming ``multipart/form-data`` reader for uploads, with our own limits.

Quart's form parser only enforces ``MAX_CONTENT_LENGTH`` against ``Content-Length``; a chunked
upload sails past it (pitfalls.md #2).  Here every byte is counted as it arrives and reading
stops at the limit.  Parsing is Werkzeug's sans-IO ``MultipartDecoder`` (the parser Quart uses
internally), fed chunk by chunk.

Text parts are kept bounded (DSLR Remote Pro sends a handful of short fields; anything beyond
the bounds is truncated or ignored, never an error).  Client file names and part content types
are ignored: the bytes are sniffed later.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

from werkzeug.sansio.multipart import (
    NEED_DATA,
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
)

from photochangerd.http.errors import InvalidRequest, PayloadTooLarge
from photochangerd.media.store import Spool


@dataclass(frozen=True, slots=True)
class FormLimits:
    file_bytes: int
    body_bytes: int
    field_bytes: int = 4096  # per text part kept
    fields: int = 64  # text parts kept
    fields_total_bytes: int = 64 * 1024


@dataclass(slots=True)
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    file_received: bool = False
    file_size: int = 0
    dropped_fields: int = 0


FieldCallback = Callable[[str, str], Awaitable[None]]


async def read_upload(
    chunks: AsyncIterable[bytes],
    boundary: str,
    limits: FormLimits,
    spool: Spool,
    *,
    file_field: str,
    on_field: FieldCallback | None = None,
) -> UploadForm:
    """Read the form; the part ``file_field`` streams into ``spool``.

    ``on_field(name, value)`` runs as soon as a text part is complete, so a caller can reject a
    wrong password before the photo is read.  Raises :class:`PayloadTooLarge` past a limit and
    :class:`InvalidRequest` for a broken or incomplete body.
    """
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=None)
    form = UploadForm()
    kept_bytes = 0
    # The part being read: its name and kind ("photo", "field" or "ignored").
    name = ""
    kind = "ignored"
    value = bytearray()
    done = False

    async def keep_field(field_name: str, raw: bytes) -> None:
        nonlocal kept_bytes
        if (
            field_name in form.fields
            or len(form.fields) >= limits.fields
            or kept_bytes + len(raw) > limits.fields_total_bytes
        ):
            form.dropped_fields += 1
            return
        text = raw.decode("utf-8", errors="replace")
        form.fields[field_name[:100]] = text
        kept_bytes += len(raw)
        if on_field is not None:
            await on_field(field_name, text)

    async def feed(data: bytes | None) -> None:
        nonlocal name, kind, done
        decoder.receive_data(data)
        while True:
            try:
                evt = decoder.next_event()
            except ValueError as exc:
                raise InvalidRequest(f"malformed multipart body: {exc}") from None
            if evt is NEED_DATA:
                return
            if isinstance(evt, File):
                name = evt.name
                kind = "photo" if evt.name == file_field and not form.file_received else "ignored"
            elif isinstance(evt, Field):
                name = evt.name
                kind = "field"
                value.clear()
            elif isinstance(evt, Data):
                if kind == "photo":
                    form.file_size += len(evt.data)
                    if form.file_size > limits.file_bytes:
                        raise PayloadTooLarge(
                            f"photo larger than {limits.file_bytes // (1024 * 1024)} MiB"
                        )
                    await spool.write(evt.data)
                    if not evt.more_data:
                        form.file_received = True
                elif kind == "field" and len(value) < limits.field_bytes:
                    value.extend(evt.data[: limits.field_bytes - len(value)])
                if not evt.more_data:
                    if kind == "field":
                        await keep_field(name, bytes(value))
                    kind = "ignored"
            elif isinstance(evt, Epilogue):
                done = True
                return

    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limits.body_bytes:
            raise PayloadTooLarge(
                f"request body larger than {limits.body_bytes // (1024 * 1024)} MiB"
            )
        if chunk and not done:
            await feed(chunk)
    if not done:
        await feed(None)  # end of body: lets the decoder emit the epilogue
    if not done:
        raise InvalidRequest("incomplete multipart body")
    return form
