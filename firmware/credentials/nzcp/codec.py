"""NZ COVID Pass wire codecs: the `NZCP:/1/` text, unpadded base32, CWT claims, cti <-> jti."""
from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping


from firmware.credentials.cose_sign1 import MAX_COSE_BYTES
from firmware.protocol import cbor as bounded_cbor
from firmware.protocol.codederror import CodedError
from firmware.protocol.decoded import Decoded
from firmware.protocol.numericdate import NumericDateError, int_numeric_date

PREFIX = "NZCP:/"
SUPPORTED_VERSION = 1
MAX_TEXT_CHARS = len(PREFIX) + 4 + (MAX_COSE_BYTES * 8 + 4) // 5

# CWT claim keys (RFC 8392) used by the pass; `vc` is a text key.
CLAIM_ISS, CLAIM_EXP, CLAIM_NBF, CLAIM_CTI = 1, 4, 5, 7
VC_CONTEXT = "https://www.w3.org/2018/credentials/v1"
PASS_TYPE = "PublicCovidPass"

# The CWT claims CBOR: a pass has ~20 data items and nests 4 deep (spec, CWT claims). The spec
# uses no tag, but a published example (invalid/nzcp-revoked-public-key.png) wraps its `cti` in
# tag 64 (RFC 8746 uint8 typed array: plain bytes, no amplification); it decodes so that such a
# pass is refused for its issuer or its cti, as before, rather than as damaged.
MAX_CLAIMS_NODES = 256
MAX_CLAIMS_DEPTH = 8
CLAIMS_TAGS = frozenset({64})

_BASE32_RE = re.compile(r"^[A-Z2-7]+$")
_DOB_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class NzcpFormatError(CodedError, ValueError):
    """A malformed pass at one stage; `code` is the reason code to report."""


def split_text(text: str) -> tuple[int, str]:
    """`NZCP:/<version>/<base32>` -> (version, base32 part)."""
    if len(text) > MAX_TEXT_CHARS:
        raise NzcpFormatError("NZCP_TOO_LARGE", f"{len(text)} chars")
    if text[: len(PREFIX)].upper() != PREFIX:
        raise NzcpFormatError("NZCP_PREFIX")
    version, sep, body = text[len(PREFIX):].partition("/")
    if not sep or not version.isdigit() or not version.isascii() or len(version) > 3:
        raise NzcpFormatError("NZCP_VERSION_UNSUPPORTED", "no version identifier")
    if version != str(SUPPORTED_VERSION):  # exactly "1": no "01"/"001" spellings (spec)
        raise NzcpFormatError("NZCP_VERSION_UNSUPPORTED", f"version {version}")
    return int(version), body


def base32_decode(body: str) -> bytes:
    """RFC 4648 base32 sent without padding (the spec says to add it back before decoding)."""
    if not _BASE32_RE.match(body) or len(body) % 8 in (1, 3, 6):
        raise NzcpFormatError("NZCP_BASE32_INVALID")
    try:
        return base64.b32decode(body + "=" * (-len(body) % 8))
    except binascii.Error:
        raise NzcpFormatError("NZCP_BASE32_INVALID") from None


def base32_encode(data: bytes) -> str:
    """Unpadded base32, as the QR carries it."""
    return base64.b32encode(data).decode("ascii").rstrip("=")


def cti_to_jti(cti: Decoded) -> str:
    """The spec's CTI -> JTI mapping: 16 bytes -> `urn:uuid:xxxxxxxx-xxxx-...`."""
    if not isinstance(cti, bytes) or len(cti) != 16:
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "cti is not 16 bytes")
    return "urn:uuid:" + str(uuid.UUID(bytes=cti))


def jti_to_cti(jti: str) -> bytes:
    """The spec's JTI -> CTI mapping."""
    if not jti.startswith("urn:uuid:"):
        raise ValueError("jti must be a urn:uuid: URI")
    return uuid.UUID(jti[len("urn:uuid:"):]).bytes


def decode_claims(payload: bytes) -> dict[Decoded, Decoded]:
    """CBOR-decode the CWT payload into a map (no interpretation yet); bounded, no tags."""
    try:
        claims = bounded_cbor.loads(payload, max_bytes=MAX_COSE_BYTES, allowed_tags=CLAIMS_TAGS,
                                    max_nodes=MAX_CLAIMS_NODES, max_depth=MAX_CLAIMS_DEPTH)
    except bounded_cbor.CborRefused as exc:
        code = "NZCP_PAYLOAD_INVALID" if exc.structural else "NZCP_CBOR_REFUSED"
        raise NzcpFormatError(code, str(exc)) from None
    except ValueError:
        raise NzcpFormatError("NZCP_PAYLOAD_INVALID", "not CBOR") from None
    if not isinstance(claims, Mapping):
        raise NzcpFormatError("NZCP_PAYLOAD_INVALID", "not a CBOR map")
    return dict(claims)


def claims_to_json(claims: dict[Decoded, Decoded]) -> dict[str, Decoded]:
    """Validate the CWT claims (spec, Data Model) and map them to their JWT names."""
    iss, nbf, exp, vc = (claims.get(k) for k in (CLAIM_ISS, CLAIM_NBF, CLAIM_EXP, "vc"))
    if not isinstance(iss, str) or not iss.startswith("did:web:"):
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "iss is not a did:web DID")
    for name, value in (("nbf", nbf), ("exp", exp)):
        # The spec's NumericDate is an integer here; int_numeric_date adds the upper bound (2**63
        # would otherwise be a pass that never expires).
        try:
            int_numeric_date(value, name)
        except NumericDateError:
            raise NzcpFormatError("NZCP_CLAIMS_INVALID", f"{name} is not a NumericDate") from None
    jti = cti_to_jti(claims.get(CLAIM_CTI))
    _check_vc(vc)
    return {"iss": iss, "nbf": nbf, "exp": exp, "jti": jti, "vc": vc}


def _check_vc(vc: Decoded) -> None:
    """The `vc` claim structure for a PublicCovidPass, version 1.0.0."""
    if not isinstance(vc, Mapping):
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "vc is not a map")
    context, types = vc.get("@context"), vc.get("type")
    if not isinstance(context, list) or not context or context[0] != VC_CONTEXT:
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "vc.@context")
    if not all(isinstance(c, str) for c in context):
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "vc.@context")
    if types != ["VerifiableCredential", PASS_TYPE]:
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "vc.type")
    if vc.get("version") != "1.0.0":
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "vc.version")
    subject = vc.get("credentialSubject")
    if not isinstance(subject, Mapping):
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "vc.credentialSubject")
    given, family, dob = subject.get("givenName"), subject.get("familyName"), subject.get("dob")
    if not isinstance(given, str) or not 0 < len(given) <= 100:
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "givenName")
    if family is not None and (not isinstance(family, str) or len(family) > 100):
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "familyName")
    if not isinstance(dob, str) or not _DOB_RE.match(dob):
        raise NzcpFormatError("NZCP_CLAIMS_INVALID", "dob")
