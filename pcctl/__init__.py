"""``pcctl``: the terminal admin client of PhotoChanger.

It talks to ``photochangerd`` over HTTP only (the admin API, README "Admin API") and parses
every answer with the wire models in :mod:`shared.api_models`; it never imports the daemon.
"""

from __future__ import annotations

__version__ = "0.1.0"
