"""Load a TrustStore from a folder of cached trust files (as the sync client leaves them).

Layout (every file optional; a missing part means "trust none" for that part):
  dcc-signers.json          gateway-style signer list, with its detached signature in
  dcc-signers.json.sig      (base64 or raw) by a trust anchor; or a fleet envelope whose content
                            is {"list": base64 of the list bytes, "signature": base64}
  dcc-trust-anchors/        certificates / public keys (PEM or DER) that sign signer lists
  dcc-certs/                signer certificates trusted directly (technician or test setups)
  dcc-rules.json            CertLogic rules (array; raw or enveloped)
  dcc-valuesets.json        value sets: {id: document} or [document, ...] (raw or enveloped)
  dcc-valuesets/            ... or one value-set document per *.json file
  dcc-revocation/           revocation tables (<TYPE>.npy, see dcc/revocation.py)
  dcc-revocation.json       ... or {"UCI": [hex...], "COUNTRYCODEUCI": [...], "SIGNATURE": [...]}
                            (parsed once; its sorted tables are cached in .dcc-revocation-cache/)
  trust-state.json          the sync client's state: when each item was last confirmed
Fleet envelopes ({"name", "content", "sig", ...}) are checked against `pinned_keys`, and refused
without them; plain files (a kiosk without a fleet) are read as they are.

Bad data never stops the load: each part that cannot be used is skipped, named in
`TrustStore.problems`, and fails closed for the issuers it concerns only (the table in
docs/credentials.md, "Bad trust data"); the other parts and formats load as usual.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from firmware.credentials.dcc.revocation import RevocationList, UnusableRevocation
from firmware.credentials.dcc.signer import DccSigner, SignerError
from firmware.credentials.dcc.trustlist import (
    TrustListError,
    decode_signature,
    ingest_signer_list,
    load_anchor,
)
from firmware.credentials.trust import TrustStore
from firmware.credentials.trust_json import TrustFileError, trust_content
from firmware.fsutil import private_umask
from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import PinnedKeys
from firmware.protocol.numericdate import NumericDateError, iso_time
from firmware.statefolder import StateFolder

log = logging.getLogger(__name__)
CERT_SUFFIXES = {".der", ".pem", ".crt", ".cer"}
MAX_FILE_BYTES = 64 * 1024 * 1024
DCC_ITEMS = ("dcc-signers", "dcc-rules", "dcc-valuesets", "dcc-revocation")
REVOCATION_CACHE = ".dcc-revocation-cache"  # sorted tables built from dcc-revocation.json


class TrustDataError(ValueError):
    """A trust file exists but cannot be used; names the file and the problem."""


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise TrustDataError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()


def _unwrap(path: Path, raw: bytes, pinned_keys: PinnedKeys) -> Decoded:
    """The content of a raw JSON file or of a fleet envelope (checked against the pinned keys)."""
    try:
        return trust_content(path, raw, pinned_keys)
    except TrustFileError as exc:
        raise TrustDataError(str(exc)) from None


def load_valuesets(folder: Path) -> dict[str, Decoded]:
    """Value-set documents from a folder of *.json files: valueSetId -> document."""
    valuesets: dict[str, Decoded] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            document = finite_json.loads(_read(path))
        except ValueError:
            continue  # e.g. a licence or index file that is not a value set
        if isinstance(document, dict) and isinstance(document.get("valueSetId"), str):
            valuesets[document["valueSetId"]] = document
    return valuesets


def _valuesets_from(content: Decoded) -> dict[str, Decoded]:
    if isinstance(content, dict) and "valueSetId" not in content:
        return {k: v for k, v in content.items() if isinstance(v, dict)}
    documents = content if isinstance(content, list) else [content]
    return {d["valueSetId"]: d for d in documents
            if isinstance(d, dict) and isinstance(d.get("valueSetId"), str)}


def _anchors(folder: Path, problems: list[str]) -> list[PublicKeyTypes]:
    """Every usable anchor; a bad one is skipped (lists it signed then fail their check)."""
    anchors: list[PublicKeyTypes] = []
    for path in sorted(folder.glob("*")):
        if path.is_file():
            try:
                anchors.append(load_anchor(_read(path)))
            except (TrustListError, TrustDataError, OSError) as exc:
                problems.append(f"dcc-trust-anchors/{path.name} skipped: {exc}")
    return anchors


def _signer_list_bytes(root: Path, pinned_keys: PinnedKeys) -> tuple[bytes, bytes | None]:
    """(exact list bytes, detached signature): a raw list with its .sig file, or an envelope
    whose content is {"list": base64 of the list bytes, "signature": base64}."""
    path = root / "dcc-signers.json"
    raw = _read(path)
    content = _unwrap(path, raw, pinned_keys)
    if isinstance(content, dict) and isinstance(content.get("list"), str):
        try:
            listed = base64.b64decode(content["list"], validate=True)
        except ValueError:
            raise TrustDataError("dcc-signers.json: envelope list is not base64") from None
        signature = content.get("signature")
        return listed, decode_signature(signature) if isinstance(signature, str) else None
    sig_path = root / "dcc-signers.json.sig"
    return raw, decode_signature(_read(sig_path)) if sig_path.exists() else None


def _load_signers(root: Path, store: TrustStore, anchors: list[PublicKeyTypes],
                  pinned_keys: PinnedKeys) -> None:
    """The signer list (a bad entry skips that signer alone; a list that fails its signature
    or cannot be read gives no signers: their DCCs are denied as untrusted) and dcc-certs/."""
    if (root / "dcc-signers.json").exists():
        try:
            listed, signature = _signer_list_bytes(root, pinned_keys)
            report = ingest_signer_list(store, listed, signature, anchors,
                                        datetime.now(timezone.utc))
            store.problems += [f"dcc-signers.json: skipped {problem}" for problem in report.skipped]
        except (TrustListError, TrustDataError, OSError) as exc:
            store.problems.append(f"dcc-signers.json: no signer from this list is trusted: {exc}")
    certs = root / "dcc-certs"
    if not certs.is_dir():
        return
    for cert_path in sorted(certs.iterdir()):
        if cert_path.suffix.lower() not in CERT_SUFFIXES:
            continue
        try:
            raw = _read(cert_path)
            if raw.lstrip().startswith(b"-----BEGIN"):
                raw = x509.load_pem_x509_certificate(raw).public_bytes(serialization.Encoding.DER)
            signer = DccSigner.from_der(raw)
        except (ValueError, SignerError, OSError) as exc:  # TrustDataError is a ValueError
            store.problems.append(f"dcc-certs/{cert_path.name} skipped: {exc}")
            continue
        if signer.constraint_problem is not None:  # readable but not a DSC: skip it alone
            store.problems.append(f"dcc-certs/{cert_path.name} skipped: {signer.constraint_problem}")
            continue
        store.dcc_signers.setdefault(signer.kid, []).append(signer)


def _load_rules(path: Path, store: TrustStore, pinned_keys: PinnedKeys) -> None:
    """Rule by rule: a malformed rule fails closed for its (Type, Country) only; a file that
    cannot be read at all fails every DCC's rules stage closed (dcc/rule_set.py)."""
    from firmware.credentials.dcc.rule_set import ANY, load_rule_set
    try:
        content = _unwrap(path, _read(path), pinned_keys)
    except (TrustDataError, OSError) as exc:
        store.dcc_rules, store.dcc_rules_refused = [], {(ANY, ANY): str(exc)}
        store.problems.append(f"{path.name}: unusable, every DCC is denied: {exc}")
        return
    store.dcc_rules, store.dcc_rules_refused = load_rule_set(content)
    for (kind, country), why in store.dcc_rules_refused.items():
        where = "every DCC" if country == ANY else f"{kind} rules of {country}"
        store.problems.append(f"{path.name}: a rule was refused ({why}); denied: {where}")


def _load_revocation(root: Path, pinned_keys: PinnedKeys) -> RevocationList | None:
    folder = root / "dcc-revocation"
    try:
        if folder.is_dir():
            return RevocationList.load(folder)
        path = root / "dcc-revocation.json"
        if path.exists():
            return _revocation_from_json(root, path, pinned_keys)
    except ValueError as exc:
        raise TrustDataError(f"dcc-revocation: {exc}") from None
    return None


def _revocation_from_json(root: Path, path: Path, pinned_keys: PinnedKeys) -> RevocationList:
    """Parse the JSON list once; later loads memory-map the sorted tables cached beside it."""
    raw = _read(path)
    cache_root = root / REVOCATION_CACHE
    cache = cache_root / hashlib.sha256(raw).hexdigest()[:32]
    if cache.is_dir():
        try:
            return RevocationList.load(cache)
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    revocations = RevocationList.from_json(_unwrap(path, raw, pinned_keys))
    try:
        building = cache_root / f".building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        with private_umask():  # the cache lives in the kiosk's private state folder
            revocations.save(building)
        for old in cache_root.iterdir():  # only the current list's cache is kept
            if old.name != building.name:
                shutil.rmtree(old, ignore_errors=True)
        building.rename(cache)
    except OSError as exc:  # read-only trust folder: use the in-memory list
        log.info("revocation cache not written: %s", type(exc).__name__)
    return revocations


def _updated_at(root: Path, present: Iterable[str]) -> datetime | None:
    """When the oldest loaded DCC item was last confirmed current (conservative for max-age)."""
    stamps: list[datetime] = []
    try:
        state = finite_json.loads((root / StateFolder.TRUST_SYNC_STATE).read_text("utf-8"))
        items = state.get("items", {}) if isinstance(state, dict) else {}
    except (OSError, ValueError):
        items = {}
    for name in present:
        checked = items.get(name, {}).get("checked_at") if isinstance(items.get(name), dict) else None
        try:  # the shared check: text, ISO 8601, naive taken as UTC, within 1970..9999
            stamps.append(iso_time(checked, "checked_at"))
            continue
        except NumericDateError:
            pass
        for candidate in (root / f"{name}.json", root / name):
            if candidate.exists():
                stamps.append(datetime.fromtimestamp(candidate.stat().st_mtime, timezone.utc))
                break
    return min(stamps) if stamps else None


def _load_valuesets(root: Path, store: TrustStore, pinned_keys: PinnedKeys) -> None:
    """Value sets; when unreadable, none (rules that look one up then give OPEN: denied)."""
    path = root / "dcc-valuesets.json"
    try:
        if path.exists():
            store.dcc_valuesets = _valuesets_from(_unwrap(path, _read(path), pinned_keys))
        elif (root / "dcc-valuesets").is_dir():
            store.dcc_valuesets = load_valuesets(root / "dcc-valuesets")
    except (TrustDataError, OSError) as exc:
        store.dcc_valuesets = {}
        store.problems.append(f"dcc-valuesets: unusable, rules using value sets deny: {exc}")


def load_dcc_trust(store: TrustStore, root: Path, pinned_keys: PinnedKeys = None) -> None:
    """The DCC part of a trust folder: signers, rules, value sets, revocation, and `updated_at`
    (when the oldest DCC item was last confirmed). Should anything unforeseen break midway, the
    signers are dropped and every DCC denied: part of the data must never decide alone."""
    try:
        anchors_dir = root / "dcc-trust-anchors"
        anchors = _anchors(anchors_dir, store.problems) if anchors_dir.is_dir() else []
        _load_signers(root, store, anchors, pinned_keys)
        present = [name for name in DCC_ITEMS
                   if (root / f"{name}.json").exists() or (root / name).is_dir()]
        if (root / "dcc-rules.json").exists():
            _load_rules(root / "dcc-rules.json", store, pinned_keys)
        _load_valuesets(root, store, pinned_keys)
        try:
            store.dcc_revocation = _load_revocation(root, pinned_keys)
        except (TrustDataError, OSError) as exc:
            store.dcc_revocation = UnusableRevocation(str(exc))
            store.problems.append(f"{exc}; every DCC is denied (DCC_REVOCATION_UNAVAILABLE)")
        store.updated_at = _updated_at(root, present)
    except Exception:
        store.dcc_signers = {}
        raise


def load_trust_dir(path: str | Path, *, pinned_keys: PinnedKeys = None, country: str | None = None,
                   region: str | None = None) -> TrustStore:
    """A TrustStore from the cached trust files in `path` (TrustDataError when `path` is not a
    folder); what could not be used is in `TrustStore.problems`, failing closed where it applies.

    Every registered format loads its own part; one that fails trusts nothing and names why,
    and the other formats load as usual.
    """
    from firmware.credentials.formats import registered

    root = Path(path)
    if not root.is_dir():
        raise TrustDataError(f"{root}: not a folder")
    store = TrustStore(dcc_country=country, dcc_region=region)
    for fmt in registered():
        try:
            fmt.load_trust(store, root, pinned_keys)
        except Exception as exc:  # one format's data must not stop the others' loading
            store.problems.append(f"{fmt.name}: trust not loaded, its credentials are denied: "
                                  f"{exc or type(exc).__name__}")
    for problem in store.problems:
        log.warning("trust data: %s", problem)
    return store
