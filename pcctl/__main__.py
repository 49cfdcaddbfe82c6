"""``python -m pcctl``."""

from pcctl.cli import main

main()
