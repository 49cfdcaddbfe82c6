"""SQLAlchemy Core table definitions mirroring ``sql/<dialect>/*.sql``.

The migrations are the source of truth for the schema; these objects only give queries typed
column references.  ``tests/test_migrations.py`` checks that both agree column for column.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.Double  # Unix epoch seconds on both dialects

slot = sa.Table(
    "slot",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("size_limit_mb", sa.Integer, nullable=False),
    sa.Column("settings", JSONType, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp),
    sa.Column("updated_by", sa.Text),
    sa.Column("fallbacks", JSONType, nullable=False),
)

job = sa.Table(
    "job",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("slot_id", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("is_finalized", sa.Boolean, nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("failure_details", sa.Text),
    sa.Column("response_status", sa.Integer),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("settings", JSONType, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp),
    sa.Column("finalized_at", Timestamp),
    sa.Column("deadline", Timestamp, nullable=False),
    sa.Column("claimed_by", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("provider_job_reference", sa.Text),
    sa.Column("client_metadata", JSONType, nullable=False),
    sa.Column("input_path", sa.Text),
    sa.Column("input_mime_type", sa.Text),
    sa.Column("result_file_path", sa.Text),
    sa.Column("result_mime_type", sa.Text),
    sa.Column("result_size_bytes", sa.BigInteger),
    sa.Column("result_checksum", sa.Text),
    sa.Column("result_expires_at", Timestamp),
    sa.Column("fallbacks", JSONType, nullable=False),
    sa.Column("attempt_log", JSONType, nullable=False),
    sa.Column("served_by", sa.Text),
    sa.Column("fallback_step", sa.Integer),
)

template_media = sa.Table(
    "template_media",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("mime_type", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.Text, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.Text),
)

slot_template = sa.Table(
    "slot_template",
    metadata,
    sa.Column("slot_id", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("template_id", sa.Text, nullable=False),
)

media_object = sa.Table(
    "media_object",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("job_id", sa.Text),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("mime_type", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("cleaned_at", Timestamp),
)

processing_log = sa.Table(
    "processing_log",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("slot_id", sa.Text),
    sa.Column("job_id", sa.Text),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("duration_ms", sa.Double, nullable=False),
)

app_settings = sa.Table(
    "app_settings",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", JSONType, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.Text),
)

provider_secret = sa.Table(
    "provider_secret",
    metadata,
    sa.Column("provider", sa.Text, primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.Text),
)

admin_user = sa.Table(
    "admin_user",
    metadata,
    sa.Column("username", sa.Text, primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

admin_session = sa.Table(
    "admin_session",
    metadata,
    sa.Column("id_hash", sa.Text, primary_key=True),
    sa.Column("username", sa.Text, sa.ForeignKey("admin_user.username"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)

revoked_token = sa.Table(
    "revoked_token",
    metadata,
    sa.Column("jti", sa.Text, primary_key=True),
    sa.Column("expires_at", Timestamp, nullable=False),
)

login_failure = sa.Table(
    "login_failure",
    metadata,
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("failed_at", Timestamp, nullable=False),
)

login_lock = sa.Table(
    "login_lock",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("locked_until", Timestamp, nullable=False),
)

ingest_failure = sa.Table(
    "ingest_failure",
    metadata,
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("failed_at", Timestamp, nullable=False),
)

ingest_pace = sa.Table(
    "ingest_pace",
    metadata,
    sa.Column("address", sa.Text, primary_key=True),
    sa.Column("next_run", Timestamp, nullable=False),
)
