"""Persistence: the trio-asyncio bridge, tables, migrations and repositories.

Only this package touches ``trio_asyncio`` and SQLAlchemy's async engine; everything else calls
:class:`photochangerd.db.engine.Database` methods from plain Trio code.
"""
