"""pcctl's errors, each with the process exit code it ends in.

::

    PcctlError                      exit 1   anything that went wrong
    ├── Unreachable                 exit 1   no HTTP answer (refused, DNS, timeout)
    ├── ApiFailure                  exit 1   the server answered with the JSON error shape
    │   ├── AuthFailure             exit 3   401: not logged in, session expired, wrong password
    │   ├── NotFound                exit 4   404: unknown slot, job, template, result
    │   ├── Conflict                exit 1   409: version mismatch, template still in use
    │   └── Invalid                 exit 1   422: per-field messages in ``errors``
    ├── NotLoggedIn                 exit 3   no token stored and none in $PCCTL_TOKEN (the
    │                                        server answers: else Unreachable)
    └── LocalInvalid                exit 1   a document or flag value failed local validation

Usage errors are click's own (exit 2).  HTTP failures are translated once, in
:mod:`pcctl.client`, with ``raise … from`` keeping the cause.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4


class PcctlError(Exception):
    """An error that ends the command with :attr:`exit_code` and a one-line message."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Unreachable(PcctlError):
    """The server did not answer at all."""


class ApiFailure(PcctlError):
    """The server answered with an error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str | None,
        details: str | None = None,
        errors: dict[str, str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.details = details
        self.errors = errors or {}


class AuthFailure(ApiFailure):
    exit_code = EXIT_AUTH


class NotFound(ApiFailure):
    exit_code = EXIT_NOT_FOUND


class Conflict(ApiFailure):
    pass


class Invalid(ApiFailure):
    pass


class NotLoggedIn(PcctlError):
    exit_code = EXIT_AUTH


class BadFlag(PcctlError):
    """A flag's value pcctl cannot read (exit 2, as click's own usage errors)."""

    exit_code = EXIT_USAGE


class LocalInvalid(PcctlError):
    """Validation that pcctl did itself before asking the server."""

    def __init__(
        self, errors: dict[str, str], message: str = "invalid values", *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.errors = errors
