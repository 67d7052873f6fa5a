"""A DCC's claims (expiry, key usage, schema, rules, revocation) are never read before its signature."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import cbor2
import pytest

from firmware.credentials import TrustStore, verify
from firmware.credentials.dcc import keyusage, pipeline, revocation, rules, schema
from firmware.credentials.trust import dcc_kid
from firmware.demo.issuers.dcc import cwt_payload, encode_hc1, sign1
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

AT = T0 + timedelta(days=10)
# The stages that read the claims, and the module attribute each one runs through.
CLAIM_STAGES = ((pipeline, "_expiry"), (keyusage, "problem"), (schema, "schema_problem"),
                (schema, "valueset_problem"), (rules, "run_stage"), (revocation, "run_stage"))
POISON = "poison-for-the-schema-validator"


@pytest.fixture
def reached(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The claim stages a verification entered, in order (each still runs for real); the schema
    validator crashes on a DCC whose name carries POISON."""
    calls: list[str] = []
    for module, name in CLAIM_STAGES:
        original = getattr(module, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            if _name == "schema_problem" and POISON in repr(args[0]):
                raise RuntimeError("schema validator crashed")  # what a validator bug would do
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def _texts(dcc: dict[str, Any]) -> tuple[str, str, str, TrustStore]:
    """(signed, forged under the signer's kid, unsigned) HC1 texts of `dcc`, and its trust."""
    key = make_key("ec")
    der = make_cert(key)
    kid = dcc_kid(der)
    payload = cwt_payload(dcc, T0, T0 + timedelta(days=365), "XA")
    signed = encode_hc1(sign1(payload, key, kid))
    forged = encode_hc1(sign1(payload, make_key("ec"), kid))
    unsigned = encode_hc1(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: kid}), {},
                                                          payload, b""])))
    trust = TrustStore.from_certificates([der])
    # with a value set loaded, the value-set lookup runs too (an unknown code fails it: fine here)
    trust.dcc_valuesets = {"disease-agent-targeted": {"valueSetId": "disease-agent-targeted",
                                                      "valueSetValues": {"840539006": {}}}}
    return signed, forged, unsigned, trust


def test_a_signed_dcc_runs_every_claim_stage(reached: list[str]) -> None:
    signed, _, _, trust = _texts(vaccination())
    verdict = verify(signed, trust, AT)
    # The spies are live: a correctly signed DCC goes through every stage that reads claims.
    assert sorted(reached) == sorted(name for _, name in CLAIM_STAGES)
    assert verdict.checks["signature"] and verdict.checks["expiry"] is not None


def test_an_unauthenticated_dcc_reaches_no_claim_stage(reached: list[str]) -> None:
    _, forged, unsigned, trust = _texts(vaccination())
    for text in (forged, unsigned):
        verdict = verify(text, trust, AT)
        assert (verdict.valid, verdict.failure) == (False, "DCC_SIGNATURE_INVALID")
        assert verdict.payload is None and reached == []
        assert all(verdict.checks[stage] is None for stage in
                   ("cbor", "expiry", "key_usage", "schema", "rules", "revocation"))


def test_a_claim_that_crashes_the_schema_validator_is_never_evaluated_unsigned(
        reached: list[str]) -> None:
    dcc = vaccination()
    dcc["nam"]["fn"] = POISON
    signed, forged, unsigned, trust = _texts(dcc)
    for text in (forged, unsigned):  # refused for its signature, the poison never read
        assert verify(text, trust, AT).failure == "DCC_SIGNATURE_INVALID"
    assert reached == []
    # Signed, the same claim does reach the validator, which crashes: a deny, not a crash.
    assert verify(signed, trust, AT).failure == "INTERNAL_ERROR"
    assert "schema_problem" in reached
