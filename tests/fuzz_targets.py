"""Fuzz targets of every decision-path parser, their code-built seed corpora and invariants
(used by bench/fuzz.py and tests/test_fuzz.py; docs/credentials.md, "Coverage-guided fuzzing")."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from firmware.credentials import verify, verify_document
from firmware.credentials.base45 import Base45Error, b45decode, b45encode
from firmware.credentials.containers import MAX_CREDENTIALS
from firmware.credentials.dcc import codec as dcc_codec
from firmware.credentials.nzcp.codec import base32_decode, base32_encode
from firmware.credentials.reasons import REASONS
from firmware.credentials.shc.codec import jws_to_numeric, numeric_to_jws
from firmware.credentials.verdict import Verdict
from firmware.protocol import cbor as bounded_cbor
from tests import cbor_attacks as attacks

# CBOR pre-pass target: the DCC claims' bounds (the widest a credential uses), read from the codec.
CBOR_MAX_BYTES, CBOR_MAX_NODES = dcc_codec.MAX_CLAIMS_BYTES, dcc_codec.MAX_CLAIMS_NODES
CBOR_MAX_DEPTH, CBOR_TAGS = dcc_codec.MAX_CLAIMS_DEPTH, tuple(sorted(dcc_codec.CLAIMS_TAGS))
# libFuzzer's -max_len: above every text bound (8,192 DCC chars), so the bounds themselves are
# reached and crossed by mutation.
MAX_INPUT_BYTES = 12_000


class BoundExceeded(AssertionError):
    """A parser accepted something past its documented bound (a finding, like an exception)."""


@dataclass(frozen=True)
class Target:
    """One parser: `run(data)` raises on a finding; `seeds()` builds its starting corpus."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def _check_verdict(verdict: Any) -> None:
    if not isinstance(verdict, Verdict):
        raise BoundExceeded(f"verify() returned {type(verdict).__name__}")
    if verdict.valid is not (verdict.failure is None):
        raise BoundExceeded(f"valid={verdict.valid!r} with failure={verdict.failure!r}")
    if verdict.failure is not None and verdict.failure not in REASONS:
        raise BoundExceeded(f"unknown reason code {verdict.failure!r}")
    if verdict.failure == "INTERNAL_ERROR":  # verify() caught a bug: a finding all the same
        raise BoundExceeded("INTERNAL_ERROR: a verifier raised")


def _verifier(trust: Callable[[], Any], at: Any,
              wrap: Callable[[bytes], str]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        _check_verdict(verify(wrap(data), trust(), at))
    return run


# -- seeds: valid credentials signed with test keys, and the attack constructions -------------
def _bombs() -> list[bytes]:
    return [attacks.shared_list_bomb(fan, depth) for fan, depth in ((2, 16), (8, 4), (3, 8))]


def dcc_texts() -> list[str]:
    good = attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims()))
    return [good, *(attacks.dcc_with(b) for b in _bombs()),
            attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims()), unprotected=_bombs()[0]),
            attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims(exp=float("nan"))))]


def _dcc_cose(text: str) -> bytes:
    return zlib.decompress(b45decode(text[len("HC1:"):]))


def nzcp_texts() -> list[str]:
    good = attacks.signed_nzcp(cbor2.dumps(attacks.nzcp_claims()))
    return [good, *(attacks.nzcp_with(b) for b in _bombs())]


def status_texts() -> list[str]:
    good = attacks.signed_status_code(cbor2.dumps(attacks.status_code_claims()))
    return [good, *(attacks.status_code_with(b) for b in _bombs())]


_SHC: list[tuple[str, Any, Any]] = []


def _shc() -> list[tuple[str, Any, Any]]:
    if not _SHC:  # built once per process: signing a card costs a key and a signature
        from firmware.demo.issuers.shc import bench_samples
        _SHC.extend(bench_samples())
    return _SHC


def shc_texts() -> list[str]:
    return [text for text, _, _ in _shc()]


def _shc_trust() -> Any:
    return _shc()[0][1]


def _shc_at() -> Any:
    return _shc()[0][2]


def _run_shc(wrap: Callable[[bytes], str]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        _check_verdict(verify(wrap(data), _shc_trust(), _shc_at()))
    return run


def _jws(text: str) -> str:
    return numeric_to_jws(text[len("shc:/"):])


def _cbor_seeds() -> list[bytes]:
    return [cbor2.dumps(attacks.dcc_claims()), cbor2.dumps(attacks.nzcp_claims()),
            cbor2.dumps(attacks.status_code_claims()), *_bombs(),
            cbor2.dumps(cbor2.CBORTag(28, [1, cbor2.CBORTag(29, 0)]))]


def _run_cbor(data: bytes) -> None:
    try:
        nodes = bounded_cbor.check(data, max_bytes=CBOR_MAX_BYTES, allowed_tags=CBOR_TAGS,
                                   max_nodes=CBOR_MAX_NODES, max_depth=CBOR_MAX_DEPTH)
    except bounded_cbor.CborRefused:
        return
    if len(data) > CBOR_MAX_BYTES or nodes > CBOR_MAX_NODES:
        raise BoundExceeded(f"check accepted {len(data)} bytes, {nodes} nodes")
    try:
        value = cbor2.loads(data)
    except Exception:  # cbor2's own refusal of content the pre-pass let through: not a finding
        return
    # what cbor2 built from accepted bytes stays inside the node and depth bounds
    if not _decoded_within(value, CBOR_MAX_NODES, CBOR_MAX_DEPTH):
        raise BoundExceeded("decoded value past the node/depth bound")


def _decoded_within(value: Any, max_nodes: int, max_depth: int) -> bool:
    """Whether a decoded CBOR value has at most `max_nodes` items (map keys and values, array
    elements, tags, scalars) at most `max_depth` deep; iterative, stops past the budget."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes or depth > max_depth:
            return False
        if isinstance(item, cbor2.CBORTag):
            stack.append((item.value, depth + 1))
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.extend(((key, depth + 1), (child, depth + 1)))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
    return True


def _run_base45(data: bytes) -> None:
    text = _text(data)
    try:
        out = b45decode(text)
    except Base45Error:
        return
    if len(out) != 2 * (len(text) // 3) + (1 if len(text) % 3 == 2 else 0):
        raise BoundExceeded(f"{len(text)} characters decoded to {len(out)} bytes")


def _run_containers(data: bytes) -> None:
    result = verify_document(data, attacks.DCC_TRUST, attacks.DCC_AT)
    if len(result.verdicts) > MAX_CREDENTIALS:
        raise BoundExceeded(f"{len(result.verdicts)} credentials in one document")
    for verdict in result.verdicts:
        _check_verdict(verdict)


def _container_seeds() -> list[bytes]:
    import json
    jws = [_jws(t) for t in shc_texts()]
    return [dcc_texts()[0].encode(), "\n".join(dcc_texts()[:2]).encode(), jws[0].encode(),
            json.dumps({"verifiableCredential": jws}).encode(),
            json.dumps({"resourceType": "Parameters", "parameter": [
                {"name": "verifiableCredential", "valueString": j} for j in jws]}).encode(),
            "\n".join(shc_texts()).encode(), b"[" * 64 + b"]" * 64]


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("dcc", _verifier(lambda: attacks.DCC_TRUST, attacks.DCC_AT, _text),
           lambda: [t.encode() for t in dcc_texts()]),
    Target("dcc-cose", _verifier(lambda: attacks.DCC_TRUST, attacks.DCC_AT,
                                 lambda d: "HC1:" + b45encode(zlib.compress(d))),
           lambda: [_dcc_cose(t) for t in dcc_texts()]),
    Target("shc", _run_shc(_text), lambda: [t.encode() for t in shc_texts()]),
    Target("shc-jws", _run_shc(lambda d: "shc:/" + jws_to_numeric(d.decode("latin-1"))),
           lambda: [_jws(t).encode("latin-1") for t in shc_texts()]),
    Target("nzcp", _verifier(lambda: attacks.NZCP_TRUST, attacks.NZCP_AT, _text),
           lambda: [t.encode() for t in nzcp_texts()]),
    Target("nzcp-cose", _verifier(lambda: attacks.NZCP_TRUST, attacks.NZCP_AT,
                                  lambda d: "NZCP:/1/" + base32_encode(d)),
           lambda: [base32_decode(t[len("NZCP:/1/"):]) for t in nzcp_texts()]),
    Target("status", _verifier(attacks.status_trust, attacks.STATUS_AT, _text),
           lambda: [t.encode() for t in status_texts()]),
    Target("status-cose", _verifier(attacks.status_trust, attacks.STATUS_AT,
                                    lambda d: "HG1:" + b45encode(d)),
           lambda: [b45decode(t[len("HG1:"):]) for t in status_texts()]),
    Target("cbor", _run_cbor, _cbor_seeds),
    Target("base45", _run_base45, lambda: [t[len("HC1:"):].encode() for t in dcc_texts()]),
    Target("containers", _run_containers, _container_seeds),
)}
