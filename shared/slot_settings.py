"""Typed slot settings per provider/operation, with defaults and validation (docs/providers.md,
"Catalogue and slot settings").

The admin API validates a slot update with :func:`validate_slot` and answers 422 with the
per-field messages it returns; the providers parse the stored settings with the same models,
so what was accepted is exactly what runs.  Unknown keys are errors (a typo must not be
silently ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.comfyui_workflow import (
    WorkflowError,
    check_prompt_target,
    check_slot_workflow,
    parse_workflow,
)

OutputFormat = Literal["jpeg", "png", "webp", "original"]
GEMINI_MODELS = ("gemini-2.5-flash-image", "gemini-3-pro-image-preview")
GEMINI_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
OPENAI_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")

Prompt = Annotated[str, Field(min_length=1, max_length=32_000)]
QrPosition = Literal["bottom-right", "bottom-left", "top-right", "top-left"]


class QrStampSettings(BaseModel):
    """A QR code of the photo's guest page (``{public_base_url}/r/{job_id}``), stamped on the
    image the booth gets back (and prints).  The stored result stays clean."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False,
        description="Stamp the guest page's QR code on the photo the booth gets back.",
    )
    position: QrPosition = Field(
        default="bottom-right", description="The corner of the photo the QR code goes in."
    )
    size_percent: int = Field(
        default=14,
        ge=8,
        le=30,
        description="Side of the QR code with its white quiet zone, in percent of the "
        "photo's shorter edge.",
    )


class CommonSettings(BaseModel):
    """Settings every slot has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output_format: OutputFormat = "jpeg"
    max_input_pixels: int = Field(
        default=4_000_000,
        ge=250_000,
        le=50_000_000,
        description="Photos above this are downscaled before they are sent to the provider.",
    )
    qr_stamp: QrStampSettings = Field(
        default=QrStampSettings(),
        description="A QR code of the guest page on the photo the booth prints.",
    )


class LocalSettings(CommonSettings):
    pass


class GeminiEditSettings(CommonSettings):
    prompt: Prompt
    model: Literal["gemini-2.5-flash-image", "gemini-3-pro-image-preview"] = (
        "gemini-2.5-flash-image"
    )
    aspect_ratio: (
        Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"] | None
    ) = None
    image_size: Literal["1K", "2K", "4K"] | None = None

    @model_validator(mode="after")
    def _image_size_needs_pro(self) -> GeminiEditSettings:
        if self.image_size is not None and self.model != "gemini-3-pro-image-preview":
            raise ValueError("image_size is only supported by gemini-3-pro-image-preview")
        return self


class TurbotextImage2ImageSettings(CommonSettings):
    prompt: Prompt
    strength: int = Field(default=40, ge=0, le=80)
    seed: int | None = Field(default=None, ge=1, le=10**10)
    scale: float = Field(default=7.5, ge=0.1, le=20)
    negative_prompt: str | None = None
    original_language: str = Field(default="ru", min_length=2, max_length=5)

    @field_validator("negative_prompt")
    @classmethod
    def _at_most_80_words(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) > 80:
            raise ValueError("negative_prompt: at most 80 words")
        return value


class TurbotextMixImagesSettings(CommonSettings):
    prompt: str | None = Field(default=None, max_length=32_000)


class TurbotextFaceSwapSettings(CommonSettings):
    face_restore: bool = False


class OpenAIEditSettings(CommonSettings):
    prompt: Prompt
    model: Literal["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"] = "gpt-image-1"
    size: Literal["1024x1024", "1536x1024", "1024x1536", "auto"] = "auto"
    quality: Literal["low", "medium", "high", "auto"] = "medium"
    input_fidelity: Literal["high", "low"] = "high"
    background: Literal["auto", "opaque", "transparent"] = "auto"


class SdWebUIImg2ImgSettings(CommonSettings):
    """AUTOMATIC1111 / Forge / SD.Next ``img2img`` (docs/providers.md, "Stable Diffusion WebUI")."""

    prompt: Prompt
    negative_prompt: str = Field(default="", max_length=32_000)
    denoising_strength: float = Field(
        default=0.5, ge=0, le=1, description="How far the result may move from the photo (0-1)."
    )
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=1, le=30)
    sampler_name: str | None = Field(
        default=None, min_length=1, max_length=100, description="Backend default when unset."
    )
    scheduler: str | None = Field(
        default=None, min_length=1, max_length=100, description="Backend default when unset."
    )
    seed: int = Field(default=-1, ge=-1, le=2**32 - 1, description="-1: a random seed.")
    checkpoint: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="Model checkpoint (override_settings.sd_model_checkpoint); unset: loaded one.",
    )
    working_pixels: int = Field(
        default=1_048_576,
        ge=65_536,
        le=4_194_304,
        description="Pixel budget of the working size the photo is scaled to (sides multiples "
        "of 8, aspect ratio kept).",
    )
    result_size: Literal["working", "photo"] = Field(
        default="working",
        description="working: the result as the backend made it; photo: upscaled back to the "
        "booth photo's size.",
    )


class ComfyUIWorkflowSettings(CommonSettings):
    """A ComfyUI workflow in the API format (shared/comfyui_workflow.py)."""

    workflow: dict[str, Any] = Field(
        description="The workflow in ComfyUI's API format (Export (API)): exactly one "
        "LoadImage node (gets the photo), at least one SaveImage/PreviewImage node.",
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=32_000,
        description="Goes into prompt_node's text input, else replaces every {{prompt}}.",
    )
    prompt_node: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Id of the node whose text input gets the prompt (e.g. a CLIPTextEncode).",
    )

    @field_validator("workflow", mode="before")
    @classmethod
    def _api_format(cls, value: Any) -> dict[str, Any]:
        try:
            workflow = parse_workflow(value)
            check_slot_workflow(workflow)
        except WorkflowError as exc:
            raise ValueError(f"the workflow {exc}") from None
        return workflow

    @model_validator(mode="after")
    def _prompt_has_a_place(self) -> ComfyUIWorkflowSettings:
        try:
            check_prompt_target(self.workflow, self.prompt, self.prompt_node)
        except WorkflowError as exc:
            raise ValueError(str(exc)) from None
        return self


SETTINGS_MODELS: dict[tuple[str, str], type[CommonSettings]] = {
    ("local", "passthrough"): LocalSettings,
    ("local", "enhance"): LocalSettings,
    ("local", "grayscale"): LocalSettings,
    ("local", "sepia"): LocalSettings,
    ("local", "frame"): LocalSettings,
    ("gemini", "edit"): GeminiEditSettings,
    ("turbotext", "image2image"): TurbotextImage2ImageSettings,
    ("turbotext", "mix_images"): TurbotextMixImagesSettings,
    ("turbotext", "face_swap"): TurbotextFaceSwapSettings,
    ("openai", "edit"): OpenAIEditSettings,
    ("sdwebui", "img2img"): SdWebUIImg2ImgSettings,
    ("comfyui", "workflow"): ComfyUIWorkflowSettings,
}

# Template roles an operation cannot run without.
REQUIRED_TEMPLATE_ROLES: dict[tuple[str, str], str] = {
    ("local", "frame"): "frame",
    ("turbotext", "mix_images"): "style",
    ("turbotext", "face_swap"): "face",
}


class SlotSettingsError(ValueError):
    """Invalid slot configuration; :attr:`errors` maps a field path to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def validate_slot(
    provider: str,
    operation: str,
    settings: dict[str, Any],
    template_roles: Sequence[str] | None = None,
) -> CommonSettings:
    """Validate a slot's provider/operation/settings (and template roles when given).

    Returns the parsed settings (defaults filled in); raises :class:`SlotSettingsError` with
    per-field messages (``settings.prompt``, ``operation``, ``template_media`` …).
    """
    model = SETTINGS_MODELS.get((provider, operation))
    if model is None:
        from shared.catalogue import CATALOGUE

        if provider not in CATALOGUE:
            raise SlotSettingsError({"provider": f"unknown provider {provider!r}"})
        allowed = ", ".join(CATALOGUE[provider])
        raise SlotSettingsError({"operation": f"{provider} supports: {allowed}"})
    try:
        parsed = model.model_validate(settings)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            path = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
                allowed = ", ".join(sorted(model.model_fields))
                message = f"unknown setting for {provider}/{operation} (allowed: {allowed})"
            if not path:  # a cross-field rule: its message starts with the field it is about
                first = message.split(" ", 1)[0].rstrip(":")
                path = first if first in model.model_fields else ""
            errors[f"settings.{path}" if path else "settings"] = message
        raise SlotSettingsError(errors) from None
    needed = REQUIRED_TEMPLATE_ROLES.get((provider, operation))
    if template_roles is not None and needed and needed not in template_roles:
        raise SlotSettingsError(
            {"template_media": f"{provider}/{operation} needs a template with role {needed!r}"}
        )
    return parsed


def parse_settings(provider: str, operation: str, settings: dict[str, Any]) -> CommonSettings:
    """Parse stored settings for running a job (same rules as :func:`validate_slot`)."""
    return validate_slot(provider, operation, settings)
