"""``pcctl open [SLOT] [--print-only]``: the web console's address, opened in a browser."""

from __future__ import annotations

import sys
import webbrowser

import click

from pcctl.errors import EXIT_NOT_FOUND, PcctlError
from pcctl.state import State, output_option, pass_state
from shared.slots import SLOT_IDS, is_slot_id


class UnknownSlot(PcctlError):
    exit_code = EXIT_NOT_FOUND


def console_url(server: str, slot_id: str | None = None) -> str:
    """``<server>/admin/`` or ``<server>/admin/slots/<slot_id>``."""
    base = server.rstrip("/")
    return f"{base}/admin/slots/{slot_id}" if slot_id else f"{base}/admin/"


def find_browser() -> webbrowser.BaseBrowser | None:
    """The browser :mod:`webbrowser` would use ($BROWSER first), or None when there is none."""
    try:
        return webbrowser.get()
    except webbrowser.Error:
        return None


@click.command("open")
@click.argument(
    "slot_id", metavar="[SLOT]", required=False, shell_complete=lambda *_: list(SLOT_IDS)
)
@click.option("--print-only", is_flag=True, help="Print the address, do not start a browser.")
@output_option
@pass_state
def open_(state: State, slot_id: str | None, print_only: bool) -> None:
    """Open the web console (or one slot's page) in a browser.

    Prints the address — http://<server>/admin/ or …/admin/slots/slot-003 — and, on a terminal
    with a browser available, opens it there; piped, or with --print-only, it only prints.
    Sign in there as serg or igor (the console has its own session; no token is passed on).

    \b
      pcctl open
      pcctl open slot-003
      xdg-open "$(pcctl open --print-only)"
    """
    if slot_id is not None and not is_slot_id(slot_id):
        raise UnknownSlot(
            f"no such slot: {slot_id}", hint=f"slots are {SLOT_IDS[0]} … {SLOT_IDS[-1]}"
        )
    url = console_url(state.connection().server, slot_id)
    out = state.out
    if out.is_json:
        out.json({"url": url})
        return
    out.line(url)
    sys.stdout.flush()
    if print_only or not on_terminal(state):
        return
    browser = find_browser()
    if browser is None:
        out.info("no browser found here: open the address on a machine that has one")
    elif browser.open(url, new=2):
        out.info("opened in your browser")
    else:
        out.warn("the browser did not start: open the address yourself")


def on_terminal(state: State) -> bool:
    """Whether a person reads stdout (only then is a browser started)."""
    return state.out.stdout_tty
