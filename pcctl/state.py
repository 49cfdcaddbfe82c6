"""What every command shares: global options, the output, a lazily opened API client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from pcctl import config
from pcctl.client import ApiClient
from pcctl.output import MODES, Output


@dataclass
class State:
    server_option: str | None = None
    output_option: str | None = None
    config_file: Path = field(default_factory=config.config_path)
    _output: Output | None = None
    _client: ApiClient | None = None

    @property
    def out(self) -> Output:
        if self._output is None:
            self._output = Output(self.output_option)
        return self._output

    def connection(self) -> config.Connection:
        return config.resolve(self.config_file, self.server_option)

    def client(self) -> ApiClient:
        """The API client (closed when the command ends)."""
        if self._client is None:
            conn = self.connection()
            self._client = click.get_current_context().with_resource(
                ApiClient(conn.server, conn.token)
            )
        return self._client


pass_state = click.make_pass_decorator(State, ensure=True)


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).output_option = value


class OutputMode(click.Choice[str]):
    """``--output``'s choices; on a command that saves an image, a file name given to it by
    mistake is pointed at ``--save``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            if ctx is None or not any(p.name == "save_to" for p in ctx.command.params):
                raise
            hint = f"{exc.message} (the image file goes with --save PATH)"
            raise click.BadParameter(hint, ctx=ctx, param=param) from None


def output_option(fn: Any) -> Any:
    """``--output`` on a command too (``pcctl slot list --output json``)."""
    return click.option(
        "--output",
        type=OutputMode(MODES),
        callback=_set_output,
        expose_value=False,
        is_eager=True,
        help="table (default on a terminal), plain (tab-separated; default when piped) or json.",
    )(fn)
