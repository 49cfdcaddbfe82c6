"""Structured logging: one event per line, ``event key=value ...`` or JSON lines.

Call :func:`event` with an event name and fields (job_id, slot_id, ...).  Values are rendered
safely (quoted, newlines escaped, truncated) so a client-controlled string cannot forge log lines.
Never pass image bytes, passwords, tokens or API keys: there is no field this module would
redact for you.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

MAX_VALUE = 300
_instance: str | None = None  # JSON lines name the instance (several share one log store)


def set_log_instance(instance_id: str | None) -> None:
    global _instance
    _instance = instance_id


def _render(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + "…"
    if not text or any(c in text for c in ' "=\n\r\t\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=True)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{stamp}.{int(record.msecs):03d}Z", record.levelname.lower(), record.getMessage()]
        parts += [f"{key}={_render(value)}" for key, value in fields.items() if value is not None]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        if _instance is not None:
            document["instance"] = _instance
        for key, value in getattr(record, "fields", {}).items():
            if value is not None:
                document[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Hypercorn's access log would duplicate our per-request events.
    logging.getLogger("hypercorn.access").disabled = True
    # Libraries whose debug output carries credentials (the AWS SDK logs signed request
    # headers: the access key id, a session token) or image bytes: never below INFO.
    quiet = max(root.level, logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)


QUIET_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "httpcore", "httpx", "PIL")


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log event ``name`` with ``fields`` (rendered as key=value or JSON keys)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
