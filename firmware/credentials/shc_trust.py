"""SMART Health Card trust: issuer keys (cached JWKS or a signed VCI snapshot) and per-key CRLs."""
from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.shc_codec import jwk_thumbprint, public_key_from_jwk
from firmware.credentials.trust_json import TrustFileError, read_trust_json
from firmware.protocol import finite_json
from firmware.protocol.numericdate import NumericDateError, iso_time, numeric_date

log = logging.getLogger(__name__)

# Files this module reads from a trust cache directory (see docs/credentials.md).
ISSUERS_FILE = "shc-issuers.json"
CRL_FILE = "shc-crl.json"
SNAPSHOT_FILE = "vci_snapshot.json"
SNAPSHOT_SIG_FILE = "vci_snapshot.sig"
SNAPSHOT_CERT_FILE = "vci_snapshot.crt"

# SHA-256 fingerprints of the certificates allowed to sign a VCI directory snapshot. Pinned in
# code because a certificate shipped next to the snapshot proves nothing on its own.
VCI_SNAPSHOT_CERT_PINS: frozenset[str] = frozenset(
    {"c3e44e40a20e6d54a5ad247e9ddd07763708cec1aa9acd47a408a3cc28f320fb"}  # CN=vci.org, 2022-2032
)

_RID_RE = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


class ShcTrustError(ValueError):
    """A trust file that cannot be used (bad signature, unpinned certificate, bad JSON)."""


@dataclass(frozen=True)
class ShcKey:
    """One trusted issuer signing key; `crl_version` is the JWK `crlVersion` (None: no CRL)."""

    iss: str
    kid: str
    public_key: ec.EllipticCurvePublicKey
    crl_version: int | None = None


@dataclass
class ShcCrl:
    """A per-key Card Revocation List: rid -> cut-off timestamp (None revokes every card)."""

    kid: str
    ctr: int
    rids: dict[str, float | None] = field(default_factory=dict)

    def revokes(self, rid: str, nbf: float) -> bool:
        """True when a card with this rid and nbf is revoked (cards issued before the cut-off)."""
        if rid not in self.rids:
            return False
        cutoff = self.rids[rid]
        return cutoff is None or nbf < cutoff


def parse_crl(doc: Any) -> ShcCrl:
    """Parse `{kid, method: "rid", ctr, rids: ["rid" | "rid.timestamp", ...]}`."""
    if not isinstance(doc, dict) or doc.get("method") != "rid":
        raise ShcTrustError("CRL is not a `rid` method object")
    kid, rids = doc.get("kid"), doc.get("rids")
    if not isinstance(kid, str) or not isinstance(rids, list):
        raise ShcTrustError("CRL needs a kid and a rids array")
    crl = ShcCrl(kid=kid, ctr=_as_int(doc.get("ctr"), "ctr"))
    for entry in rids:
        if not isinstance(entry, str):
            raise ShcTrustError("CRL rid entries must be strings")
        rid, _, stamp = entry.partition(".")
        if not _RID_RE.match(rid):
            raise ShcTrustError("CRL rid is not base64url of at most 24 characters")
        cutoff = _cutoff(stamp) if stamp else None
        previous = crl.rids.get(rid, 0.0)
        # Several entries for one rid: the widest revocation wins (None = all cards).
        crl.rids[rid] = None if cutoff is None or previous is None else max(previous, cutoff)
    return crl


def _cutoff(stamp: str) -> float:
    """The `.timestamp` of a CRL entry: a NumericDate. float() alone takes "nan" (a cut-off no
    card is before, so nothing is revoked), "inf" and "1e400"."""
    try:
        return float(numeric_date(float(stamp), "CRL rid timestamp"))
    except (ValueError, OverflowError):  # NumericDateError is a ValueError
        raise ShcTrustError("CRL rid timestamp is not a NumericDate") from None


def _as_int(value: Any, name: str) -> int:
    """Counters appear as numbers or numeric strings in the wild."""
    if isinstance(value, bool):
        raise ShcTrustError(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ShcTrustError(f"{name} must be an integer") from None


@dataclass
class ShcTrust:
    """Trusted SHC issuers and their keys, indexed by kid (a kid may appear for several issuers)."""

    keys_by_kid: dict[str, list[ShcKey]] = field(default_factory=dict)
    issuer_names: dict[str, str] = field(default_factory=dict)
    crls: dict[str, ShcCrl] = field(default_factory=dict)
    snapshot_time: datetime | None = None
    problems: list[str] = field(default_factory=list)

    def knows_issuer(self, iss: str) -> bool:
        """Whether any key is trusted for this issuer URL."""
        return iss in self.issuer_names

    def add_jwks(self, iss: str, jwks: Any, name: str | None = None) -> int:
        """Add the signing keys of one issuer's JWKS; returns how many keys were accepted.

        A key is refused (and counted in `problems`) unless it is a public P-256 ES256 signing
        key whose kid is its RFC 7638 thumbprint and whose x5c leaf, if any, holds the same key.
        """
        keys = jwks.get("keys") if isinstance(jwks, dict) else jwks
        if not isinstance(iss, str) or not iss.startswith("https://") or iss.endswith("/"):
            self.problems.append(f"issuer URL {iss!r} is not https:// without a trailing slash")
            return 0
        if not isinstance(keys, list):
            self.problems.append(f"no key list for {iss}")
            return 0
        accepted = 0
        for jwk in keys:
            key = _key_from_jwk(iss, jwk)
            if key is None:
                self.problems.append(f"refused a malformed or mismatched key of {iss}")
                continue
            self.keys_by_kid.setdefault(key.kid, []).append(key)
            accepted += 1
        self.issuer_names.setdefault(iss, name or iss)
        return accepted

    def add_crl(self, doc: Any) -> None:
        """Add one CRL; a newer counter replaces an older list for the same kid."""
        crl = parse_crl(doc)
        current = self.crls.get(crl.kid)
        if current is None or crl.ctr >= current.ctr:
            self.crls[crl.kid] = crl

    def add_issuer_info(self, info: list[Any]) -> None:
        """Add `issuerInfo` entries (VCI snapshot shape): issuer, keys and optional crls."""
        for entry in info:
            if not isinstance(entry, dict) or not isinstance(entry.get("issuer"), dict):
                self.problems.append("issuerInfo entry without an issuer")
                continue
            issuer = entry["issuer"]
            self.add_jwks(issuer.get("iss"), entry.get("keys"), issuer.get("name"))
            for crl in entry.get("crls") or []:
                try:
                    self.add_crl(crl)
                except ShcTrustError as exc:
                    self.problems.append(f"CRL refused: {exc}")


def _key_from_jwk(iss: str, jwk: Any) -> ShcKey | None:
    """Validate one JWK as the SHC spec requires; None when it must not be trusted."""
    if not isinstance(jwk, dict):
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "ES256") != "ES256":
        return None
    try:
        public_key = public_key_from_jwk(jwk)
        if jwk.get("kid") != jwk_thumbprint(jwk):
            return None
        if "x5c" in jwk and not _x5c_matches(jwk["x5c"], public_key):
            return None
        crl_version = None if "crlVersion" not in jwk else _as_int(jwk["crlVersion"], "crlVersion")
    except (ValueError, TypeError, KeyError):
        return None
    return ShcKey(iss=iss, kid=jwk["kid"], public_key=public_key, crl_version=crl_version)


def _x5c_matches(x5c: Any, public_key: ec.EllipticCurvePublicKey) -> bool:
    """The first x5c certificate must carry the JWK's public key (SHC spec, Certificates)."""
    if not isinstance(x5c, list) or not x5c or not isinstance(x5c[0], str):
        return False
    try:
        leaf = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
    except ValueError:
        return False
    return leaf.public_key() == public_key


def verify_vci_snapshot(
    snapshot: bytes, signature: bytes, cert_pem: bytes, pins: frozenset[str] = VCI_SNAPSHOT_CERT_PINS
) -> dict[str, Any]:
    """Check the snapshot's ECDSA SHA-512 signature by a pinned certificate; returns its JSON."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ShcTrustError("VCI snapshot certificate is not PEM") from None
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    if fingerprint not in pins:
        raise ShcTrustError(f"VCI snapshot certificate {fingerprint[:16]}... is not pinned")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ShcTrustError("VCI snapshot certificate key is not ECDSA")
    try:
        key.verify(signature, snapshot, ec.ECDSA(hashes.SHA512()))
    except InvalidSignature:
        raise ShcTrustError("VCI snapshot signature does not verify") from None
    try:
        doc = finite_json.loads(snapshot)
    except ValueError:
        raise ShcTrustError("VCI snapshot is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("issuerInfo"), list):
        raise ShcTrustError("VCI snapshot has no issuerInfo list")
    return doc


def load_trust(directory: str | Path, pins: frozenset[str] = VCI_SNAPSHOT_CERT_PINS,
               pinned_keys: Any = None) -> ShcTrust | None:
    """Load SHC trust from a trust cache directory; None when it holds no SHC files.

    Reads `shc-issuers.json` (issuerInfo list, configured by the operator), `shc-crl.json`
    (a list of CRLs) and the signed VCI snapshot (`vci_snapshot.json` + `.sig` + `.crt`). A
    snapshot whose signature fails is skipped and recorded in `problems` (fewer trusted
    issuers means more denials, never a wrong accept).
    """
    base = Path(directory)
    issuers_path, crl_path, snap_path = base / ISSUERS_FILE, base / CRL_FILE, base / SNAPSHOT_FILE
    if not (issuers_path.is_file() or crl_path.is_file() or snap_path.is_file()):
        return None
    trust = ShcTrust()
    if snap_path.is_file():
        try:
            doc = verify_vci_snapshot(
                snap_path.read_bytes(),
                (base / SNAPSHOT_SIG_FILE).read_bytes(),
                (base / SNAPSHOT_CERT_FILE).read_bytes(),
                pins,
            )
            trust.add_issuer_info(doc["issuerInfo"])
            trust.snapshot_time = _parse_time(doc.get("time"))
        except (OSError, ShcTrustError) as exc:
            log.warning("VCI snapshot skipped: %s", exc)
            trust.problems.append(f"VCI snapshot skipped: {exc}")
    if issuers_path.is_file():
        doc = _read_json(issuers_path, pinned_keys)
        info = doc.get("issuerInfo") if isinstance(doc, dict) else None
        if not isinstance(info, list):
            raise ShcTrustError(f"{ISSUERS_FILE}: expected an object with an issuerInfo list")
        trust.add_issuer_info(info)
    if crl_path.is_file():
        doc = _read_json(crl_path, pinned_keys)
        crls = doc.get("crls") if isinstance(doc, dict) else doc
        if not isinstance(crls, list):
            raise ShcTrustError(f"{CRL_FILE}: expected a list of CRLs")
        for crl in crls:
            trust.add_crl(crl)
    return trust


def _read_json(path: Path, pinned_keys: Any) -> Any:
    """Raw JSON or the checked content of a fleet envelope (names shc-issuers / shc-crl)."""
    try:
        return read_trust_json(path, pinned_keys)
    except TrustFileError as exc:
        raise ShcTrustError(str(exc)) from None


def _parse_time(value: Any) -> datetime | None:
    try:
        return iso_time(value, "snapshot time")  # text, ISO 8601, within 1970..9999
    except NumericDateError:
        return None

