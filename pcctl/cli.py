"""``pcctl`` — the command tree, global options, login/logout and error reporting."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pcctl import __version__, config
from pcctl.client import ApiClient
from pcctl.errors import EXIT_AUTH, EXIT_NOT_FOUND, PcctlError
from pcctl.output import MODES
from pcctl.state import State, output_option, pass_state

HELP_EPILOG = f"""\b
Output: tables on a terminal, tab-separated text when piped, JSON with --output json.
NO_COLOR turns colours off.
\b
Environment:
  PCCTL_SERVER   server URL (overrides the config file)
  PCCTL_TOKEN    admin token (overrides the config file)
  PCCTL_EDITOR, VISUAL, EDITOR   editor for `pcctl slot edit` (first one set wins)
  XDG_CONFIG_HOME  config in $XDG_CONFIG_HOME/pcctl/config.toml (default ~/.config)
\b
Exit codes:
  0  ok
  1  error (server unreachable, rejected values, conflict, …)
  2  usage error
  {EXIT_AUTH}  authentication: not logged in, session expired, wrong password
     (an unreachable server is exit 1 even when not logged in)
  {EXIT_NOT_FOUND}  not found: unknown slot, job, template or result
\b
Shell completion (bash; zsh/fish alike with zsh_source/fish_source):
  eval "$(_PCCTL_COMPLETE=bash_source pcctl)"
"""


class PcctlGroup(click.Group):
    """Turns :class:`PcctlError` into a message on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PcctlError as exc:
            state = ctx.ensure_object(State)
            state.out.error(exc.message, exc.hint, getattr(exc, "errors", None))
            raise click.exceptions.Exit(exc.exit_code) from None


@click.group(
    cls=PcctlGroup,
    epilog=HELP_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="pcctl")
@click.option(
    "--server",
    metavar="URL",
    default=None,
    help="PhotoChanger server (default: $PCCTL_SERVER, else the one you logged in to).",
)
@click.option(
    "--output",
    type=click.Choice(MODES),
    default=None,
    help="table (default on a terminal), plain (tab-separated; default when piped) or json.",
)
@click.pass_context
def cli(ctx: click.Context, server: str | None, output: str | None) -> None:
    """Administer a PhotoChanger server: slots, settings, jobs, results, statistics.

    Commands read object-then-action: `pcctl slot list`, `pcctl slot edit slot-003`.
    Start with `pcctl login`.
    """
    state = ctx.ensure_object(State)
    state.server_option = server
    state.output_option = output


@cli.command()
@click.option("--server", "server_url", metavar="URL", help="Server URL (remembered).")
@click.option("--user", "-u", help="Admin account (serg or igor).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (for scripts).")
@output_option
@pass_state
def login(state: State, server_url: str | None, user: str | None, password_stdin: bool) -> None:
    """Log in and remember the server and token (config file mode 0600)."""
    stored = config.load(state.config_file)
    server = config.normalize_server(server_url) if server_url else state.connection().server
    if user is None:
        if password_stdin:
            user = stored.user
            if user is None:
                raise click.UsageError("--user is required with --password-stdin")
        else:
            user = click.prompt("Username", default=stored.user or "serg")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: stdin was empty")
    else:
        password = click.prompt("Password", hide_input=True)
    with ApiClient(server, None) as client:
        token = client.login(user, password)
    expires_at = time.time() + token.expires_in
    config.save(
        state.config_file,
        config.StoredLogin(
            server=server, token=token.access_token, user=user, expires_at=expires_at
        ),
    )
    out = state.out
    if out.is_json:
        out.json({"server": server, "user": user, "expires_in": token.expires_in})
        return
    hours = token.expires_in / 3600
    out.success(f"logged in to {server} as {user} (session valid for {hours:g} h)")
    out.info(f"saved to {state.config_file}")


@cli.command()
@pass_state
def logout(state: State) -> None:
    """Sign the token out on the server and forget it (the server URL stays)."""
    stored = config.load(state.config_file)
    if stored.token is None:
        state.out.info("not logged in")
        return
    try:
        state.client().logout()
    except PcctlError as exc:  # unreachable, already expired...: forgotten here all the same
        state.out.warn(f"the server did not sign the token out ({exc}); forgetting it here")
    config.forget_token(state.config_file)
    state.out.success(f"logged out of {stored.server}")


def _register() -> None:
    from pcctl.commands import jobs, settings, slots, stats, templates

    for group in (slots.slot, settings.settings, templates.template, jobs.job, jobs.result):
        cli.add_command(group)
    for command in (stats.stats, jobs.jobs, jobs.cleanup):
        cli.add_command(command)
    from pcctl.commands.open import open_ as open_console

    cli.add_command(open_console)


_register()


def main() -> None:
    cli(prog_name="pcctl")
