"""The slot page's fallback chain editor (docs/web.md): the chain as JSON, saved through the
admin API's own update (:func:`photochangerd.http.admin.slots.apply_slot_update`), so the
console refuses exactly what ``PUT /api/slots/{id}`` refuses, with the same messages."""

from __future__ import annotations

import json

from pydantic import ValidationError
from quart import Response, request

from photochangerd.http.admin.slots import Conflict, apply_slot_update
from photochangerd.http.context import admin
from photochangerd.http.validation import ValidationFailed, errors_from_pydantic
from photochangerd.web.console import bp
from photochangerd.web.console.slots import _check_slot, _to_slot, render_slot
from shared.api_models import SlotUpdate

# The API's own bounds: three steps, each up to a 2 MB ComfyUI workflow (pretty-printed here).
MAX_CHAIN_TEXT = 8 * 1024 * 1024


@bp.post("/slots/<slot_id>/fallbacks")
async def save_fallbacks(slot_id: str) -> Response:
    _check_slot(slot_id)
    form = await request.form
    text = str(form.get("fallbacks", "")).strip() or "[]"
    problem = ""
    try:
        if len(text) > MAX_CHAIN_TEXT:
            raise ValueError(f"longer than {MAX_CHAIN_TEXT // (1024 * 1024)} MB")
        steps = json.loads(text)
        if not isinstance(steps, list):
            raise ValueError("expected a list of steps: [ {…}, {…} ]")
        update = SlotUpdate.model_validate({"fallbacks": steps})
        await apply_slot_update(admin(), slot_id, update)
    except ValidationFailed as exc:
        problem = "; ".join(f"{field}: {message}" for field, message in exc.errors.items())
    except ValidationError as exc:
        errors = errors_from_pydantic(exc)
        problem = "; ".join(f"{field}: {message}" for field, message in errors.items())
    except Conflict:
        problem = "the slot changed meanwhile: reload the page"
    except ValueError as exc:  # json.JSONDecodeError is one
        problem = f"not a valid chain: {exc}"
    if problem:
        return await render_slot(slot_id, status=422, fallbacks_text=text, fallbacks_error=problem)
    return _to_slot(slot_id, "Fallbacks saved.", "#fallbacks")
