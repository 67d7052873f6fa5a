"""Status code trust: the issuer keys of `HG1:` codes and records, and the cache of signed records."""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from firmware.credentials.status.records import StatusIssuerKey, StatusRecordCache
from firmware.credentials.trust_json import read_trust_json, synced_at
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import PinnedKeys

__all__ = ["StatusTrust", "load_trust", "ISSUERS_FILE", "RECORDS_FILE", "RECORDS_SYNC_FILE"]

log = logging.getLogger(__name__)

ISSUERS_FILE = "status-issuers.json"
RECORDS_FILE = "status-records.sqlite"
RECORDS_SYNC_FILE = "status-records.json"
DEFAULT_MAX_CACHE_AGE = timedelta(hours=24)


@dataclass
class StatusTrust:
    """Keys trusted for status codes and records, the record cache and its maximum age."""

    keys: dict[bytes, StatusIssuerKey] = field(default_factory=dict)
    cache: StatusRecordCache | None = None
    max_cache_age: timedelta = DEFAULT_MAX_CACHE_AGE
    code_max_age: timedelta | None = None
    problems: list[str] = field(default_factory=list)  # what loading skipped, for the operator


def load_trust(directory: str | Path, pinned_keys: PinnedKeys = None) -> StatusTrust | None:
    """Read `status-issuers.json` and open `status-records.sqlite`; None without the issuers file.

    status-issuers.json: {"max_cache_age_seconds": 86400, "code_max_age_seconds": null,
    "keys": [{"issuer": "...", "kid": "<base64url>", "public_key_pem": "-----BEGIN..."}]}
    """
    base = Path(directory)
    path = base / ISSUERS_FILE
    if not path.is_file():
        return None
    doc = read_trust_json(path, pinned_keys)  # raw JSON or a checked fleet envelope's content
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError(f"{ISSUERS_FILE}: expected an object with a keys list")
    keys: dict[bytes, StatusIssuerKey] = {}
    problems: list[str] = []
    for index, entry in enumerate(doc["keys"]):
        try:  # a bad key is skipped alone: its issuer's codes are denied, the others are not
            kid, key = _parse_key(entry, index)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # binascii.Error: ValueError
            problems.append(f"skipped: {exc}")
            continue
        keys[kid] = key
    trust = StatusTrust(keys=keys, problems=problems)
    trust.max_cache_age = timedelta(seconds=_seconds(doc, "max_cache_age_seconds", 86400))
    code_age = doc.get("code_max_age_seconds")
    trust.code_max_age = None if code_age is None else timedelta(seconds=_seconds(doc, "code_max_age_seconds", 0))
    trust.cache = StatusRecordCache(keys, base / RECORDS_FILE)
    trust.problems += _apply_synced_records(base, trust.cache, pinned_keys)
    return trust


def _apply_synced_records(base: Path, cache: StatusRecordCache, pinned_keys: PinnedKeys) -> list[str]:
    """Fold the synced `status-records.json` (fleet item "status-records") into the cache.

    Its content is {"records": [base64 COSE record, ...], "complete": true|false}; every record
    is verified by the cache. The sync time is when the fleet last confirmed the item; a
    partial sync with a refused record keeps the old sync time (the cache then turns stale
    rather than vouch for records that a refused one may supersede). Returns the problems.
    """
    path = base / RECORDS_SYNC_FILE
    if not path.is_file():
        return []
    try:
        content = read_trust_json(path, pinned_keys)
    except ValueError as exc:  # also an envelope that fails its check
        log.warning("%s", exc)
        content = None
    records = content.get("records") if isinstance(content, dict) else None
    if not isinstance(content, dict) or not isinstance(records, list):
        # Keep the verified cache as it is (it turns stale by itself); never fail the trust load.
        log.warning("%s: expected an object with a records list; ignored", RECORDS_SYNC_FILE)
        return [f"{RECORDS_SYNC_FILE} ignored: unusable (the cache turns stale)"]
    when = synced_at(base, RECORDS_SYNC_FILE.removesuffix(".json"))
    if when is None or (cache.synced_at is not None and when <= cache.synced_at):
        return []  # nothing newer than what the cache already holds
    complete = content.get("complete") is True
    # An undecodable item counts as a refused record (b"" never verifies).
    blobs = [_b64(item) or b"" for item in records]
    report = cache.apply_sync(blobs, when, replace_all=complete, hold_time_on_refusal=True)
    if not report.refused:
        return []
    log.warning("status records: %d of %d refused", report.refused, len(records))
    held = "" if complete else "; the cache's sync time is kept, so it turns stale"
    return [f"{RECORDS_SYNC_FILE}: {report.refused} of {len(records)} records refused{held}"]


def _b64(item: Decoded) -> bytes | None:
    if not isinstance(item, str):
        return None
    try:
        return base64.b64decode(item, validate=True)
    except ValueError:
        return None


def _seconds(doc: dict[str, Decoded], name: str, default: int) -> int:
    value = doc.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{ISSUERS_FILE}: {name} must be a positive integer")
    return value


def _parse_key(entry: Decoded, index: int) -> tuple[bytes, StatusIssuerKey]:
    where = f"{ISSUERS_FILE}: keys[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    issuer, kid_text, pem = entry.get("issuer"), entry.get("kid"), entry.get("public_key_pem")
    if not isinstance(issuer, str) or not isinstance(kid_text, str) or not isinstance(pem, str):
        raise ValueError(f"{where} needs issuer, kid and public_key_pem strings")
    kid = base64.urlsafe_b64decode(kid_text + "=" * (-len(kid_text) % 4))
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return kid, StatusIssuerKey(issuer, key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return kid, StatusIssuerKey(issuer, key)
    raise ValueError(f"{where}: only P-256 (ES256) and Ed25519 (EdDSA) keys are supported")
