"""The trust store: every key, list and record a verifier may rely on, loaded from cached data."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509


@dataclass
class TrustStore:
    """Offline trust data. Each format reads only its own part; missing parts mean "trust none".

    `dcc_signers` maps a DCC kid (first 8 bytes of the SHA-256 of the certificate DER) to every
    signing certificate with that kid: several certificates may share one kid.
    `shc`, `nzcp` and `status` hold the trust objects of those formats (defined in their modules).
    `updated_at` is when the trust data was last refreshed, for the max-age policy.
    """

    dcc_signers: dict[bytes, list[x509.Certificate]] = field(default_factory=dict)
    shc: Any = None
    nzcp: Any = None
    status: Any = None
    dcc_rules: Any = None
    dcc_valuesets: Any = None
    dcc_revocation: Any = None
    updated_at: datetime | None = None

    @classmethod
    def from_certificates(cls, certificates: Iterable[bytes]) -> "TrustStore":
        """Build a store of DCC signing certificates from DER bytes (kid = SHA-256(DER)[:8])."""
        store = cls()
        for der in certificates:
            store.add_dcc_signer(der)
        return store

    def add_dcc_signer(self, der: bytes, kid: bytes | None = None) -> None:
        """Add one DCC signing certificate; `kid` defaults to the certificate's own kid."""
        cert = x509.load_der_x509_certificate(der)
        key = kid if kid is not None else dcc_kid(der)
        self.dcc_signers.setdefault(key, []).append(cert)


def dcc_kid(der: bytes) -> bytes:
    """The DCC key identifier of a certificate: the first 8 bytes of SHA-256 over its DER."""
    return hashlib.sha256(der).digest()[:8]
