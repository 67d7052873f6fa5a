"""A DCC document signer certificate (DSC) reduced to what verification needs."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from firmware.credentials.dcc.der import CertFields, DerError, parse_certificate

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class SignerError(ValueError):
    """The certificate cannot be used as a DCC signer (unparseable, or an unsupported key)."""


@dataclass(frozen=True)
class DccSigner:
    """One signing certificate: its key, validity period and extended-key-usage OIDs.

    `country` and `certificate_type` come from a trust list entry when there is one.
    `constraint_problem` says why the certificate may not sign DCCs at all (RFC 5280: a CA
    certificate, or a KeyUsage without digitalSignature), None when it may: trust-list loading
    skips such a certificate and verification refuses it (DCC_SIGNER_NOT_DSC).
    """

    der: bytes = field(repr=False)
    kid: bytes
    public_key: PublicKey = field(repr=False)
    not_before: datetime
    not_after: datetime
    eku_oids: frozenset[str]
    country: str | None = None
    certificate_type: str | None = None
    constraint_problem: str | None = None

    @classmethod
    def from_der(cls, der: bytes, country: str | None = None,
                 certificate_type: str | None = None) -> "DccSigner":
        """Parse certificate DER, strictly where possible and leniently where real certs need it."""
        if not isinstance(der, (bytes, bytearray)):
            raise SignerError("certificate must be DER bytes")
        der = bytes(der)
        kid = hashlib.sha256(der).digest()[:8]
        try:
            fields = parse_certificate(der)
        except (DerError, IndexError, ValueError) as exc:
            fields = None
            lenient_error: Exception | None = exc
        else:
            lenient_error = None
        key: PublicKeyTypes  # the lenient path may also yield key types no DSC uses (refused below)
        try:
            cert = x509.load_der_x509_certificate(der)
            key = cert.public_key()
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        except ValueError:
            # Strict parse failed: take the key straight from the certificate's own SPKI.
            if fields is None:
                raise SignerError(f"certificate unreadable: {lenient_error}") from None
            try:
                key = load_der_public_key(fields.spki_der)
            except (ValueError, TypeError) as exc:
                raise SignerError(f"public key unreadable: {exc}") from None
            not_before, not_after = fields.not_before, fields.not_after
            cert = None
        if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise SignerError("only EC and RSA signing keys are used for DCCs")
        ekus = _eku_oids(cert, fields)
        problem = constraint_problem(*_constraints(cert, fields))
        return cls(der, kid, key, not_before, not_after, ekus, country, certificate_type, problem)


def constraint_problem(ca: bool, digital_signature: bool | None) -> str | None:
    """Why a certificate with these constraints may not sign DCCs (RFC 5280 4.2.1.3/4.2.1.9,
    hcert spec 5: a DSC is an end-entity certificate signed by the country's CSCA), or None."""
    if ca:
        return "BasicConstraints cA=TRUE: a CA certificate is not a document signer"
    if digital_signature is False:
        return "KeyUsage present without digitalSignature"
    return None


def _constraints(cert: x509.Certificate | None,
                 fields: CertFields | None) -> tuple[bool, bool | None]:
    """(cA, KeyUsage digitalSignature or None when absent): strictly, else leniently."""
    if cert is not None:
        try:
            extensions = cert.extensions
            try:
                ca = bool(extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
            except x509.ExtensionNotFound:
                ca = False
            try:
                usage: bool | None = extensions.get_extension_for_class(
                    x509.KeyUsage).value.digital_signature
            except x509.ExtensionNotFound:
                usage = None
            return ca, usage
        except ValueError:
            pass  # extensions that strict parsers reject; read them leniently below
    if fields is None:
        raise SignerError("certificate extensions unreadable")
    return fields.ca, fields.digital_signature


def _eku_oids(cert: x509.Certificate | None, fields: CertFields | None) -> frozenset[str]:
    """EKU OIDs from the strict parse, falling back to the lenient one (encoded defaults etc.)."""
    if cert is not None:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            return frozenset(oid.dotted_string for oid in eku)
        except x509.ExtensionNotFound:
            return frozenset()
        except ValueError:
            pass  # extensions that strict parsers reject; read them leniently below
    if fields is None:
        raise SignerError("certificate extensions unreadable")
    return fields.eku_oids
