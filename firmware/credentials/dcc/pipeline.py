"""The HC1 verification pipeline: prefix, base45, zlib, COSE, CBOR, signature, expiry, key usage,
schema, rules, revocation. Never raises on bad input; every stage outcome lands in `checks`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from firmware.credentials.base45 import Base45Error, b45decode
from firmware.credentials.cose_sign1 import (
    ALG_ES256,
    ALG_NAMES,
    ALG_PS256,
    CoseError,
    Sign1,
    decode_sign1,
    verify_signature,
)
from firmware.credentials.dcc import codec, keyusage, revocation, rules, schema
from firmware.credentials.dcc.codec import PREFIX, Claims
from firmware.credentials.dcc.signer import DccSigner
from firmware.credentials.trust import (
    DCC_SIGNER_AT_VALIDATION_TIME,
    DCC_SIGNER_COVERS_DCC,
    DEFAULT_DCC_SIGNER_VALIDITY,
    TrustStore,
)
from firmware.credentials.verdict import STAGES, Verdict, empty_checks
from firmware.protocol.decoded import Decoded

# A version-40 QR code holds at most 4,296 alphanumeric characters; allow some slack.
MAX_TEXT_CHARS = 8_192
SUPPORTED_ALGS = {alg: ALG_NAMES[alg] for alg in (ALG_ES256, ALG_PS256)}


@dataclass
class _Run:
    """The state of one verification: stage outcomes, the first failure, and why each failed."""

    checks: dict[str, bool | None] = field(default_factory=empty_checks)
    failures: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    # Not personal: the signer's key id (hex) and the CWT issuer (a country code), as the code
    # claims them (verified only when the signature stage is ok); for the technician tool.
    info: dict[str, str] = field(default_factory=dict)

    def ok(self, stage: str, detail: str = "") -> None:
        self.checks[stage] = True
        if detail:
            self.details[stage] = detail

    def fail(self, stage: str, code: str, detail: str) -> None:
        self.checks[stage] = False
        self.failures[stage] = code
        self.details[stage] = detail

    def first_failure(self) -> str | None:
        for stage in STAGES:  # report the earliest stage in pipeline order
            if stage in self.failures:
                return self.failures[stage]
        return None


def verify_dcc(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify one `HC1:` text against `trust` at time `at` (naive datetimes are taken as UTC)."""
    run = _Run()
    sign1 = _decode(text, run)
    if sign1 is None:
        return _verdict(run)
    if isinstance(sign1.kid, bytes):  # the header's claim: shown even when the signature fails
        run.info["kid"] = sign1.kid.hex()
    # Authenticate first: the payload of a message that no trusted key signed is never decoded,
    # converted, schema-checked, run through the rules or looked up for revocation.
    signer = _signature(sign1, trust, run)
    if signer is None:
        return _verdict(run)
    claims = _claims(sign1, run)
    if claims is None:
        return _verdict(run)
    if isinstance(claims.iss, str):  # read from the authenticated payload only
        run.info["issuer"] = claims.iss
    policy = getattr(trust, "dcc_signer_validity", DEFAULT_DCC_SIGNER_VALIDITY)
    _expiry(claims, signer, at, run, policy)
    kind = schema.entry_type(claims.dcc)
    if signer is not None and kind is not None:  # no single entry type: the schema stage fails
        problem = keyusage.problem(signer.eku_oids, kind)
        if problem:
            run.fail("key_usage", "DCC_KEY_USAGE", problem)
        else:
            run.ok("key_usage")
    _schema(claims, trust, run)
    uvci = _uvci(claims.dcc)
    rules.run_stage(claims, sign1, trust, at, run)
    revocation.run_stage(claims, sign1, trust, uvci, run)
    payload = {"iss": claims.iss, "iat": claims.iat, "exp": claims.exp, "dcc": claims.dcc}
    return _verdict(run, payload, uvci)


def _decode(text: str, run: _Run) -> Sign1 | None:
    """prefix -> base45 -> zlib -> COSE; None (with the failure recorded) when one breaks."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        run.fail("prefix", "DCC_PREFIX_INVALID", "text does not start with HC1:")
        return None
    run.ok("prefix")
    if len(text) > MAX_TEXT_CHARS:
        run.fail("base45", "DCC_TOO_LARGE", f"longer than {MAX_TEXT_CHARS} characters")
        return None
    try:
        compressed = b45decode(text[len(PREFIX):])
    except Base45Error as exc:
        run.fail("base45", "DCC_BASE45_INVALID", str(exc))
        return None
    run.ok("base45")
    cose_bytes = _inflate(compressed, run)
    if cose_bytes is None:
        return None
    try:
        sign1 = decode_dcc_sign1(cose_bytes)
    except CoseError as exc:
        code = "DCC_CBOR_REFUSED" if exc.code == "refused" else "DCC_COSE_INVALID"
        run.fail("cose", code, str(exc))
        return None
    run.ok("cose")
    return sign1


def decode_dcc_sign1(cose_bytes: bytes) -> Sign1:
    """The DCC's COSE_Sign1: tagged 18 or untagged, optionally inside the CWT tag 61, with `alg`
    allowed in the unprotected header (both occur in the EU DCC test data); raises CoseError."""
    return decode_sign1(cose_bytes, allow_cwt_tag=True, unprotected_alg=True)


def _inflate(compressed: bytes, run: _Run) -> bytes | None:
    try:
        out = codec.inflate(compressed)
    except codec.DecodeError as exc:
        run.fail("zlib", exc.code, exc.detail)
        return None
    run.ok("zlib")
    return out


def _claims(sign1: Sign1, run: _Run) -> Claims | None:
    try:
        claims = codec.decode_claims(sign1.payload)
    except codec.DecodeError as exc:
        run.fail("cbor", exc.code, exc.detail)
        return None
    run.ok("cbor")
    return claims


def _signature(sign1: Sign1, trust: TrustStore, run: _Run) -> DccSigner | None:
    """The trusted signer whose key verifies the signature (every cert under the kid is tried)."""
    if not isinstance(sign1.alg, int) or sign1.alg not in SUPPORTED_ALGS:  # may be any CBOR
        run.fail("signature", "DCC_ALG_UNSUPPORTED", f"algorithm {sign1.alg!r} is not ES256/PS256")
        return None
    kid = sign1.kid
    if kid is None:
        run.fail("signature", "DCC_KID_MISSING", "no key identifier in either header")
        return None
    signers = trust.dcc_signers_for(kid) if isinstance(trust, TrustStore) else []
    if not signers:
        run.fail("signature", "DCC_KID_UNKNOWN", f"no trusted signer with kid {kid.hex()}")
        return None
    not_dsc: str | None = None
    for signer in signers:
        # High s allowed: about half of the EU's field signatures have one (docs/credentials.md);
        # revocation hashes only r, so the twin encoding cannot dodge it.
        if verify_signature(sign1, signer.public_key, allow_high_s=True):
            if signer.constraint_problem is not None:  # RFC 5280: not a document signer
                not_dsc = signer.constraint_problem
                continue
            run.ok("signature", f"{SUPPORTED_ALGS[sign1.alg]} by kid {kid.hex()}")
            return signer
    if not_dsc is not None:
        run.fail("signature", "DCC_SIGNER_NOT_DSC", not_dsc)
        return None
    run.fail("signature", "DCC_SIGNATURE_INVALID",
             f"no {SUPPORTED_ALGS[sign1.alg]} signature match among {len(signers)} certificate(s)")
    return None


def _expiry(claims: Claims, signer: DccSigner | None, at: datetime, run: _Run,
            policy: str = DEFAULT_DCC_SIGNER_VALIDITY) -> None:
    """iat <= at <= exp, and (with a verified signer) the signer's validity under `policy`."""
    if not isinstance(at, datetime):
        run.fail("expiry", "CLOCK_UNTRUSTED", "no validation clock")
        return
    now = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()
    if claims.time_problem is not None:  # e.g. a NaN exp, which every comparison would pass
        run.fail("expiry", "DCC_CLAIMS_INVALID", claims.time_problem)
        return
    if claims.iat is None or claims.exp is None:
        run.fail("expiry", "DCC_CLAIMS_MISSING", "issued-at or expiry claim missing")
        return
    if now < claims.iat:
        run.fail("expiry", "DCC_NOT_YET_VALID", "validation time is before the issue time")
    elif now > claims.exp:
        run.fail("expiry", "DCC_EXPIRED", "validation time is after the expiry time")
    else:
        problem = None if signer is None else _signer_validity_problem(
            claims.iat, claims.exp, signer, now, policy)
        if problem:
            run.fail("expiry", "DCC_SIGNER_VALIDITY", problem)
        else:
            run.ok("expiry")


def _signer_validity_problem(iat: float, exp: float, signer: DccSigner, now: float,
                             policy: str) -> str | None:
    """Why the signing certificate's validity period refuses this DCC under `policy`, or None.
    An unknown policy applies both rules (never widens what is accepted)."""
    not_before, not_after = signer.not_before.timestamp(), signer.not_after.timestamp()
    if policy != DCC_SIGNER_COVERS_DCC:  # the reference apps: valid when the code is checked
        if now < not_before:
            return "the signing certificate is not valid yet at the validation time"
        if now > not_after:
            return "the signing certificate has expired at the validation time"
    if policy != DCC_SIGNER_AT_VALIDATION_TIME:  # hcert spec 3.3.5/3.3.6, strictly
        if iat < not_before:
            return "issued before the signing certificate's validity"
        if exp > not_after:
            return "expires after the signing certificate does"
    return None


def _schema(claims: Claims, trust: TrustStore, run: _Run) -> None:
    problem = schema.schema_problem(claims.dcc)
    if problem:
        run.fail("schema", "DCC_SCHEMA_INVALID", problem)
        return
    valuesets = getattr(trust, "dcc_valuesets", None)
    if isinstance(valuesets, dict) and valuesets:
        problem = schema.valueset_problem(claims.dcc, valuesets)
        if problem:
            run.fail("schema", "DCC_VALUESET_UNKNOWN", problem)
            return
    run.ok("schema")


def _uvci(dcc: Decoded) -> str | None:
    kind = schema.entry_type(dcc)
    if kind is None or not isinstance(dcc[kind], list) or not dcc[kind]:
        return None
    entry = dcc[kind][0]
    ci = entry.get("ci") if isinstance(entry, dict) else None
    return ci if isinstance(ci, str) else None


def _verdict(run: _Run, payload: dict[str, Decoded] | None = None, uvci: str | None = None) -> Verdict:
    failure = run.first_failure()
    if failure is None and not all(run.checks[s] for s in STAGES if s not in ("rules", "revocation")):
        failure = "INTERNAL_ERROR"  # a stage that must run did not: never accept
    return Verdict(valid=failure is None, format="dcc", failure=failure, payload=payload,
                   checks=dict(run.checks), credential_id=uvci,
                   extras={"details": dict(run.details), **run.info})
