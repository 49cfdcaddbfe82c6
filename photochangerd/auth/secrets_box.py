"""Provider API keys at rest: AES-256-GCM with the instance key (``<data>/keys/secrets.key``).

Each value gets a fresh 96-bit nonce; the provider name is authenticated data, so a ciphertext
copied to another provider's row does not decrypt.

cryptography is imported when a key is first encrypted or decrypted: its Rust bindings are
≈ 6 MB of resident memory that a daemon whose keys come from the environment (or that has not
run a cloud job yet) does not need.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted (wrong key file, tampered row)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes (base64 in config)")
        self._key = key
        self._cipher: AESGCM | None = None

    def _aead(self) -> AESGCM:
        if self._cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._cipher = AESGCM(self._key)
        return self._cipher

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead().encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            return (
                self._aead().decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
            ).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretDecryptionError(context) from exc
