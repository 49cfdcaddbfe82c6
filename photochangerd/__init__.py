"""photochangerd — the PhotoChanger daemon."""

import sys

__version__ = "0.1.0"

# httpx imports its own command-line client at import time when rich, click and pygments are
# installed (they are: pcctl uses rich): ~70 modules and ≈ 4 MB of resident memory the daemon
# never uses.  A None entry makes that import fail, and httpx falls back to a stub ``main``.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
