"""Passwords: hashed with argon2id (argon2-cffi), checked off the event loop (a hash takes tens of
milliseconds of CPU by design), and a floor on what a password may be."""
from __future__ import annotations

import asyncio
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MIN_LENGTH", "PasswordError", "check_password_rules", "generate_password", "hash_password",
           "verify_password"]

MIN_LENGTH = 10
_HASHER = PasswordHasher()           # argon2id with the library's (RFC 9106 low-memory) parameters
_dummy: list[str] = []            # a hash checked for an unknown name, made on first use


def _dummy_hash() -> str:
    # An unknown name takes as long to refuse as a wrong password.
    if not _dummy:
        _dummy.append(_HASHER.hash(secrets.token_urlsafe(16)))
    return _dummy[0]


class PasswordError(ValueError):
    pass


def check_password_rules(password: str, username: str = "") -> None:
    """At least ``MIN_LENGTH`` characters, not the user's name, not one character repeated."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > 1024:
        raise PasswordError("a password has at most 1024 characters")
    if username and username.lower() in password.lower():
        raise PasswordError("a password must not contain the user name")
    if len(set(password)) < 4:
        raise PasswordError("a password needs at least 4 different characters")


def generate_password(length: int = 16) -> str:
    """A random password (the demo's users, a reset)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if len(set(password)) >= 4:
            return password


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash (``None``: no such user, checked all the same)."""
    if stored is None:
        await asyncio.to_thread(_verify, _dummy_hash(), password)
        return False
    return await asyncio.to_thread(_verify, stored, password)
