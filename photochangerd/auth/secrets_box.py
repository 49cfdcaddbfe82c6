"""Provider API keys at rest: AES-256-GCM with the instance key (``<data>/keys/secrets.key``).

Each value gets a fresh 96-bit nonce; the provider name is authenticated data, so a ciphertext
copied to another provider's row does not decrypt.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted (wrong key file, tampered row)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes (base64 in config)")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        try:
            return self._aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode()
            ).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretDecryptionError(context) from exc
