"""Login rate limiting: per-account and per-address failure counts with backoff, bounded."""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

@dataclass(frozen=True)
class LoginLimits:
    account_free_failures: int = 5  # failed logins of one name before backoff starts
    address_free_failures: int = 20  # from one client address (or IPv6 /64), any names
    first_backoff_s: float = 1.0  # then doubled with every further failure ...
    max_backoff_s: float = 900.0  # ... up to this (15 min)
    forget_after_s: float = 3600.0  # an entry idle this long past its backoff is dropped
    max_entries: int = 4096  # per table (accounts, addresses): memory never grows past this


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class _Table:
    """Failure counts by key, at most `max_entries` of them plus one overflow entry: a key
    that finds the table full (after idle entries are dropped) shares the overflow entry, so
    spraying names or addresses never grows memory and never escapes the limit."""

    def __init__(self, free_failures: int, limits: LoginLimits) -> None:
        self.free_failures = free_failures
        self.limits = limits
        self.entries: dict[str, _Entry] = {}
        self.overflow = _Entry()
        self._pruned_at = -math.inf

    def find(self, key: str, now: float, create: bool) -> _Entry | None:
        entry = self.entries.get(key)
        if entry is not None and self._idle(entry, now):  # old failures are forgiven
            entry = self.entries[key] = _Entry()
        if entry is not None:
            return entry
        if len(self.entries) >= self.limits.max_entries:
            self._forget_idle(now)
        if len(self.entries) >= self.limits.max_entries:
            return self.overflow
        if not create:
            return None
        return self.entries.setdefault(key, _Entry())

    def wait_s(self, key: str, now: float) -> float:
        entry = self.find(key, now, create=False)
        return max(0.0, entry.blocked_until - now) if entry is not None else 0.0

    def count_attempt(self, key: str, now: float) -> None:
        entry = self.find(key, now, create=True)
        assert entry is not None
        entry.failures += 1
        entry.last = now
        over = entry.failures - self.free_failures
        if over >= 0:
            backoff = self.limits.first_backoff_s * 2.0 ** min(over, 32)
            entry.blocked_until = now + min(backoff, self.limits.max_backoff_s)

    def _forget_idle(self, now: float) -> None:
        if now - self._pruned_at < 1.0:  # a full table is scanned at most once a second
            return
        self._pruned_at = now
        for key in [key for key, entry in self.entries.items() if self._idle(entry, now)]:
            del self.entries[key]
        if self._idle(self.overflow, now):
            self.overflow = _Entry()

    def _idle(self, entry: _Entry, now: float) -> bool:
        return now - max(entry.last, entry.blocked_until) > self.limits.forget_after_s


class LoginLimiter:
    """Every login attempt counts as a failure when it starts (so parallel guesses cannot all
    slip in before the first one fails); a success takes its count back. While a name or an
    address is backing off, its attempts are refused before the password is checked."""

    def __init__(self, limits: LoginLimits = LoginLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts = _Table(limits.account_free_failures, limits)
        self._addresses = _Table(limits.address_free_failures, limits)

    def begin(self, name: str, address: str) -> int:
        """0: go ahead and check the password (the attempt is counted); else the seconds to
        wait (Retry-After), and nothing is counted."""
        account, client = "a:" + name[:64], address_key(address)
        with self._lock:
            now = self._clock()
            wait = max(self._accounts.wait_s(account, now), self._addresses.wait_s(client, now))
            if wait > 0:
                return max(1, math.ceil(wait))
            self._accounts.count_attempt(account, now)
            self._addresses.count_attempt(client, now)
            return 0

    def succeeded(self, name: str, address: str) -> None:
        """The password was right: the account starts afresh, the address gets its try back."""
        with self._lock:
            self._accounts.entries.pop("a:" + name[:64], None)
            entry = self._addresses.entries.get(address_key(address))
            if entry is not None:
                entry.failures = max(0, entry.failures - 1)
                if entry.failures < self._addresses.free_failures:
                    entry.blocked_until = 0.0

    def sizes(self) -> tuple[int, int]:
        """Entries held (accounts, addresses), the overflow entry not counted."""
        with self._lock:
            return len(self._accounts.entries), len(self._addresses.entries)


def address_key(address: str) -> str:
    """IPv4 as is; IPv6 by its /64, because one client commonly holds a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "h:" + address[:64]
    if ip.version == 6:
        return "h:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "h:" + str(ip)
