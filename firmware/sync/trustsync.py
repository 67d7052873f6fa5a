"""Kiosk client for fleet trust data: conditional pulls, pinned-key envelope checks, atomic cache.

The envelope format and its check are firmware/protocol/envelope.py; this client adds that the
version of an item never goes backwards, and keeps the verified copies on disk.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Iterable, Sequence

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.fsutil import write_atomic
from firmware.protocol import finite_json
from firmware.protocol.codederror import CodedError
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import (DEFAULT_TRUST_NAMES, TRUST_NAME_PATTERN, EnvelopeError,
                                        verify_envelope)
from firmware.protocol.events import canonical_json
from firmware.protocol.freshness import FRESHNESS_HEADER, confirmed_at
from firmware.protocol.keys import key_id, public_key_b64
from firmware.protocol.request_signing import sign_request
from firmware.statefolder import StateFolder
from firmware.sync.neterror import cannot_reach

log = logging.getLogger("healthgate.trustsync")

MAX_ENVELOPE_BYTES = 64 * 1024 * 1024  # a download larger than this is refused, not buffered
HTTP_TIMEOUT_S = 10.0


class TrustSyncError(CodedError):
    """One failure type; `code` is a stable reason code."""


class RegistrationError(TrustSyncError):
    """Device registration refused or failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, code: str, status: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.status = status


# -- the client --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncOutcome:
    name: str
    status: str  # "updated", "not_modified", "missing" (not published) or "error"
    reason: str | None = None
    version: int | None = None


def _now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


class TrustSync:
    """Pulls the trust items into `cache_dir/<name>.json`, each verified before it is written."""

    def __init__(self, base_url: str, cache_dir: Path, pinned_keys: Iterable[Ed25519PublicKey],
                 device_id: str | None = None, device_key: Ed25519PrivateKey | None = None, *,
                 names: Sequence[str] = DEFAULT_TRUST_NAMES,
                 session: requests.Session | None = None, timeout_s: float = HTTP_TIMEOUT_S,
                 clock: Callable[[], datetime] = _now_utc) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.pinned = list(pinned_keys)
        if not self.pinned:
            raise ValueError("at least one pinned fleet key is needed")
        self.device_id, self.device_key = device_id, device_key
        self.names = tuple(names)
        for name in self.names:
            if not TRUST_NAME_PATTERN.fullmatch(name):
                raise ValueError(f"bad trust item name {name!r}")
        self.session = session or requests.Session()
        self.timeout_s = timeout_s
        self.clock = clock
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._state = self._read_state()

    # state -------------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Decoded]:
        try:
            state = json.loads((self.cache_dir / StateFolder.TRUST_SYNC_STATE).read_text())
            if isinstance(state, dict) and isinstance(state.get("items"), dict):
                return state
        except (OSError, ValueError):
            pass  # missing or damaged: start afresh; cached envelopes are re-verified anyway
        return {"items": {}, "clock_skew_s": None, "skew_measured_at": None}

    def _save_state(self) -> None:
        write_atomic(self.cache_dir / StateFolder.TRUST_SYNC_STATE, canonical_json(self._state))

    def _save_state_quietly(self) -> None:
        """A lost state file only costs a refetch (the envelopes are re-verified from disk)."""
        try:
            self._save_state()
        except OSError as error:
            log.warning("trust sync state not saved: %s", error)

    @property
    def clock_skew_s(self) -> float | None:
        """Server time minus local time, seconds, from the last server answer (None: never)."""
        value = self._state.get("clock_skew_s")
        return None if value is None else float(value)

    def server_now(self) -> datetime:
        """The local clock corrected by the last measured skew."""
        return self.clock() + timedelta(seconds=self.clock_skew_s or 0.0)

    # HTTP --------------------------------------------------------------------------------------
    def _get(self, path: str, headers: dict[str, str]) -> tuple[requests.Response, bytes]:
        if self.device_key is not None and self.device_id is not None:
            headers.update(sign_request(self.device_key, self.device_id, "GET", path, b"",
                                        now=self.server_now()))
        sent = self.clock()
        try:
            with self.session.get(self.base_url + path, headers=headers, timeout=self.timeout_s,
                                  stream=True) as response:
                chunks, total = [], 0
                for chunk in response.iter_content(65536):
                    total += len(chunk)
                    if total > MAX_ENVELOPE_BYTES:
                        raise TrustSyncError("TRUST_TOO_LARGE", path)
                    chunks.append(chunk)
        except requests.RequestException as error:
            raise TrustSyncError("NETWORK_ERROR", cannot_reach(self.base_url, error)) from error
        self._note_date(response.headers.get("Date"), sent, self.clock())
        return response, b"".join(chunks)

    def _note_date(self, date_header: str | None, sent: datetime, received: datetime) -> None:
        """Skew from the Date header (1 s resolution: +0.5 s removes the truncation bias)."""
        if not date_header:
            return
        try:
            server = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            return
        midpoint = sent + (received - sent) / 2
        self._record_skew((server - midpoint).total_seconds() + 0.5, received)

    def _record_skew(self, skew_s: float, at: datetime) -> None:
        self._state["clock_skew_s"] = round(skew_s, 3)
        self._state["skew_measured_at"] = _iso(at)

    def check_time(self) -> float:
        """Ask /v1/time; records and returns the skew (ms resolution from the body's `now`)."""
        sent = self.clock()
        response, body = self._get("/v1/time", {})
        received = self.clock()
        if response.status_code == 200:
            try:
                server = datetime.fromisoformat(finite_json.loads(body)["now"])
                midpoint = sent + (received - sent) / 2
                self._record_skew((server - midpoint).total_seconds(), received)
            except (ValueError, KeyError, TypeError):
                pass  # the Date header measurement from _get stands
        self._save_state_quietly()
        skew = self.clock_skew_s
        if skew is None:
            raise TrustSyncError("TIME_UNAVAILABLE", f"HTTP {response.status_code}")
        return skew

    # sync --------------------------------------------------------------------------------------
    def sync(self, names: Sequence[str] | None = None) -> list[SyncOutcome]:
        """Pull every item once; a failure of one item never stops the others."""
        try:
            self.check_time()  # first, so signed requests carry a corrected timestamp
        except TrustSyncError:
            pass
        return [self.sync_item(name) for name in (names or self.names)]

    def sync_item(self, name: str) -> SyncOutcome:
        try:
            return self._sync_item(name)
        except (TrustSyncError, EnvelopeError) as error:
            return SyncOutcome(name, "error", error.code)
        except OSError:
            return SyncOutcome(name, "error", "CACHE_WRITE_FAILED")  # disk full, read-only...
        finally:
            self._save_state_quietly()

    def _sync_item(self, name: str) -> SyncOutcome:
        if not TRUST_NAME_PATTERN.fullmatch(name):
            raise TrustSyncError("TRUST_BAD_NAME", name)
        item = self._state["items"].setdefault(name, {})
        cached = self._load_cached(name)
        headers = {"Accept": "application/json"}
        if cached is not None and item.get("etag"):
            headers["If-None-Match"] = item["etag"]
        response, body = self._get(f"/v1/trust/{name}", headers)
        if response.status_code == 304 and cached is not None:
            # An unsigned 304 proves nothing by itself: the age comes from a signed statement
            # about our copy's bytes, or from the copy's issued_at (docs/fleet-api.md).
            self._confirm(item, response, cached, (self.cache_dir / f"{name}.json").read_bytes())
            return SyncOutcome(name, "not_modified", None, cached["version"])
        if response.status_code == 404:
            return SyncOutcome(name, "missing", "TRUST_NOT_PUBLISHED")
        if response.status_code != 200:
            raise TrustSyncError(_http_reason(response.status_code, body))
        envelope = verify_envelope(body, self.pinned, expected_name=name)
        if cached is not None and (envelope["version"] < cached["version"] or (
                envelope["version"] == cached["version"] and envelope != cached)):
            raise TrustSyncError("TRUST_ROLLBACK",
                                 f"offered v{envelope['version']}, have v{cached['version']}")
        write_atomic(self.cache_dir / f"{name}.json", body)
        item.update({"etag": response.headers.get("ETag"), "version": envelope["version"],
                     "issued_at": envelope["issued_at"], "fetched_at": _iso(self.clock())})
        self._confirm(item, response, envelope, body)  # a replayed 200 is no fresher either
        return SyncOutcome(name, "updated", None, envelope["version"])

    def _confirm(self, item: dict[str, Decoded], response: requests.Response,
                 envelope: dict[str, Decoded], raw: bytes) -> None:
        """Set the item's `checked_at` from signed data only (freshness.confirmed_at)."""
        pinned = {key_id(key): key for key in self.pinned}
        when, source = confirmed_at(response.headers.get(FRESHNESS_HEADER), pinned, envelope,
                                    raw, self.clock())
        item.update({"checked_at": _iso(when), "checked_by": source})

    # reading the cache -------------------------------------------------------------------------
    def _load_cached(self, name: str) -> dict[str, Decoded] | None:
        try:
            raw = (self.cache_dir / f"{name}.json").read_bytes()
        except FileNotFoundError:
            return None
        try:
            return verify_envelope(raw, self.pinned, expected_name=name)
        except EnvelopeError:
            return None  # a damaged or foreign file is never used; the next sync replaces it

    def load(self, name: str) -> dict[str, Decoded] | None:
        """The verified cached envelope of `name` (re-checked from disk), or None."""
        return self._load_cached(name)

    def content(self, name: str) -> Decoded:
        envelope = self._load_cached(name)
        return None if envelope is None else envelope["content"]

    def age(self, name: str, now: datetime | None = None) -> timedelta | None:
        """Time since the server last confirmed (200 or 304) that our copy is current."""
        checked = self._state["items"].get(name, {}).get("checked_at")
        if checked is None or self._load_cached(name) is None:
            return None
        return (now or self.clock()) - datetime.fromisoformat(checked)

    def is_fresh(self, name: str, max_age: timedelta, now: datetime | None = None) -> bool:
        """The max-age policy: False when never fetched or older than `max_age`."""
        age = self.age(name, now)
        return age is not None and age <= max_age


def _http_reason(status: int, body: bytes) -> str:
    try:
        code = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        code = None
    if status >= 500:
        return "SERVER_ERROR"
    return f"HTTP_{status}" + (f"_{code}" if isinstance(code, str) else "")


def register_device(base_url: str, token: str, device_id: str, key: Ed25519PrivateKey, *,
                    session: requests.Session | None = None,
                    timeout_s: float = HTTP_TIMEOUT_S) -> str:
    """Register the device's public key with a one-time enrolment token; returns the device id.
    Raises RegistrationError (code from the server, e.g. TOKEN_INVALID, DEVICE_KEY_CONFLICT)."""
    payload = {"token": token, "device_id": device_id, "public_key": public_key_b64(key)}
    http = session or requests.Session()
    try:
        response = http.post(base_url.rstrip("/") + "/v1/devices/register", json=payload,
                             timeout=timeout_s)
    except requests.RequestException as error:
        raise RegistrationError("NETWORK_ERROR", 0, cannot_reach(base_url, error)) from error
    if response.status_code in (200, 201):
        return str(response.json().get("device_id", device_id))
    try:
        code = str(response.json().get("error", f"HTTP_{response.status_code}"))
    except (ValueError, AttributeError):
        code = f"HTTP_{response.status_code}"
    raise RegistrationError(code, response.status_code)
