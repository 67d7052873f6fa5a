"""A minimal, lenient DER reader: enough of X.509 to pull out the key, validity and EKU OIDs.

Some real DCC signing certificates carry DER that strict parsers reject (an encoded DEFAULT
value, an empty extended-key-usage list). We still need their public key, validity period and
key-usage OIDs. Nothing here weakens the signature check: the key bytes are the certificate's
own SubjectPublicKeyInfo, handed to `cryptography` unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

SEQUENCE, SET, OID, CTX0, CTX3 = 0x30, 0x31, 0x06, 0xA0, 0xA3
UTCTIME, GENERALIZEDTIME, BOOLEAN, OCTET_STRING = 0x17, 0x18, 0x01, 0x04
EKU_OID = "2.5.29.37"


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
    """What a DCC verifier needs from a signing certificate."""

    spki_der: bytes
    not_before: datetime
    not_after: datetime
    eku_oids: frozenset[str]


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
    ekus: set[str] = set()
    for field in fields[6:]:
        if field.tag != CTX3:
            continue
        (ext_seq,) = children(field.value)
        for ext in children(ext_seq.value):
            parts = children(ext.value)
            if decode_oid(parts[0].value) != EKU_OID:
                continue
            octets = parts[-1]
            if octets.tag != OCTET_STRING:
                raise DerError("extension value is not an OCTET STRING")
            inner, _ = read_tlv(octets.value)
            ekus.update(decode_oid(o.value) for o in children(inner.value) if o.tag == OID)
    return CertFields(spki.raw, not_before, not_after, frozenset(ekus))
