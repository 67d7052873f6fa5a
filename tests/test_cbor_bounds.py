"""Issue 15: CBOR value sharing, unused tags, trailing bytes and every decoding bound, in each CBOR
format (DCC, NZCP, status code, status record, member gallery), at the bound and one past it."""
from __future__ import annotations

import zlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings

from firmware.credentials import verify
from firmware.credentials.base45 import b45encode
from firmware.credentials.certlogic import engine
from firmware.credentials.certlogic.values import CertLogicError
from firmware.credentials.cose_sign1 import (
    MAX_COSE_BYTES,
    MAX_COSE_DEPTH,
    MAX_COSE_NODES,
    MAX_HEADER_NODES,
    CoseError,
    decode_sign1,
)
from firmware.demo.issuers.cose import encode_sign1
from firmware.credentials.dcc import codec, schema
from firmware.demo.issuers.dcc import encode_hc1
from firmware.credentials.nzcp import codec as nzcp_codec
from firmware.credentials.status import code as status_code
from firmware.credentials.status.code import StatusFormatError
from firmware.protocol import cbor as bounded_cbor
from firmware.vision import gallery
from tests import cbor_attacks as attacks
from tests.dcc_helpers import make_key, vaccination

_UNBOUNDED = {"max_bytes": 10**9, "max_nodes": 10**9, "max_depth": 10**6}
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nodes(data: bytes) -> int:
    """The data items in `data`, counted by the walker with no bound and every tag allowed."""
    return bounded_cbor.check(data, allowed_tags=range(28), **_UNBOUNDED)


def nested(levels: int) -> bytes:
    """[[[...0...]]]: 0 at depth `levels`."""
    return b"\x81" * levels + b"\x00"


def zeros(count: int) -> bytes:
    """An array of `count` zeros: count + 1 data items."""
    return cbor2.dumps([0] * count)


def padded(document: Any, total: int) -> bytes:
    """`document` (holding one `attacks._MARK`) with an array of zeros in place of the mark,
    sized so that the whole has exactly `total` data items."""
    base = nodes(attacks.splice(document, cbor2.dumps(0)))  # the mark as one node
    return attacks.splice(document, zeros(total - base))


# -- the shared helper -------------------------------------------------------------------------
def test_value_sharing_is_refused_even_when_allowed() -> None:
    bomb = attacks.shared_list_bomb(2, 3)
    with pytest.raises(bounded_cbor.CborRefused) as caught:
        bounded_cbor.check(bomb, max_bytes=1024, allowed_tags={28, 29})
    assert caught.value.problem == "value_sharing" and not caught.value.structural


def test_a_tag_outside_the_allow_list_is_refused() -> None:
    data = cbor2.dumps(cbor2.CBORTag(1, 0))
    assert bounded_cbor.check(data, max_bytes=64, allowed_tags={1}) == 2
    with pytest.raises(bounded_cbor.CborRefused) as caught:
        bounded_cbor.check(data, max_bytes=64, allowed_tags={0})
    assert caught.value.problem == "tag" and caught.value.structural


@pytest.mark.parametrize("data", [b"\x00\x00", cbor2.dumps([1, 2]) + b"\xff", b"\xa0\x00"])
def test_trailing_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(bounded_cbor.CborRefused) as caught:
        bounded_cbor.check(data, max_bytes=64)
    assert caught.value.problem == "trailing_bytes"


@pytest.mark.parametrize("data", [b"", b"\x82\x00", b"\x5a\xff\xff\xff\xff", b"\x1c", b"\xff",
                                  b"\x9f\x00", b"\x5f\x61\x61\xff", b"\x3f", b"\xdf\x00",
                                  b"\x9b" + b"\xff" * 8])
def test_malformed_input_is_refused_without_decoding(data: bytes) -> None:
    with pytest.raises(bounded_cbor.CborRefused) as caught:
        bounded_cbor.check(data, max_bytes=64)
    assert caught.value.problem == "malformed"


def test_indefinite_lengths_are_walked_and_counted() -> None:
    data = b"\x9f\x01\x5f\x41\x61\x41\x62\xff\xbf\x61\x6b\x00\xff\xff"  # [_ 1, (_ h'61', h'62'), {_ "k": 0}]
    assert cbor2.loads(data) == [1, b"ab", {"k": 0}]
    assert bounded_cbor.loads(data, max_bytes=64) == [1, b"ab", {"k": 0}]
    assert nodes(data) == 8  # array, 1, string, 2 chunks, map, key, value


def test_byte_bound_at_and_past() -> None:
    data = cbor2.dumps(b"x" * 100)
    assert bounded_cbor.check(data, max_bytes=len(data)) == 1
    with pytest.raises(bounded_cbor.CborRefused, match="too_large"):
        bounded_cbor.check(data, max_bytes=len(data) - 1)


def test_node_bound_at_and_past() -> None:
    assert bounded_cbor.check(zeros(99), max_bytes=1024, max_nodes=100) == 100
    with pytest.raises(bounded_cbor.CborRefused, match="too_many_nodes"):
        bounded_cbor.check(zeros(100), max_bytes=1024, max_nodes=100)


def test_depth_bound_at_and_past() -> None:
    assert bounded_cbor.check(nested(5), max_bytes=64, max_depth=5) == 6
    with pytest.raises(bounded_cbor.CborRefused, match="too_deep"):
        bounded_cbor.check(nested(6), max_bytes=64, max_depth=5)
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.CBORTag(18, 0)))  # tags count as depth too
    with pytest.raises(bounded_cbor.CborRefused, match="too_deep"):
        bounded_cbor.check(tagged, max_bytes=64, allowed_tags={18}, max_depth=1)


def test_a_huge_declared_count_costs_only_the_items_present() -> None:
    # 2**64-1 elements declared, three present: refused as truncated after four nodes.
    with pytest.raises(bounded_cbor.CborRefused, match="truncated"):
        bounded_cbor.check(b"\x9b" + b"\xff" * 8 + b"\x00\x00\x00", max_bytes=64)


def test_the_walk_stops_at_the_node_budget() -> None:
    """The work is bounded by the node budget, not by the input: a walk over 1e5 items stops
    at item max_nodes + 1."""
    data = zeros(100_000)
    with pytest.raises(bounded_cbor.CborRefused) as caught:
        bounded_cbor.check(data, max_bytes=len(data), max_nodes=64)
    assert caught.value.detail == "more than 64 data items"


# -- shared-reference bombs inside correctly signed credentials ---------------------------------
_BENIGN = {"dcc": cbor2.dumps(vaccination()["v"]), "dcc-unprotected": cbor2.dumps(0),
           "nzcp": cbor2.dumps({"givenName": "Pat", "familyName": "Example", "dob": "1970-01-01"}),
           "status-code": cbor2.dumps(0), "status-record": cbor2.dumps(0),
           "gallery": cbor2.dumps(0)}
BOMB_MAX_DEPTH = max(bounded_cbor.DEFAULT_MAX_DEPTH, codec.MAX_CLAIMS_DEPTH)


@pytest.mark.parametrize("fmt", attacks.FORMATS)
def test_the_credential_around_the_bomb_is_accepted_with_a_benign_value(fmt: str) -> None:
    assert attacks.run_format(fmt, _BENIGN[fmt]) == attacks.Outcome(False, None)


@pytest.mark.parametrize("fan_out", range(2, 9))
@pytest.mark.parametrize("fmt", attacks.FORMATS)
def test_shared_reference_bomb_is_refused(fmt: str, fan_out: int) -> None:
    """fan_out**depth nodes as a tree (8**16 = 2.8e14 at the deepest) from a few hundred bytes:
    refused with the format's code at every depth, under the memory budget."""
    for depth in range(1, BOMB_MAX_DEPTH + 1):
        bomb = attacks.shared_list_bomb(fan_out, depth)
        outcome, peak = attacks.peak_bytes(lambda: attacks.run_format(fmt, bomb))
        assert outcome == attacks.Outcome(True, attacks.REFUSED_CODE[fmt]), (depth, outcome)
        assert peak < attacks.MEMORY_BUDGET_BYTES, (depth, peak)


def test_the_issue_15_code_is_refused_cheaply() -> None:
    """Fan-out 4, depth 13: 67 million nodes as a tree, 261 characters of HC1 text in the issue."""
    text = attacks.dcc_with(attacks.shared_list_bomb(4, 13))
    verdict, peak = attacks.peak_bytes(lambda: verify(text, attacks.DCC_TRUST, attacks.DCC_AT))
    assert verdict.failure == "DCC_CBOR_REFUSED" and not verdict.valid
    assert verdict.checks["signature"] is True and verdict.checks["cbor"] is False
    assert verdict.payload is None
    assert peak < attacks.MEMORY_BUDGET_BYTES


@HYPOTHESIS
@given(attacks.shared_reference_cbor())
def test_random_shared_references_are_refused_in_nzcp_and_the_gallery(hostile: bytes) -> None:
    for fmt in ("nzcp", "gallery"):
        outcome, peak = attacks.peak_bytes(lambda: attacks.run_format(fmt, hostile))
        assert outcome == attacks.Outcome(True, attacks.REFUSED_CODE[fmt])
        assert peak < attacks.MEMORY_BUDGET_BYTES


@HYPOTHESIS
@given(attacks.cbor_items())
def test_random_tagged_cbor_never_raises_in_nzcp_and_the_gallery(hostile: bytes) -> None:
    for fmt in ("nzcp", "gallery"):
        outcome, peak = attacks.peak_bytes(lambda: attacks.run_format(fmt, hostile))
        assert peak < attacks.MEMORY_BUDGET_BYTES
        if fmt == "nzcp" and outcome.refused:
            assert outcome.code in ("NZCP_CBOR_REFUSED", "NZCP_PAYLOAD_INVALID",
                                    "NZCP_CLAIMS_INVALID")


# -- the DCC: decompression, COSE and claims bounds ---------------------------------------------
def test_decompressed_size_at_and_past_the_bound() -> None:
    exact = b"\0" * codec.MAX_DECOMPRESSED_BYTES
    assert codec.inflate(zlib.compress(exact)) == exact
    with pytest.raises(codec.DecodeError) as caught:
        codec.inflate(zlib.compress(exact + b"\0"))
    assert caught.value.code == "DCC_TOO_LARGE"


def test_bytes_after_the_zlib_stream_are_refused() -> None:
    good = attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims()))
    assert verify(good, attacks.DCC_TRUST, attacks.DCC_AT).valid
    cose = codec.inflate(b45_to_compressed(good))
    for tail in (b"\0", b"x" * 100, zlib.compress(b"more")):
        text = "HC1:" + b45encode(zlib.compress(cose, 9) + tail)
        verdict = verify(text, attacks.DCC_TRUST, attacks.DCC_AT)
        assert verdict.failure == "DCC_ZLIB_INVALID" and verdict.checks["zlib"] is False


def test_bytes_after_the_cose_structure_are_refused() -> None:
    good = attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims()))
    cose = codec.inflate(b45_to_compressed(good))
    for tail in (b"\0", cose):
        verdict = verify(encode_hc1(cose + tail), attacks.DCC_TRUST, attacks.DCC_AT)
        assert verdict.failure == "DCC_COSE_INVALID" and verdict.checks["cose"] is False


def b45_to_compressed(text: str) -> bytes:
    from firmware.credentials.base45 import b45decode

    return b45decode(text[4:])


def test_cose_byte_bound_at_and_past() -> None:
    key = make_key("ec")
    # ES256 signatures have a fixed length, and so does the payload's length header in this
    # range: the message grows byte for byte with the payload.
    overhead = len(encode_sign1(b"\0" * 1000, key, kid=b"k")) - 1000
    for size, ok in ((MAX_COSE_BYTES, True), (MAX_COSE_BYTES + 1, False)):
        message = encode_sign1(b"\0" * (size - overhead), key, kid=b"k")
        assert len(message) == size
        if ok:
            decode_sign1(message)
        else:
            with pytest.raises(CoseError, match="too_large"):
                decode_sign1(message)


def _cose_with_unprotected(total_nodes: int) -> bytes:
    key = make_key("ec")
    protected, _, payload, signature = cbor2.loads(encode_sign1(b"p", key, kid=b"k")).value
    document = cbor2.CBORTag(18, [protected, {99: attacks._MARK}, payload, signature])
    return padded(document, total_nodes)


def test_cose_node_bound_at_and_past() -> None:
    decode_sign1(_cose_with_unprotected(MAX_COSE_NODES))
    with pytest.raises(CoseError) as caught:
        decode_sign1(_cose_with_unprotected(MAX_COSE_NODES + 1))
    assert caught.value.code == "refused"


def test_cose_depth_bound_at_and_past() -> None:
    key = make_key("ec")
    protected, _, payload, signature = cbor2.loads(encode_sign1(b"p", key, kid=b"k")).value

    def message(levels: int) -> bytes:
        # tag 18 (depth 0) > array (1) > map (2) > value at depth 3, nested `levels` more
        return attacks.splice(cbor2.CBORTag(18, [protected, {99: attacks._MARK}, payload, signature]),
                              nested(levels))

    decode_sign1(message(MAX_COSE_DEPTH - 3))
    with pytest.raises(CoseError) as caught:
        decode_sign1(message(MAX_COSE_DEPTH - 2))
    assert caught.value.code == "refused"


def test_protected_header_node_bound_at_and_past() -> None:
    def header(total: int) -> bytes:
        return padded({1: -7, 99: attacks._MARK}, total)

    decode_sign1(cbor2.dumps([header(MAX_HEADER_NODES), {}, b"", b""]))
    with pytest.raises(CoseError) as caught:
        decode_sign1(cbor2.dumps([header(MAX_HEADER_NODES + 1), {}, b"", b""]))
    assert caught.value.code == "refused"


def _dcc_claims_with(hostile: bytes) -> bytes:
    dcc = vaccination()
    dcc["pad"] = attacks._MARK
    return attacks.splice(attacks.dcc_claims(dcc), hostile)


def test_dcc_claims_node_bound_at_and_past() -> None:
    base = nodes(_dcc_claims_with(cbor2.dumps(0)))
    at_bound = _dcc_claims_with(zeros(codec.MAX_CLAIMS_NODES - base))
    assert nodes(at_bound) == codec.MAX_CLAIMS_NODES
    codec.decode_claims(at_bound)  # within every bound: decodes
    with pytest.raises(codec.DecodeError) as caught:
        codec.decode_claims(_dcc_claims_with(zeros(codec.MAX_CLAIMS_NODES - base + 1)))
    assert caught.value.code == "DCC_CBOR_REFUSED"


def test_dcc_claims_depth_bound_at_and_past() -> None:
    # claims map (0) > -260 map (1) > {1: dcc} value (2) > "pad" value (3) > ...
    codec.decode_claims(_dcc_claims_with(nested(codec.MAX_CLAIMS_DEPTH - 3)))
    with pytest.raises(codec.DecodeError) as caught:
        codec.decode_claims(_dcc_claims_with(nested(codec.MAX_CLAIMS_DEPTH - 2)))
    assert caught.value.code == "DCC_CBOR_REFUSED"


def test_dcc_claims_tags_dates_allowed_others_not() -> None:
    for tag, value in ((0, "2021-05-01T00:00:00Z"), (1, 1_619_827_200), (1004, "2021-05-01")):
        claims = codec.decode_claims(_dcc_claims_with(cbor2.dumps(cbor2.CBORTag(tag, value))))
        assert claims.dcc["pad"].startswith("2021-05-01")
    for tag in (2, 25, 30, 37, 100, 258, 55799):
        with pytest.raises(codec.DecodeError) as caught:
            codec.decode_claims(_dcc_claims_with(cbor2.dumps(cbor2.CBORTag(tag, b"\x01"))))
        assert caught.value.code == "DCC_CBOR_INVALID" and f"tag {tag}" in caught.value.detail


def test_json_conversion_node_bound_at_and_past() -> None:
    assert len(codec.to_json([0] * (codec.MAX_JSON_NODES - 1))) == codec.MAX_JSON_NODES - 1
    with pytest.raises(codec.JsonBudgetError):
        codec.to_json([0] * codec.MAX_JSON_NODES)


def test_json_conversion_depth_bound_at_and_past() -> None:
    def deep(levels: int) -> Any:
        value: Any = 0
        for _ in range(levels):
            value = [value]
        return value

    codec.to_json(deep(codec.MAX_DEPTH))
    with pytest.raises(codec.JsonBudgetError):
        codec.to_json(deep(codec.MAX_DEPTH + 1))


def test_json_conversion_of_a_shared_graph_stops_at_the_budget() -> None:
    """What cbor2 builds from value sharing (one list referenced 8 times, 16 deep): the walk is
    refused after MAX_JSON_NODES values instead of visiting 8**16."""
    value: list[Any] = []
    for _ in range(16):
        value = [value] * 8
    _, peak = attacks.peak_bytes(lambda: pytest.raises(codec.JsonBudgetError, codec.to_json, value))
    assert peak < attacks.MEMORY_BUDGET_BYTES


def test_schema_node_bound_at_and_past() -> None:
    def dcc(total: int) -> dict[str, Any]:
        doc = vaccination()
        doc["nam"]["pad"] = [0] * (total - _json_nodes(vaccination()) - 1)  # the list is one
        return doc

    assert _json_nodes(dcc(schema.MAX_SCHEMA_NODES)) == schema.MAX_SCHEMA_NODES
    assert "more than" not in (schema.schema_problem(dcc(schema.MAX_SCHEMA_NODES)) or "")
    assert "more than" in (schema.schema_problem(dcc(schema.MAX_SCHEMA_NODES + 1)) or "")


def _json_nodes(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_json_nodes(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_json_nodes(v) for v in value)
    return 1


def test_certlogic_data_node_bound_at_and_past() -> None:
    from firmware.credentials.certlogic import rules as certlogic_rules

    rule = certlogic_rules.parse_rules([{
        "Identifier": "GR-XA-0001", "Type": "Acceptance", "Country": "XA", "Version": "1.0.0",
        "SchemaVersion": "1.0.0", "Engine": "CERTLOGIC", "EngineVersion": "1.0.0",
        "CertificateType": "General", "Description": [{"lang": "en", "desc": "d"}],
        "ValidFrom": "2021-01-01T00:00:00Z", "ValidTo": "2030-01-01T00:00:00Z",
        "AffectedFields": ["pad"], "Logic": {"reduce": [{"var": "payload.pad"},
                                                   {"+": [{"var": "accumulator"}, 1]}, 0]}}])
    def outcome(count: int) -> Any:
        payload = {"ver": "1.3.0", "pad": [0] * count}
        return certlogic_rules.run_rules(rule, payload, {})[0]

    within = outcome(certlogic_rules.MAX_DATA_NODES - 3)  # payload dict, "ver", list: 3 values
    assert "more than" not in (within.reason or "")
    past = outcome(certlogic_rules.MAX_DATA_NODES - 2)
    assert past.outcome.name == "OPEN" and "more than" in (past.reason or "")


def test_certlogic_evaluation_step_bound_at_and_past() -> None:
    # An array literal [1, 1, ...]: one step for the array and one per element.
    engine.evaluate([1] * (engine.MAX_EVALUATION_STEPS - 1), {})
    with pytest.raises(CertLogicError, match="steps"):
        engine.evaluate([1] * engine.MAX_EVALUATION_STEPS, {})
    # A reduce over a data array walks it element by element, each element costing steps.
    count = {"reduce": [{"var": "xs"}, {"+": [{"var": "accumulator"}, 1]}, 0]}
    assert engine.evaluate(count, {"xs": [0] * 100}) == 100
    with pytest.raises(CertLogicError, match="steps"):
        engine.evaluate(count, {"xs": [0] * engine.MAX_EVALUATION_STEPS})


# -- NZCP, status and gallery bounds -------------------------------------------------------------
def test_nzcp_claims_node_and_depth_bounds() -> None:
    def claims(hostile: bytes) -> bytes:
        return attacks.splice(attacks.nzcp_claims(subject=attacks._MARK), hostile)

    base = nodes(claims(cbor2.dumps(0)))
    nzcp_codec.decode_claims(claims(zeros(nzcp_codec.MAX_CLAIMS_NODES - base)))
    with pytest.raises(nzcp_codec.NzcpFormatError) as caught:
        nzcp_codec.decode_claims(claims(zeros(nzcp_codec.MAX_CLAIMS_NODES - base + 1)))
    assert caught.value.code == "NZCP_CBOR_REFUSED"
    # claims map (0) > "vc" map (1) > credentialSubject value (2) > ...
    nzcp_codec.decode_claims(claims(nested(nzcp_codec.MAX_CLAIMS_DEPTH - 2)))
    with pytest.raises(nzcp_codec.NzcpFormatError) as caught:
        nzcp_codec.decode_claims(claims(nested(nzcp_codec.MAX_CLAIMS_DEPTH - 1)))
    assert caught.value.code == "NZCP_CBOR_REFUSED"


def test_nzcp_bytes_after_the_claims_are_refused() -> None:
    payload = cbor2.dumps(attacks.nzcp_claims())
    verdict = verify(attacks.signed_nzcp(payload), attacks.NZCP_TRUST, attacks.NZCP_AT)
    assert verdict.valid
    verdict = verify(attacks.signed_nzcp(payload + b"\0"), attacks.NZCP_TRUST, attacks.NZCP_AT)
    assert verdict.failure == "NZCP_PAYLOAD_INVALID"


def test_status_payload_node_and_depth_bounds() -> None:
    def payload(total: int) -> bytes:
        claims = attacks.status_code_claims()
        claims[5] = attacks._MARK
        return padded(claims, total)

    def deep(levels: int) -> bytes:
        claims = attacks.status_code_claims()
        claims[5] = attacks._MARK
        return attacks.splice(claims, nested(levels))  # map (0) > value (1) > ...

    status_code.decode_code_claims(payload(status_code.MAX_PAYLOAD_NODES))
    status_code.decode_code_claims(deep(status_code.MAX_PAYLOAD_DEPTH - 1))
    for hostile in (payload(status_code.MAX_PAYLOAD_NODES + 1), deep(status_code.MAX_PAYLOAD_DEPTH)):
        with pytest.raises(StatusFormatError) as caught:
            status_code.decode_code_claims(hostile)
        assert caught.value.code == "STATUS_CBOR_REFUSED"


def test_status_code_bytes_after_the_payload_are_refused() -> None:
    payload = cbor2.dumps(attacks.status_code_claims())
    assert verify(attacks.signed_status_code(payload), attacks.STATUS_TRUST, attacks.STATUS_AT).valid
    verdict = verify(attacks.signed_status_code(payload + b"\0"), attacks.STATUS_TRUST,
                     attacks.STATUS_AT)
    assert verdict.failure == "STATUS_PAYLOAD_INVALID"


def test_a_refused_record_is_counted_at_sync() -> None:
    cache = attacks.StatusRecordCache(attacks.STATUS_KEYS)
    report = cache.apply_sync([attacks.status_record_with(attacks.shared_list_bomb(8, 16))],
                              attacks.STATUS_AT)
    assert report.refused == 1 and report.stored == 0


def test_gallery_item_node_bound_at_and_past() -> None:
    def plain(total: int) -> bytes:
        return padded({"m": "member-1", "t": b"\0\0\0\x3f" * 4, "x": attacks._MARK}, total)

    gallery.decode_gallery(attacks.gallery_file(plain(gallery.MAX_ITEM_NODES)), attacks.GALLERY_KEY)
    with pytest.raises(gallery.GalleryError, match="malformed"):
        gallery.decode_gallery(attacks.gallery_file(plain(gallery.MAX_ITEM_NODES + 1)),
                               attacks.GALLERY_KEY)


# -- authenticate first ----------------------------------------------------------------------------
def test_an_unauthenticated_dcc_payload_is_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged or unsigned payload never reaches the claims decoder, to_json, the schema, the
    rules or the revocation lookup; a correctly signed one does."""
    from firmware.credentials.dcc import pipeline, revocation, rules

    reached: list[str] = []
    for module, name in ((codec, "decode_claims"), (codec, "to_json"), (schema, "schema_problem"),
                         (rules, "run_stage"), (revocation, "run_stage")):
        original = getattr(module, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            reached.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    payload = cbor2.dumps(attacks.dcc_claims())
    good = attacks.signed_dcc(payload)
    kid = decode_sign1(codec.inflate(b45_to_compressed(good))).kid
    # Same kid, same payload: signed by another key, and not signed at all.
    forged_cose = encode_sign1(payload, make_key("ec"), kid=kid)
    unsigned = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: kid}), {}, payload, b""]))
    for text, failure in ((encode_hc1(forged_cose), "DCC_SIGNATURE_INVALID"),
                          (encode_hc1(unsigned), "DCC_SIGNATURE_INVALID")):
        verdict = verify(text, attacks.DCC_TRUST, attacks.DCC_AT)
        assert verdict.failure == failure and verdict.payload is None
        assert reached == [] and verdict.checks["cbor"] is None
    assert pipeline.verify_dcc(good, attacks.DCC_TRUST, attacks.DCC_AT).valid
    assert reached[:2] == ["decode_claims", "to_json"] and "schema_problem" in reached
