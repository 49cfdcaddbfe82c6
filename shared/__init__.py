"""The wire contract shared by ``photochangerd`` and ``pcctl``.

Nothing in here does I/O: slot ids, failure codes, the error body shape and the
provider/operation catalogue.  Both sides import it so that names cannot drift.
"""
