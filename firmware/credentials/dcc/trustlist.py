"""Gateway-style DCC signer lists: check the list's signature, each entry's kid and thumbprint.

A list is `{"certificates": [{kid, country, certificateType, rawData, signature, thumbprint,
timestamp}, ...]}` (the EU gateway's trust-list shape). The whole list must carry a detached
signature by a configured trust anchor (ECDSA P-256, RSA or Ed25519, over the exact list bytes)
before any entry is looked at. Each DSC entry must then name its own certificate: kid = first
8 bytes and thumbprint = all 32 bytes of SHA-256 over rawData, and the certificate must be a
document signer (RFC 5280: not a CA, KeyUsage with digitalSignature when present); an entry that
fails is skipped and reported, the others are kept. Replacement is atomic: the new signer map is
built aside and swapped in with one assignment.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from firmware.credentials.dcc.signer import DccSigner, SignerError
from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:  # the trust store imports the DCC modules lazily
    from firmware.credentials.trust import TrustStore

MAX_LIST_BYTES = 64 * 1024 * 1024  # the full EU list is a few MB


class TrustListError(ValueError):
    """The signer list as a whole is unusable (bad signature, not a list)."""


@dataclass
class IngestReport:
    """What an ingest accepted and what it skipped (with why; no personal data exists here)."""

    accepted: int = 0
    skipped: list[str] = field(default_factory=list)


def load_anchor(data: bytes) -> PublicKeyTypes:
    """A trust anchor public key from a certificate or public key, PEM or DER."""
    loaders = (
        lambda d: x509.load_pem_x509_certificate(d).public_key(),
        lambda d: x509.load_der_x509_certificate(d).public_key(),
        serialization.load_pem_public_key,
        serialization.load_der_public_key,
    )
    for loader in loaders:
        try:
            return loader(data)
        except (ValueError, TypeError):
            continue
    raise TrustListError("trust anchor is not a certificate or public key (PEM or DER)")


def signature_valid(data: bytes, signature: bytes, anchor: PublicKeyTypes) -> bool:
    """True when `signature` over `data` verifies with `anchor` (SHA-256 for EC and RSA)."""
    try:
        if isinstance(anchor, ed25519.Ed25519PublicKey):
            anchor.verify(signature, data)
            return True
        if isinstance(anchor, ec.EllipticCurvePublicKey):
            size = (anchor.curve.key_size + 7) // 8
            if len(signature) == 2 * size:  # raw r||s (JWS/COSE style)
                signature = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                                 int.from_bytes(signature[size:], "big"))
            anchor.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            return True
        if isinstance(anchor, rsa.RSAPublicKey):
            for pad in (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                        padding.PKCS1v15()):
                try:
                    anchor.verify(signature, data, pad, hashes.SHA256())
                    return True
                except InvalidSignature:
                    continue
    except (InvalidSignature, ValueError):
        return False
    return False


def decode_signature(text: bytes | str) -> bytes:
    """A detached signature file: base64 text, or the raw signature bytes."""
    raw = text.encode() if isinstance(text, str) else text
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        return raw


def verify_list(data: bytes, signature: bytes | None, anchors: Sequence[PublicKeyTypes]) -> None:
    """Raise TrustListError unless some anchor's signature over `data` verifies."""
    if not anchors:
        raise TrustListError("no trust anchor configured for the signer list")
    if not signature:
        raise TrustListError("the signer list carries no signature")
    if not any(signature_valid(data, signature, anchor) for anchor in anchors):
        raise TrustListError("the signer list signature does not verify with any trust anchor")


def parse_signer_list(document: Decoded, report: IngestReport) -> dict[bytes, list[DccSigner]]:
    """The DSCs of a gateway-style list, each checked against its kid and thumbprint."""
    if not isinstance(document, dict) or not isinstance(document.get("certificates"), list):
        raise TrustListError('a signer list is {"certificates": [...]}')
    signers: dict[bytes, list[DccSigner]] = {}
    for index, entry in enumerate(document["certificates"]):
        problem = _entry_problem(entry)
        if problem:
            report.skipped.append(f"entry {index}: {problem}")
            continue
        der = base64.b64decode(entry["rawData"])
        try:
            signer = DccSigner.from_der(der, country=entry.get("country"), certificate_type="DSC")
        except SignerError as exc:
            report.skipped.append(f"entry {index}: {exc}")
            continue
        if signer.constraint_problem is not None:  # a CA or non-signing cert: skip it alone
            why = signer.constraint_problem
            report.skipped.append(f"entry {index} (kid {entry['kid']}): {why}")
            continue
        signers.setdefault(signer.kid, []).append(signer)
        report.accepted += 1
    return signers


def _entry_problem(entry: Decoded) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    if entry.get("certificateType", "DSC") != "DSC":
        return f"certificate type {entry.get('certificateType')!r} does not sign DCCs"
    try:
        der = base64.b64decode(entry["rawData"], validate=True)
        kid = base64.b64decode(entry["kid"], validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError):
        return "rawData or kid missing or not base64"
    digest = hashlib.sha256(der).digest()
    if kid != digest[:8]:
        return f"kid {entry['kid']} does not match its certificate"
    thumbprint = entry.get("thumbprint")
    if not isinstance(thumbprint, str) or thumbprint.lower() != digest.hex():
        return f"thumbprint of kid {entry['kid']} does not match its certificate"
    return None


def ingest_signer_list(trust: TrustStore, data: bytes, signature: bytes | None,
                       anchors: Iterable[PublicKeyTypes],
                       at: datetime) -> IngestReport:
    """Verify and parse a signer list, then atomically replace `trust.dcc_signers`.

    On any error the trust store is left exactly as it was.
    """
    if len(data) > MAX_LIST_BYTES:
        raise TrustListError("signer list too large")
    verify_list(data, signature, list(anchors))
    try:
        document = finite_json.loads(data)
    except ValueError as exc:
        raise TrustListError(f"signer list is not JSON: {exc}") from None
    report = IngestReport()
    signers = parse_signer_list(document, report)
    trust.dcc_signers = signers  # one reference swap: a verifier sees old or new, never half
    trust.updated_at = at
    return report
