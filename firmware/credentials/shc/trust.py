"""SMART Health Card trust: issuer keys (cached JWKS or a signed VCI snapshot) and per-(issuer, key) CRLs."""
from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.shc.codec import jwk_thumbprint, public_key_from_jwk
from firmware.credentials.trust_json import TrustFileError, read_trust_json
from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import PinnedKeys
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
    """One issuer key's Card Revocation List: rid -> cut-off timestamp (None revokes every card).

    Published at `<iss>/.well-known/crl/<kid>.json`: the kid alone does not name it, since
    several issuers may list one key (the VCI directory has such keys).
    """

    kid: str
    ctr: int
    rids: dict[str, float | None] = field(default_factory=dict)
    iss: str = ""

    def revokes(self, rid: str, nbf: float) -> bool:
        """True when a card with this rid and nbf is revoked (cards issued before the cut-off)."""
        if rid not in self.rids:
            return False
        cutoff = self.rids[rid]
        return cutoff is None or nbf < cutoff


def parse_crl(doc: Decoded, iss: str = "") -> ShcCrl:
    """Parse `{kid, method: "rid", ctr, rids: ["rid" | "rid.timestamp", ...]}` of issuer `iss`."""
    if not isinstance(doc, dict) or doc.get("method") != "rid":
        raise ShcTrustError("CRL is not a `rid` method object")
    kid, rids = doc.get("kid"), doc.get("rids")
    if not isinstance(kid, str) or not isinstance(rids, list):
        raise ShcTrustError("CRL needs a kid and a rids array")
    crl = ShcCrl(kid=kid, ctr=_as_int(doc.get("ctr"), "ctr"), iss=iss)
    for entry in rids:
        if not isinstance(entry, str):
            raise ShcTrustError("CRL rid entries must be strings")
        rid, _, stamp = entry.partition(".")
        if not _RID_RE.match(rid):
            raise ShcTrustError("CRL rid is not base64url of at most 24 characters")
        cutoff: float | None = _cutoff(stamp) if stamp else None
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


def _as_int(value: Decoded, name: str) -> int:
    """Counters appear as numbers or numeric strings in the wild."""
    if isinstance(value, bool):
        raise ShcTrustError(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ShcTrustError(f"{name} must be an integer") from None


CrlKey = tuple[str, str]  # (issuer URL, kid): what names a CRL


@dataclass
class ShcTrust:
    """Trusted SHC issuers and their keys, indexed by kid (a kid may appear for several issuers).

    `crls` holds each (iss, kid)'s newest CRL. `crl_problems` names the (iss, kid) pairs whose
    CRL data was malformed: their cards are denied (SHC_CRL_UNAVAILABLE) until good data comes,
    since ignoring the bad CRL could accept a revoked card; other issuers are not touched.
    `problems` lists everything skipped while loading, for the operator.
    """

    keys_by_kid: dict[str, list[ShcKey]] = field(default_factory=dict)
    issuer_names: dict[str, str] = field(default_factory=dict)
    crls: dict[CrlKey, ShcCrl] = field(default_factory=dict)
    crl_problems: dict[CrlKey, str] = field(default_factory=dict)
    snapshot_time: datetime | None = None
    problems: list[str] = field(default_factory=list)

    def knows_issuer(self, iss: str) -> bool:
        """Whether any key is trusted for this issuer URL."""
        return iss in self.issuer_names

    def add_jwks(self, iss: str, jwks: Decoded, name: str | None = None) -> int:
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

    def add_crl(self, doc: Decoded, iss: str | None = None) -> None:
        """Add issuer `iss`'s CRL (default: the document's own `iss` member); a newer counter
        replaces an older list for the same (iss, kid). Raises ShcTrustError when malformed."""
        issuer = iss if iss is not None else (doc.get("iss") if isinstance(doc, dict) else None)
        if not isinstance(issuer, str) or not issuer:
            raise ShcTrustError("CRL names no issuer (iss)")
        crl = parse_crl(doc, issuer)
        current = self.crls.get((issuer, crl.kid))
        if current is None or crl.ctr >= current.ctr:
            self.crls[(issuer, crl.kid)] = crl

    def add_crl_or_report(self, doc: Decoded, iss: str | None = None, where: str = "CRL") -> bool:
        """`add_crl`, but a malformed CRL is reported in `problems` instead of raised, and, when
        its issuer and kid can be read, that key fails closed (`crl_problems`). True if added."""
        try:
            self.add_crl(doc, iss)
            return True
        except ShcTrustError as exc:
            issuer = iss if iss is not None else (doc.get("iss") if isinstance(doc, dict) else None)
            kid = doc.get("kid") if isinstance(doc, dict) else None
            if isinstance(issuer, str) and issuer and isinstance(kid, str) and kid:
                self.crl_problems[(issuer, kid)] = str(exc)
                self.problems.append(f"{where} of {issuer} key {kid[:12]}... refused: {exc}; "
                                     "that key's cards are denied until a good CRL arrives")
            else:  # nobody to attribute it to: keys with crlVersion still need their own CRL
                self.problems.append(f"{where} refused: {exc}")
            return False

    def crl_for(self, iss: str, kid: str) -> ShcCrl | None:
        """The CRL that issuer `iss` published for its key `kid`, if held."""
        return self.crls.get((iss, kid))

    def add_issuer_info(self, info: list[Decoded]) -> None:
        """Add `issuerInfo` entries (VCI snapshot shape): issuer, keys and optional crls."""
        for entry in info:
            if not isinstance(entry, dict) or not isinstance(entry.get("issuer"), dict):
                self.problems.append("issuerInfo entry without an issuer")
                continue
            issuer = entry["issuer"]
            self.add_jwks(issuer.get("iss"), entry.get("keys"), issuer.get("name"))
            iss = issuer.get("iss") if isinstance(issuer.get("iss"), str) else ""
            crls = entry.get("crls") or []
            if not isinstance(crls, list):
                self.problems.append(f"crls of {iss or '?'} is not a list")
                crls = []
            for crl in crls:
                self.add_crl_or_report(crl, iss, "issuerInfo CRL")


def _key_from_jwk(iss: str, jwk: Decoded) -> ShcKey | None:
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


def _x5c_matches(x5c: Decoded, public_key: ec.EllipticCurvePublicKey) -> bool:
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
) -> dict[str, Decoded]:
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


def load_trust(directory: str | Path, pinned_keys: PinnedKeys = None, *,
               pins: frozenset[str] = VCI_SNAPSHOT_CERT_PINS) -> ShcTrust | None:
    """Load SHC trust from a trust cache directory; None when it holds no SHC files.

    Reads `shc-issuers.json` (issuerInfo list, configured by the operator), `shc-crl.json`
    (`{"crls": [CRL with its issuer's "iss", ...]}`) and the signed VCI snapshot
    (`vci_snapshot.json` + `.sig` + `.crt`). Never raises for bad data: whatever cannot be
    used (a file, an issuer, a key, a CRL) is skipped and named in `problems`, so one issuer's
    bad data never denies another's holders. Skipping never widens acceptance: a skipped file
    or issuer trusts fewer keys; a key whose CRL was refused is denied (`crl_problems`); a key
    that advertises `crlVersion` is denied without a CRL that recent.
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
            trust.problems.append(f"VCI snapshot skipped: {exc}")
    if issuers_path.is_file():
        try:
            doc = _read_json(issuers_path, pinned_keys)
            info = doc.get("issuerInfo") if isinstance(doc, dict) else None
            if not isinstance(info, list):
                raise ShcTrustError(f"{ISSUERS_FILE}: expected an object with an issuerInfo list")
            trust.add_issuer_info(info)
        except (OSError, ShcTrustError) as exc:
            trust.problems.append(f"{ISSUERS_FILE} skipped: {exc}")
    if crl_path.is_file():
        _load_crl_file(trust, crl_path, pinned_keys)
    for problem in trust.problems:
        log.warning("SHC trust: %s", problem)
    return trust


def _load_crl_file(trust: ShcTrust, path: Path, pinned_keys: PinnedKeys) -> None:
    """Each CRL of `shc-crl.json` on its own: a bad one is reported and, when attributable,
    fails its own (iss, kid) closed; the others are kept."""
    try:
        doc = _read_json(path, pinned_keys)
    except (OSError, ShcTrustError) as exc:
        trust.problems.append(f"{CRL_FILE} skipped: {exc}")
        return
    crls = doc.get("crls") if isinstance(doc, dict) else doc
    if not isinstance(crls, list):
        trust.problems.append(f"{CRL_FILE} skipped: expected a list of CRLs")
        return
    for index, crl in enumerate(crls):
        trust.add_crl_or_report(crl, None, f"{CRL_FILE} entry #{index}")


def _read_json(path: Path, pinned_keys: PinnedKeys) -> Decoded:
    """Raw JSON or the checked content of a fleet envelope (names shc-issuers / shc-crl)."""
    try:
        return read_trust_json(path, pinned_keys)
    except TrustFileError as exc:
        raise ShcTrustError(str(exc)) from None


def _parse_time(value: Decoded) -> datetime | None:
    try:
        return iso_time(value, "snapshot time")  # text, ISO 8601, within 1970..9999
    except NumericDateError:
        return None

