"""The exception tree drawn in photochangerd/errors.py is the one the code builds."""

from __future__ import annotations

import pytest

from photochangerd.config import ConfigError
from photochangerd.credentials import CredentialError
from photochangerd.data_dir_lock import DataDirInUse, DataDirUnusable
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.errors import (
    PhotoChangerError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    StartupError,
)
from photochangerd.http.errors import ApiError
from photochangerd.http.listen import CannotListen
from photochangerd.media.images import UnsupportedImage
from photochangerd.providers import base
from photochangerd.providers.vendor_http import ResponseTooLarge

BRANCHES = (ApiError, ProviderError, DatabaseUnavailable, UnsupportedImage, StartupError)


@pytest.mark.parametrize("branch", BRANCHES)
def test_every_branch_hangs_from_the_root(branch: type[Exception]) -> None:
    assert branch.__bases__[0] is PhotoChangerError


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (ProviderRejected, ProviderError),
        (ProviderUnavailable, ProviderError),
        (ResponseTooLarge, ProviderRejected),
        (ConfigError, StartupError),
        (CredentialError, StartupError),
        (DataDirInUse, StartupError),
        (DataDirUnusable, StartupError),
        (CannotListen, StartupError),
    ],
)
def test_leaves_sit_on_their_branch(error: type[Exception], parent: type[Exception]) -> None:
    assert error.__bases__[0] is parent


@pytest.mark.parametrize("error", [ConfigError, CredentialError, UnsupportedImage])
def test_value_errors_stay_value_errors(error: type[Exception]) -> None:
    assert issubclass(error, ValueError)


def test_the_driver_interface_re_exports_the_provider_branch() -> None:
    assert (base.ProviderError, base.ProviderRejected, base.ProviderUnavailable) == (
        ProviderError,
        ProviderRejected,
        ProviderUnavailable,
    )
