"""Operators (argon2-hashed passwords) and dashboard sessions in an HMAC-signed cookie."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fleet.dashboard.schema import SESSION_KEY_SETTING

if TYPE_CHECKING:
    from fleet.storage import Store

COOKIE = "hg_session"
SESSION_TTL_S = 12 * 3600  # an operator logs in once per shift
OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
MAX_COOKIE_CHARS = 1024

_hasher = PasswordHasher()
# verified against when the name is unknown, so a wrong name costs the same time as a wrong password
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class OperatorError(ValueError):
    """An operator could not be added; the message says why."""


@dataclass(frozen=True)
class Session:
    operator: str
    expires: int
    cookie: str  # the signed value, from which the CSRF token is derived


def add_operator(store: Store, name: str, password: str, now: str) -> None:
    if not OPERATOR_NAME.fullmatch(name):
        raise OperatorError(f"operator name {name!r} must match {OPERATOR_NAME.pattern}")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise OperatorError(f"the password must have {MIN_PASSWORD_CHARS} to "
                            f"{MAX_PASSWORD_CHARS} characters")
    digest = _hasher.hash(password)
    with store.db.transaction() as tx:
        inserted = tx.execute("INSERT INTO operators (name, password_hash, created_at) "
                              "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                              (name, digest, now)).rowcount
    if inserted != 1:
        raise OperatorError(f"operator {name!r} exists")


def check_password(store: Store, name: str, password: str) -> bool:
    if len(name) > 64 or len(password) > MAX_PASSWORD_CHARS:
        return False
    with store.db.transaction(readonly=True) as tx:
        row = tx.execute("SELECT password_hash FROM operators WHERE name = ?", (name,)).fetchone()
    try:
        return _hasher.verify(row[0] if row else _DUMMY_HASH, password) and row is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def operator_exists(store: Store, name: str) -> bool:
    with store.db.transaction(readonly=True) as tx:
        return tx.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone() is not None


class SessionSigner:
    """Cookie value: base64url(JSON {"o": operator, "e": expiry}) "." hex HMAC-SHA256. The key
    lives in the database, so every server process of a fleet accepts the same cookies."""

    def __init__(self, store: Store) -> None:
        with store.db.transaction(readonly=True) as tx:
            row = tx.execute("SELECT value FROM settings WHERE name = ?",
                             (SESSION_KEY_SETTING,)).fetchone()
        if row is None:
            raise RuntimeError("dashboard session key missing: database not migrated")
        self._key = bytes.fromhex(row[0])

    def issue(self, operator: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_TTL_S)
        payload = base64.urlsafe_b64encode(json.dumps({"o": operator, "e": expires},
                                                      separators=(",", ":")).encode()).decode()
        return payload + "." + self._mac(payload)

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode()))
            operator, expires = str(data["o"]), int(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (now if now is not None else time.time()):
            return None
        return Session(operator, expires, cookie)

    def csrf(self, session: Session) -> str:
        """A form token bound to the session: a cross-site form cannot know it."""
        return self._mac("csrf:" + session.cookie)[:32]

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
