"""Issue HC1 credentials (for the demo, tests and benchmarks): the exact inverse of the verifier."""
from __future__ import annotations

import zlib
from datetime import datetime

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from firmware.credentials.base45 import b45encode
from firmware.credentials.dcc.codec import CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS, PREFIX
from firmware.demo.issuers.cose import encode_sign1
from firmware.protocol.decoded import Decoded

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def sign1(payload: bytes, key: PrivateKey, kid: bytes | None, *, kid_unprotected: bool = False,
          tagged: bool = True) -> bytes:
    """A COSE_Sign1 over `payload`: ES256 for an EC P-256 key, PS256 for an RSA key."""
    return encode_sign1(payload, key, kid=kid, kid_unprotected=kid_unprotected, tagged=tagged)


def cwt_payload(dcc: dict[str, Decoded], issued: datetime, expires: datetime,
                issuer: str | None = None) -> bytes:
    """The CBOR CWT claims carrying `dcc` as claim -260/1."""
    claims: dict[int, Decoded] = {CLAIM_IAT: int(issued.timestamp()), CLAIM_EXP: int(expires.timestamp()),
                              CLAIM_HCERT: {1: dcc}}
    if issuer is not None:
        claims[CLAIM_ISS] = issuer
    return cbor2.dumps(claims)


def encode_hc1(cose: bytes) -> str:
    """COSE bytes -> ZLIB -> base45 -> `HC1:` text, as printed in the QR code."""
    return PREFIX + b45encode(zlib.compress(cose, 9))


def issue_dcc(dcc: dict[str, Decoded], key: PrivateKey, kid: bytes, issued: datetime,
              expires: datetime, issuer: str | None = None) -> str:
    """A complete, signed `HC1:` credential for `dcc`."""
    return encode_hc1(sign1(cwt_payload(dcc, issued, expires, issuer), key, kid))
