"""What the HTTP layer gets from the root nursery: narrow handles, never the nursery itself.

The daemon builds one :class:`AppContext` (the composition root, :mod:`photochangerd.app`);
routes never see it.  :func:`photochangerd.http.app.create_quart_app` splits it into three
role-shaped handles, each holding only what its group of routes uses:

- :class:`BoothHandles` — :func:`booth`: the ingest pipeline (``/ingest``, the booth fast path
  in :mod:`photochangerd.http.booth`, and the admins' test run): slot and settings loading,
  the ingest password check, admission, the job service, the spool;
- :class:`PublicHandles` — :func:`public`: unauthenticated reads (public result links,
  provider-media links, the guest page, health and metrics).  No secrets box, token service,
  provider keys or ingest password checker, and not even the :class:`Config` (which carries
  ``jwt_secret`` and ``secret_key``): only a function answering the public base URL;
- :class:`AdminHandles` — :func:`admin`: the admin REST API and the web console: sign-in
  (tokens, sessions, throttle), settings (secrets box, provider keys), media, cleanup, purge.
  Its :attr:`AdminHandles.booth` is the booth's handle, given explicitly for the test run.

``tests/test_handles.py`` keeps the routes off :class:`AppContext` and the secrets off the
public handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

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
from photochangerd.media.renditions import DisplayRenditions
from photochangerd.media.store import MediaStore
from photochangerd.metrics import Metrics
from photochangerd.providers.keys import ProviderKeys
from photochangerd.web.sessions import ConsoleSessions


@dataclass(slots=True)
class Intake:
    """Whether new ingests are accepted (closed during graceful shutdown)."""

    open: bool = True


@dataclass(frozen=True, slots=True)
class BoothHandles:
    """The ingest pipeline (:func:`photochangerd.http.ingest.handle_ingest`)."""

    config: Config  # upload and pixel limits, the public base URL of the answer's links
    intake: Intake
    ingest_context: IngestContext  # the slot and runtime settings, per request
    ingest_passwords: IngestPasswordChecker
    db: Database  # the test run's template bindings
    store: MediaStore  # the upload spool, the result file
    images: ImageWorkers
    admission: Admission
    jobs: JobService
    activity: ActivityLog
    clock: WallClock


@dataclass(frozen=True, slots=True)
class PublicHandles:
    """Unauthenticated reads: public links, the guest page, health, metrics."""

    # Config.effective_public_base_url, read per request as before (a wildcard bind follows
    # the LAN address), without the rest of the Config.
    public_base_url: Callable[[], str]
    db: Database
    store: MediaStore
    images: ImageWorkers
    renditions: DisplayRenditions  # the guest page's pictures
    clock: WallClock
    intake: Intake  # /readyz answers 503 while shutting down
    metrics: Metrics
    instance_id: str  # named by /readyz


@dataclass(frozen=True, slots=True)
class AdminHandles:
    """The admin REST API and the web console."""

    config: Config
    db: Database
    store: MediaStore
    images: ImageWorkers
    clock: WallClock
    jobs: JobService  # the runtime settings a settings change updates
    tokens: TokenService
    sessions: ConsoleSessions
    throttle: LoginThrottle
    secrets: SecretBox
    keys: ProviderKeys
    cleaner: Cleaner
    provider_media: ProviderMedia
    purge_requests: trio.MemorySendChannel[str]
    booth: BoothHandles  # the test run goes through the ingest pipeline


@dataclass(frozen=True, slots=True)
class Handles:
    """What the Quart app keeps (``app.extensions[EXTENSION_KEY]``)."""

    booth: BoothHandles
    public: PublicHandles
    admin: AdminHandles


@dataclass(slots=True)
class AppContext:
    """Everything the daemon built (the composition root, :mod:`photochangerd.app`).

    Only the wiring sees it; routes get :meth:`handles`."""

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
    throttle: LoginThrottle
    intake: Intake = field(default_factory=Intake)
    instance_id: str = ""
    renditions: DisplayRenditions = field(default_factory=DisplayRenditions)

    def handles(self) -> Handles:
        booth = BoothHandles(
            config=self.config,
            intake=self.intake,
            ingest_context=self.ingest_context,
            ingest_passwords=self.ingest_passwords,
            db=self.db,
            store=self.store,
            images=self.images,
            admission=self.admission,
            jobs=self.jobs,
            activity=self.activity,
            clock=self.clock,
        )
        public = PublicHandles(
            public_base_url=partial(_public_base_url, self.config),
            db=self.db,
            store=self.store,
            images=self.images,
            renditions=self.renditions,
            clock=self.clock,
            intake=self.intake,
            metrics=self.metrics,
            instance_id=self.instance_id,
        )
        admin = AdminHandles(
            config=self.config,
            db=self.db,
            store=self.store,
            images=self.images,
            clock=self.clock,
            jobs=self.jobs,
            tokens=self.tokens,
            sessions=self.sessions,
            throttle=self.throttle,
            secrets=self.secrets,
            keys=self.keys,
            cleaner=self.cleaner,
            provider_media=self.provider_media,
            purge_requests=self.purge_requests,
            booth=booth,
        )
        return Handles(booth=booth, public=public, admin=admin)


def _public_base_url(config: Config) -> str:
    return config.effective_public_base_url


EXTENSION_KEY = "photochanger"


def _handles() -> Handles:
    handles: Handles = current_app.extensions[EXTENSION_KEY]
    return handles


def booth() -> BoothHandles:
    """The ingest pipeline's handles (inside a request)."""
    return _handles().booth


def public() -> PublicHandles:
    """The public routes' handles (inside a request): no secrets."""
    return _handles().public


def admin() -> AdminHandles:
    """The admin API's and the console's handles (inside a request)."""
    return _handles().admin
