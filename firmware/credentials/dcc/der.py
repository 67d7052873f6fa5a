"""A minimal, lenient DER reader: enough of X.509 for the key, validity, EKU OIDs and constraints.

Some real DCC signing certificates carry DER that strict parsers reject (an encoded DEFAULT
value, an empty extended-key-usage list). We still need their public key, validity period and
key-usage OIDs. Nothing here weakens the signature check: the key bytes are the certificate's
own SubjectPublicKeyInfo, handed to `cryptography` unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

SEQUENCE, SET, OID, CTX0, CTX3 = 0x30, 0x31, 0x06, 0xA0, 0xA3
UTCTIME, GENERALIZEDTIME, BOOLEAN, OCTET_STRING, BIT_STRING = 0x17, 0x18, 0x01, 0x04, 0x03
EKU_OID = "2.5.29.37"
BASIC_CONSTRAINTS_OID = "2.5.29.19"
KEY_USAGE_OID = "2.5.29.15"
# KeyUsage bit 0 (RFC 5280, 4.2.1.3) is the most significant bit of the first content byte.
DIGITAL_SIGNATURE_MASK = 0x80


class DerError(ValueError):
    """The bytes are not the DER structure we expected."""


@dataclass(frozen=True)
class Tlv:
    """One DER element: tag byte, the content bytes, and the whole encoding (tag+length+value)."""

    tag: int
    value: bytes
    raw: bytes


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """Read one element at `pos`; return it and the offset just after it."""
    if pos + 2 > len(data):
        raise DerError("truncated DER header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags are not used in certificates")
    length = data[pos + 1]
    offset = pos + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or offset + count > len(data):
            raise DerError("bad DER length")
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise DerError("DER element runs past the end")
    return Tlv(tag, data[offset:end], data[pos:end]), end


def children(data: bytes) -> list[Tlv]:
    """All elements directly inside a constructed element's content."""
    items: list[Tlv] = []
    pos = 0
    while pos < len(data):
        item, pos = read_tlv(data, pos)
        items.append(item)
    return items


def decode_oid(value: bytes) -> str:
    """Dotted-string form of an OBJECT IDENTIFIER's content bytes."""
    if not value:
        raise DerError("empty OID")
    arcs: list[int] = []
    acc = 0
    for byte in value:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
    if value[-1] & 0x80:
        raise DerError("truncated OID")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_time(item: Tlv) -> datetime:
    """A UTCTime or GeneralizedTime (the forms X.509 uses) as an aware UTC datetime."""
    text = item.value.decode("ascii")
    if item.tag == UTCTIME:
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif item.tag != GENERALIZEDTIME:
        raise DerError("not a time")
    if not text.endswith("Z"):
        raise DerError("certificate times must be UTC")
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class CertFields:
    """What a DCC verifier needs from a signing certificate.

    `ca` is BasicConstraints cA (False when the extension is absent); `digital_signature` is the
    KeyUsage digitalSignature bit, None when the certificate has no KeyUsage extension.
    """

    spki_der: bytes
    not_before: datetime
    not_after: datetime
    eku_oids: frozenset[str]
    ca: bool = False
    digital_signature: bool | None = None


def parse_certificate(der: bytes) -> CertFields:
    """Leniently read SubjectPublicKeyInfo, validity and EKU OIDs from certificate DER."""
    cert, _ = read_tlv(der)
    if cert.tag != SEQUENCE:
        raise DerError("certificate is not a SEQUENCE")
    tbs = children(cert.value)[0]
    fields = children(tbs.value)
    if fields and fields[0].tag == CTX0:  # explicit version
        fields = fields[1:]
    # serial, signature alg, issuer, validity, subject, spki, [optional ids], [3] extensions
    if len(fields) < 6:
        raise DerError("TBSCertificate too short")
    validity = children(fields[3].value)
    not_before, not_after = decode_time(validity[0]), decode_time(validity[1])
    spki = fields[5]
    extensions = _extension_values(fields[6:])
    ekus: set[str] = set()
    if EKU_OID in extensions:
        inner, _ = read_tlv(extensions[EKU_OID])
        ekus.update(decode_oid(o.value) for o in children(inner.value) if o.tag == OID)
    ca = False
    if BASIC_CONSTRAINTS_OID in extensions:
        inner, _ = read_tlv(extensions[BASIC_CONSTRAINTS_OID])
        parts = children(inner.value)
        # cA is an optional BOOLEAN DEFAULT FALSE; an encoded FALSE (FI's DSCs) reads as False.
        ca = bool(parts) and parts[0].tag == BOOLEAN and parts[0].value not in (b"", b"\x00")
    digital_signature = None
    if KEY_USAGE_OID in extensions:
        bits, _ = read_tlv(extensions[KEY_USAGE_OID])
        if bits.tag != BIT_STRING or not bits.value:
            raise DerError("KeyUsage is not a BIT STRING")
        digital_signature = len(bits.value) > 1 and bool(bits.value[1] & DIGITAL_SIGNATURE_MASK)
    return CertFields(spki.raw, not_before, not_after, frozenset(ekus), ca, digital_signature)


def _extension_values(fields: list[Tlv]) -> dict[str, bytes]:
    """extnID -> the content of extnValue's OCTET STRING, from the [3] extensions field."""
    values: dict[str, bytes] = {}
    for field in fields:
        if field.tag != CTX3:
            continue
        (ext_seq,) = children(field.value)
        for ext in children(ext_seq.value):
            parts = children(ext.value)
            octets = parts[-1]
            if octets.tag != OCTET_STRING:
                raise DerError("extension value is not an OCTET STRING")
            oid = decode_oid(parts[0].value)
            if oid in values:  # RFC 5280 4.2: at most one instance of each; never pick one
                raise DerError(f"extension {oid} appears twice")
            values[oid] = octets.value
    return values
