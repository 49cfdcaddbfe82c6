"""Database URLs shown to people: the password out, wherever the URL carries it.

A password can ride in the user part (``postgresql://u:secret@host/db``) or in the query
(``postgresql://u@host/db?password=secret``, which asyncpg and libpq both honour).  Hiding only
the first leaked the second into ``check-config``'s output and ``backup``'s ``pg_dump`` line and
manifest (a review, 2026-12-02).
"""

from __future__ import annotations

import sqlalchemy as sa

# Query parameters that carry a secret (libpq's and asyncpg's names).
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def without_secret_query(url: sa.URL) -> sa.URL:
    """``url`` without the query parameters that carry a secret."""
    query = {k: v for k, v in url.query.items() if k.lower() not in SECRET_QUERY_KEYS}
    return url.set(query=query)


def redacted(database_url: str) -> str:
    """``database_url`` with every password shown as ``***``; a text that does not parse as a
    URL is not repeated (it may be one with a typo, password included)."""
    try:
        url = sa.make_url(database_url)
    except sa.exc.ArgumentError:
        return "(not a database URL)"
    query = {k: ("***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")  # the query's stars, URL-quoted
