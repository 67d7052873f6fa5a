"""The trust store: every key, list and record a verifier may rely on, loaded from cached data."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:  # imported lazily at run time: keeps `import firmware.credentials` light
    from firmware.credentials.certlogic.rules import Rule
    from firmware.credentials.dcc.revocation import RevocationList, UnusableRevocation
    from firmware.credentials.dcc.signer import DccSigner
    from firmware.credentials.nzcp.trust import NzcpTrust
    from firmware.credentials.shc.trust import ShcTrust
    from firmware.credentials.status.trust import StatusTrust

# How a DCC signing certificate's validity period is judged (docs/credentials.md, "Signing
# certificate validity"). AT_VALIDATION_TIME: the certificate must be valid at the validation
# clock, and the DCC's exp may outlast it (what the EU reference verifier apps do);
# COVERS_DCC: the certificate's period must contain the DCC's whole [iat, exp] (hcert spec 3.3.5
# and 3.3.6, an issuer requirement; this project's behaviour before issue 11 item 7).
DCC_SIGNER_AT_VALIDATION_TIME = "at-validation-time"
DCC_SIGNER_COVERS_DCC = "covers-dcc"
DCC_SIGNER_VALIDITY_POLICIES = (DCC_SIGNER_AT_VALIDATION_TIME, DCC_SIGNER_COVERS_DCC)
DEFAULT_DCC_SIGNER_VALIDITY = DCC_SIGNER_AT_VALIDATION_TIME


@dataclass
class TrustStore:
    """Offline trust data. Each format reads only its own part; missing parts mean "trust none".

    `dcc_signers` maps a DCC kid (first 8 bytes of the SHA-256 of the certificate DER) to every
    signing certificate with that kid: several certificates may share one kid.
    `shc`, `nzcp` and `status` hold the trust of those formats (their subpackage's `trust`
    module; None: trust none). `dcc_rules` is a list of parsed CertLogic rules, `dcc_valuesets`
    maps value-set id to its JSON document, `dcc_revocation` is the revocation list (or an
    `UnusableRevocation` when the list exists but cannot be read: every DCC is denied).
    `updated_at` is when the trust data was last refreshed, for the max-age policy.
    `dcc_rules_refused` maps (Type, Country) of rules that could not be parsed to why (the rules
    stage denies where they apply, see dcc/rule_set.py). `problems` lists, for the operator,
    what the loaders skipped (docs/credentials.md, "Bad trust data").
    `dcc_signer_validity` is one of `DCC_SIGNER_VALIDITY_POLICIES` (any other value applies
    both rules: an unknown policy never widens what is accepted).
    """

    dcc_signers: dict[bytes, list["DccSigner"]] = field(default_factory=dict)
    shc: ShcTrust | None = None
    nzcp: NzcpTrust | None = None
    status: StatusTrust | None = None
    dcc_rules: list[Rule] | None = None
    dcc_valuesets: dict[str, Decoded] | None = None
    dcc_revocation: RevocationList | UnusableRevocation | None = None
    # Where the kiosk stands: business rules are selected for this country (and region).
    dcc_country: str | None = None
    dcc_region: str | None = None
    updated_at: datetime | None = None
    dcc_rules_refused: dict[tuple[str, str], str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dcc_signer_validity: str = DEFAULT_DCC_SIGNER_VALIDITY

    @classmethod
    def from_certificates(cls, certificates: Iterable[bytes]) -> "TrustStore":
        """Build a store of DCC signing certificates from DER bytes (kid = SHA-256(DER)[:8])."""
        store = cls()
        for der in certificates:
            store.add_dcc_signer(der)
        return store

    def add_dcc_signer(self, der: bytes, kid: bytes | None = None, country: str | None = None,
                       certificate_type: str | None = None) -> None:
        """Add one DCC signing certificate; `kid` defaults to the certificate's own kid.

        Raises `SignerError` (a ValueError) when the certificate cannot be used.
        """
        from firmware.credentials.dcc.signer import DccSigner
        signer = DccSigner.from_der(der, country=country, certificate_type=certificate_type)
        key = kid if kid is not None else signer.kid
        self.dcc_signers.setdefault(key, []).append(signer)

    def dcc_signers_for(self, kid: bytes) -> list["DccSigner"]:
        """Every signing certificate registered under `kid` (empty when unknown)."""
        return self.dcc_signers.get(kid, [])


def dcc_kid(der: bytes) -> bytes:
    """The DCC key identifier of a certificate: the first 8 bytes of SHA-256 over its DER."""
    return hashlib.sha256(der).digest()[:8]
