"""Fake HTTP servers of the AI vendors (Gemini, Turbotext, OpenAI images) and of self-hosted
backends (AUTOMATIC1111 WebUI, ComfyUI) for driver tests.

Each speaks the vendor's wire format as described in the provider spec, is scripted per
request and records what it received; see ``base`` for the shared API.
"""

from tests.fakes.base import (
    Exchange,
    FakeServer,
    Outcome,
    RecordedRequest,
    UploadedFile,
    outcome,
    slow,
)
from tests.fakes.comfyui import CancelCall, FakeComfyUI, FakePrompt
from tests.fakes.gemini import FakeGemini
from tests.fakes.images import looks_derived_from
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.sdwebui import FakeSdWebUI, GpuJob
from tests.fakes.turbotext import FakeTurbotext, Fetch, TurbotextJob

__all__ = [
    "CancelCall",
    "Exchange",
    "FakeComfyUI",
    "FakeGemini",
    "FakeOpenAIImages",
    "FakePrompt",
    "FakeSdWebUI",
    "FakeServer",
    "FakeTurbotext",
    "Fetch",
    "GpuJob",
    "Outcome",
    "RecordedRequest",
    "TurbotextJob",
    "UploadedFile",
    "looks_derived_from",
    "outcome",
    "slow",
]
