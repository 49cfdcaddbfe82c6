"""What the HTTP layer gets from the root nursery: narrow handles, never the nursery itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from quart import current_app

from photochangerd.auth.passwords import IngestPasswordChecker
from photochangerd.auth.secrets_box import SecretBox
from photochangerd.auth.throttle import LoginThrottle
from photochangerd.auth.tokens import TokenService
from photochangerd.clock import WallClock
from photochangerd.config import Config
from photochangerd.db.engine import Database
from photochangerd.db.ingest_context import IngestContext
from photochangerd.jobs.activity import ActivityLog
from photochangerd.jobs.admission import Admission
from photochangerd.jobs.service import JobService
from photochangerd.media.cleaner import Cleaner
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.provider_media import ProviderMedia
from photochangerd.media.store import MediaStore
from photochangerd.metrics import Metrics
from photochangerd.providers.keys import ProviderKeys
from photochangerd.web.sessions import ConsoleSessions


@dataclass(slots=True)
class Intake:
    """Whether new ingests are accepted (closed during graceful shutdown)."""

    open: bool = True


@dataclass(slots=True)
class AppContext:
    config: Config
    db: Database
    store: MediaStore
    jobs: JobService
    images: ImageWorkers
    admission: Admission
    activity: ActivityLog
    ingest_passwords: IngestPasswordChecker
    clock: WallClock
    tokens: TokenService
    secrets: SecretBox
    keys: ProviderKeys
    cleaner: Cleaner
    provider_media: ProviderMedia
    metrics: Metrics
    purge_requests: trio.MemorySendChannel[str]
    ingest_context: IngestContext
    sessions: ConsoleSessions
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    intake: Intake = field(default_factory=Intake)


EXTENSION_KEY = "photochanger"


def ctx() -> AppContext:
    """The running daemon's context (inside a request)."""
    context: AppContext = current_app.extensions[EXTENSION_KEY]
    return context
