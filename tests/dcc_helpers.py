"""Test helpers: real signing keys and certificates, and sample DCC documents."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

T0 = datetime(2021, 6, 1, tzinfo=timezone.utc)
OID_TEST, OID_VACC, OID_RECOVERY = (f"1.3.6.1.4.1.1847.2021.1.{n}" for n in (1, 2, 3))


def make_key(kind: str = "ec") -> Any:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(key: Any, ekus: list[str] | None = None, not_before: datetime = T0 - timedelta(days=30),
              not_after: datetime = T0 + timedelta(days=730), cn: str = "DSC test") -> bytes:
    """A self-signed DER certificate for `key`; `ekus` None means no EKU extension."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "XA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if ekus == []:  # an empty EKU list (cryptography >= 51 refuses to build one): its DER
        builder = builder.add_extension(  # by hand, an empty SEQUENCE
            x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00"),
            critical=False)
    elif ekus is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in ekus]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def vaccination(uvci: str = "URN:UVCI:01:XA:TESTCASE0001#X", country: str = "AT") -> dict[str, Any]:
    return {
        "ver": "1.3.0",
        "nam": {"fn": "Muster", "fnt": "MUSTER", "gn": "Erika", "gnt": "ERIKA"},
        "dob": "1980-01-02",
        "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528",
               "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": "2021-05-01", "co": country,
               "is": "Test issuer", "ci": uvci}],
    }


def lab_test_dcc(uvci: str = "URN:UVCI:01:XA:TESTCASE0002#Y") -> dict[str, Any]:
    return {
        "ver": "1.3.0",
        "nam": {"fn": "Muster", "fnt": "MUSTER", "gn": "Erika", "gnt": "ERIKA"},
        "dob": "1980-01-02",
        "t": [{"tg": "840539006", "tt": "LP6464-4", "sc": "2021-05-30T10:00:00Z",
               "tr": "260415000", "tc": "Test centre", "co": "AT", "is": "Test issuer",
               "ci": uvci}],
    }
