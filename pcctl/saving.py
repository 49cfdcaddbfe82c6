"""``--save PATH`` of ``pcctl result get`` and ``pcctl slot test``: a file, or ``-`` for stdout.

One long option on purpose, and no ``-o``: ``--output`` is the output format everywhere, a
short flag that saves a file next to it invites mix-ups.  The command always says where the
image went; when that is stdout, every message goes to stderr and JSON output is refused (both
would want stdout), as is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import click

from pcctl.output import Output
from pcctl.render import EXTENSIONS

STDOUT = "-"


def save_option(help_text: str) -> Callable[[Any], Any]:
    return click.option(
        "--save",
        "save_to",
        metavar="PATH",
        type=click.Path(dir_okay=False, allow_dash=True),
        help=help_text,
    )


def stdout_sink(out: Output) -> BinaryIO:
    """Stdout for the image, once it is known not to collide with the command's output."""
    if out.is_json:
        raise click.UsageError("--save - writes the image to stdout: it cannot carry JSON too")
    if out.stdout_tty:
        raise click.UsageError(
            "--save -: stdout is a terminal; redirect it (> result.jpg) or give a file name"
        )
    return sys.stdout.buffer


def file_target(save_to: str | None, job_id: str) -> Callable[[str], Path]:
    """``save_to``, else ``./<job id>.<extension of the mime type>``."""

    def target(mime: str) -> Path:
        return Path(save_to) if save_to else Path(f"{job_id}.{EXTENSIONS.get(mime, 'bin')}")

    return target
