"""Command-line plumbing for ids.

Job ids (22 characters) and template ids (16) are URL-safe base64, so about one in 32 starts
with ``-`` and click would read it as an option (``pcctl job show -spop…`` → "No such option
'-s'").  :class:`IdCommand` moves such an argument behind ``--`` before parsing, so pasting an
id always works; ``pcctl job show -- <id>`` works too.
"""

from __future__ import annotations

import re

import click

ID_LIKE = re.compile(r"-[A-Za-z0-9_-]{15}|-[A-Za-z0-9_-]{21}")


class IdCommand(click.Command):
    """A command whose positional arguments are server ids that may start with ``-``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        known = set(ctx.help_option_names)
        for param in self.params:
            known.update(getattr(param, "opts", []))
            known.update(getattr(param, "secondary_opts", []))
        if "--" not in args:
            ids = [a for a in args if a not in known and ID_LIKE.fullmatch(a)]
            if ids:
                args = [a for a in args if a not in ids] + ["--", *ids]
        return super().parse_args(ctx, args)
