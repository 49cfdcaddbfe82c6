"""Admin access tokens: HS256 JWTs with ``sub``, ``scope``, ``iat``, ``exp``, ``iss``, ``aud``
and ``jti`` (the id ``POST /api/logout`` revokes on every instance: ``revoked_token``).  A token
issued with a password since set again is refused (``pwv``: the version of the password, the
``updated_at`` read at sign-in).

PyJWT accepts a token without ``exp`` unless told otherwise and only warns on short keys
(docs/stack-traps.md, "PyJWT: exp is not required by default"): decoding pins the algorithm,
requires every claim, checks issuer and audience, and enforces the minimum key length.

PyJWT is imported on first use: it loads cryptography's X.509 and asymmetric-key modules
(≈ 10 MB of resident memory) that a daemon serving only booths never needs.
"""

from __future__ import annotations

import importlib
import secrets
import time
from dataclasses import dataclass
from types import ModuleType

ALGORITHM = "HS256"
ISSUER = "photochangerd"
AUDIENCE = "photochanger-admin"
SCOPE = "admin"
LEEWAY_SECONDS = 5


def _jwt() -> ModuleType:
    return importlib.import_module("jwt")


class InvalidToken(Exception):
    """Missing, malformed, tampered, expired or out-of-scope token (answered 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    expires_at: int
    token_id: str
    issued_at: float
    password_version: float | None  # the password it was issued with (``pwv``); None: older


class TokenService:
    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        if len(key) < 32:
            raise ValueError("the JWT key must be at least 32 bytes")
        self._key = key
        self.ttl_seconds = ttl_seconds

    def issue(
        self, username: str, now: float | None = None, password_version: float | None = None
    ) -> str:
        # ``iat`` to the millisecond (RFC 7519 allows a fraction): compared with the moment the
        # user's password last changed, a whole second would refuse a sign-in made just after
        # the change, or accept one made just before it.
        issued = round(now if now is not None else time.time(), 3)
        claims = {
            "sub": username,
            "scope": SCOPE,
            "iat": issued,
            "exp": int(issued) + self.ttl_seconds,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": secrets.token_urlsafe(16),
        }
        if password_version is not None:
            claims["pwv"] = password_version
        jwt = _jwt()
        return str(jwt.encode(claims, self._key, algorithm=ALGORITHM))

    def verify(self, token: str) -> Principal:
        jwt = _jwt()
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud", "jti"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        if claims.get("scope") != SCOPE or not isinstance(claims.get("sub"), str):
            raise InvalidToken("wrong scope")
        if not isinstance(claims.get("jti"), str):
            raise InvalidToken("no token id")
        version = claims.get("pwv")
        if version is not None and not isinstance(version, int | float):
            raise InvalidToken("bad password version")
        return Principal(
            claims["sub"],
            int(claims["exp"]),
            claims["jti"],
            float(claims["iat"]),
            None if version is None else float(version),
        )
