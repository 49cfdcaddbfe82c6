"""Provider / operation catalogue: the names are part of the contract.

See docs/providers.md, "Catalogue and slot settings".
"""

from __future__ import annotations

from typing import Final

LOCAL_OPERATIONS: Final = ("passthrough", "enhance", "grayscale", "sepia", "frame")

CATALOGUE: Final[dict[str, tuple[str, ...]]] = {
    "local": LOCAL_OPERATIONS,
    "gemini": ("edit",),
    "turbotext": ("image2image", "mix_images", "face_swap"),
    "openai": ("edit",),
    "sdwebui": ("img2img",),
    "comfyui": ("workflow",),
}

OUTPUT_FORMATS: Final = ("jpeg", "png", "webp", "original")
TEMPLATE_ROLES: Final = ("style", "face", "frame", "reference")
JOB_SOURCES: Final = ("ingest", "test_run")
# Values of ``GET /api/jobs?status=``: a job's state, or how it ended.
JOB_STATUS_FILTERS: Final = (
    "pending",
    "processing",
    "finalized",
    "succeeded",
    "timeout",
    "provider_error",
    "cancelled",
    "internal_error",
)

DEFAULT_PROVIDER: Final = "local"
DEFAULT_OPERATION: Final = "passthrough"


def is_known(provider: str, operation: str) -> bool:
    """True when ``operation`` is one of ``provider``'s operations."""
    return operation in CATALOGUE.get(provider, ())
