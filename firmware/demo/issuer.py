"""A demo DCC issuer: a self-signed signing certificate and real signed HC1 credentials."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware.demo.issuers import dcc as dcc_issue
from firmware.credentials.trust import dcc_kid
from firmware.protocol.decoded import Decoded


@dataclass(frozen=True)
class DemoSigner:
    """A document signer: private key, its certificate (DER) and the DCC kid."""

    key: ec.EllipticCurvePrivateKey
    certificate_der: bytes

    @property
    def kid(self) -> bytes:
        return dcc_kid(self.certificate_der)


def make_signer(country: str = "XX", valid_from: datetime | None = None,
                days: int = 730) -> DemoSigner:
    """A fresh P-256 key with a self-signed certificate, as a national DSC would have."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or datetime.now(timezone.utc) - timedelta(days=30)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(NameOID.COMMON_NAME, "healthgate demo DSC")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return DemoSigner(key, cert.public_bytes(serialization.Encoding.DER))


def vaccination_payload(country: str = "XX", vaccinated_on: str = "2026-06-01") -> dict[str, Decoded]:
    """A schema-valid DCC vaccination entry for a fictional person (demo data only)."""
    uvci = f"URN:UVCI:01:{country}:DEMO{uuid.uuid4().hex[:12].upper()}"
    return {
        "ver": "1.3.0",
        "nam": {"fn": "Muster", "fnt": "MUSTER", "gn": "Demo", "gnt": "DEMO"},
        "dob": "1990-01-01",
        "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528",
               "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": vaccinated_on, "co": country,
               "is": "healthgate demo issuer", "ci": uvci}],
    }


def issue_dcc(signer: DemoSigner, dcc: dict[str, Decoded], issued_at: datetime, expires_at: datetime,
              country: str = "XX", signing_key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """An `HC1:` text: CWT -> COSE_Sign1 (ES256) -> zlib -> base45, as the hcert spec describes.

    `signing_key` lets the demo forge: sign with another key under the genuine kid.
    """
    return dcc_issue.issue_dcc(dcc, signing_key or signer.key, signer.kid, issued_at, expires_at,
                               issuer=country)
