"""Run the real daemon in a subprocess with the scripted test provider available.

``python -m tests.support.run_daemon`` reads its configuration like ``photochangerd`` does
(``PHOTOCHANGER_*``), handles signals for real, and additionally registers provider ``script``
(tests/support/providers.py) so process-level tests (SIGTERM, kill -9) can hold a job open.
"""

from __future__ import annotations

import trio

from photochangerd.app import run
from photochangerd.config import load_config
from photochangerd.logs import configure_logging
from tests.support.providers import ScriptedProvider


def main() -> None:
    config = load_config()
    configure_logging(config.log_format, config.log_level)
    trio.run(lambda: run(config, providers={"script": ScriptedProvider()}))


if __name__ == "__main__":
    main()
