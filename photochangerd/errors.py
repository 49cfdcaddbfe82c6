"""The daemon's one exception tree: everything it raises on purpose is a :class:`PhotoChangerError`.

::

    PhotoChangerError
    ├── ApiError                      an answer: status + failure_reason → the JSON error body
    │                                 (http/errors.py; its subclasses are drawn there)
    ├── ProviderError                 the provider could not produce an image → job provider_error
    │   ├── ProviderRejected          said no / broke / returned no image           → 502
    │   │   └── ResponseTooLarge      the vendor's answer is over our cap
    │   │                             (providers/vendor_http.py)
    │   └── ProviderUnavailable       temporarily unavailable (quota, 503)          → 503
    ├── DatabaseUnavailable           the database cannot be reached right now      → 503
    │                                 (db/engine.py)
    ├── ObjectStoreUnavailable        the S3 bucket cannot be used right now        → 503
    │                                 (media/objects.py)
    ├── UnsupportedImage, ValueError  not a JPEG/PNG/WebP we accept                 → 415
    │                                 (media/images.py)
    └── StartupError                  the daemon cannot start: one line, exit status 1
        ├── ConfigError, ValueError        a setting is wrong (config.py)
        ├── CredentialError, ValueError    a systemd credential is unusable (credentials.py)
        ├── DataDirInUse                   another process holds the data dir (data_dir_lock.py)
        ├── DataDirUnusable                the data dir cannot be created or written (same)
        └── CannotListen                   a bind address cannot be bound (http/listen.py)

The provider branch is defined here (``photochangerd.providers.base`` re-exports it for the
drivers) so that code handing inputs to a provider, such as the media publisher, need not import
the providers package; the other classes live beside the code that raises them.
"""

from __future__ import annotations


class PhotoChangerError(Exception):
    """Root of the daemon's own exceptions; ``str()`` is a short, secret-free description."""


class StartupError(PhotoChangerError):
    """The daemon cannot start (configuration, credentials, data dir, listening sockets)."""


class ProviderError(PhotoChangerError):
    """Base of provider failures; ``str()`` is a short, secret-free description."""

    http_status = 502


class ProviderRejected(ProviderError):
    """The provider refused or failed the request (retrying will not help)."""


class ProviderUnavailable(ProviderError):
    """The provider is temporarily unavailable (retries within the deadline did not help)."""

    http_status = 503
