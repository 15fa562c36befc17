"""Operator page passwords: scrypt hashes in settings, never the password itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**14, 8, 1  # scrypt cost: about 50 ms on a Raspberry Pi 4, 16 MB of memory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """`scrypt:N:r:p:salt:hash` (no '$', so that .env files take it as it is)."""
    if len(password) < 10:
        raise ValueError("use at least 10 characters for the operator page password")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=64 * 1024 * 1024)
    return f"scrypt:{N}:{R}:{P}:{_b64(salt)}:{_b64(digest)}"


def check_format(stored: str) -> str:
    """The stored hash if it is one this module made; ValueError otherwise."""
    parts = stored.split(":")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
        raise ValueError("expected a hash made by `esus dr hash-password` (scrypt:...), not a password")
    return stored


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = check_format(stored).split(":")
    expected = _unb64(digest)
    got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                         maxmem=64 * 1024 * 1024, dklen=len(expected))
    return hmac.compare_digest(got, expected)
