"""An image handed to a provider or published for one: its bytes and their MIME type."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ImageInput:
    data: bytes = field(repr=False)
    mime_type: str
    pixels: int | None = None  # width × height when known (inspected at ingest)
