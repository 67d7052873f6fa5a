"""Issue 11 item 7: the signing certificate's validity against the DCC's iat/exp, both policies,
the configuration key and its path to the verifier (docs/credentials.md)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from firmware import config as config_module
from firmware.config import ConfigError, load_config, parse_config
from firmware.credentials import TrustStore, verify
from firmware.demo.issuers.dcc import issue_dcc
from firmware.credentials.trust import (
    DCC_SIGNER_AT_VALIDATION_TIME,
    DCC_SIGNER_COVERS_DCC,
    DCC_SIGNER_VALIDITY_POLICIES,
    DEFAULT_DCC_SIGNER_VALIDITY,
    dcc_kid,
)
from firmware.trustprovider import TrustProvider
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

ISSUED, EXPIRES = T0, T0 + timedelta(days=365)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "kiosk.toml"
CAMERA = {"source": "fake"}  # a configuration needs a usable camera section


def _verdict(not_before: datetime, not_after: datetime, at: datetime, policy: str | None):
    key = make_key("ec")
    der = make_cert(key, not_before=not_before, not_after=not_after)
    text = issue_dcc(vaccination(), key, dcc_kid(der), ISSUED, EXPIRES, "XA")
    trust = TrustStore.from_certificates([der])
    if policy is not None:
        trust.dcc_signer_validity = policy
    return verify(text, trust, at)


def test_default_is_at_validation_time() -> None:
    assert DEFAULT_DCC_SIGNER_VALIDITY == DCC_SIGNER_AT_VALIDATION_TIME
    assert TrustStore().dcc_signer_validity == DCC_SIGNER_AT_VALIDATION_TIME
    config = parse_config({"camera": CAMERA})
    assert config.kiosk.dcc_signer_validity == DCC_SIGNER_AT_VALIDATION_TIME


# (DSC notBefore, DSC notAfter, validation time) -> accepted under (at-validation-time, covers-dcc)
CASES = {
    # the field case: the DCC expires (day 365) after its DSC (day 100), checked on day 10
    "dcc outlives its dsc": (T0 - timedelta(days=30), T0 + timedelta(days=100),
                             T0 + timedelta(days=10), (True, False)),
    # the DSC expired before the code is checked: refused either way (the reference apps too)
    "dsc expired at the clock": (T0 - timedelta(days=30), T0 + timedelta(days=100),
                                 T0 + timedelta(days=101), (False, False)),
    # DSC valid from day 5: a DCC claiming day 0 as its issue time, checked on day 10
    "issued before the dsc": (T0 + timedelta(days=5), T0 + timedelta(days=730),
                              T0 + timedelta(days=10), (True, False)),
    # the DSC is not valid yet when the code is checked
    "dsc not valid yet at the clock": (T0 + timedelta(days=20), T0 + timedelta(days=730),
                                       T0 + timedelta(days=10), (False, False)),
    # the DSC covers the DCC's whole life: accepted either way
    "dsc covers the dcc": (T0 - timedelta(days=30), T0 + timedelta(days=730),
                           T0 + timedelta(days=10), (True, True)),
    # bounds: checked exactly at the DSC's notAfter (accepted), one second past (refused)
    "clock at notAfter": (T0 - timedelta(days=30), T0 + timedelta(days=100),
                          T0 + timedelta(days=100), (True, False)),
    "clock one second past notAfter": (T0 - timedelta(days=30), T0 + timedelta(days=100),
                                       T0 + timedelta(days=100, seconds=1), (False, False)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("policy", DCC_SIGNER_VALIDITY_POLICIES)
def test_policy(name: str, policy: str) -> None:
    not_before, not_after, at, accepted = CASES[name]
    expected = accepted[DCC_SIGNER_VALIDITY_POLICIES.index(policy)]
    verdict = _verdict(not_before, not_after, at, policy)
    assert verdict.valid is expected, verdict.extras["details"]
    if not expected:
        assert verdict.failure == "DCC_SIGNER_VALIDITY" and verdict.checks["expiry"] is False
        assert "signing certificate" in verdict.extras["details"]["expiry"]


def test_an_unknown_policy_applies_both_rules() -> None:
    # never widens: refused like covers-dcc, and like at-validation-time
    assert _verdict(*CASES["dcc outlives its dsc"][:3], "typo").failure == "DCC_SIGNER_VALIDITY"
    assert _verdict(*CASES["dsc expired at the clock"][:3], "typo").failure == "DCC_SIGNER_VALIDITY"
    assert _verdict(*CASES["dsc covers the dcc"][:3], "typo").valid


def test_config_key_is_validated() -> None:
    config = parse_config({"camera": CAMERA,
                           "kiosk": {"dcc_signer_validity": DCC_SIGNER_COVERS_DCC}})
    assert config.kiosk.dcc_signer_validity == DCC_SIGNER_COVERS_DCC
    with pytest.raises(ConfigError, match="kiosk.dcc_signer_validity: must be one of"):
        parse_config({"camera": CAMERA, "kiosk": {"dcc_signer_validity": "never"}})
    with pytest.raises(ConfigError, match="kiosk.dcc_signer_validity: expected str"):
        parse_config({"camera": CAMERA, "kiosk": {"dcc_signer_validity": True}})
    # the configuration keeps its own copy of the names (stays importable on its own)
    assert config_module.DCC_SIGNER_VALIDITY_CHOICES == DCC_SIGNER_VALIDITY_POLICIES


def test_example_configuration_states_the_default() -> None:
    text = EXAMPLE.read_text("utf-8")
    assert f'dcc_signer_validity = "{DEFAULT_DCC_SIGNER_VALIDITY}"' in text
    assert load_config(EXAMPLE).kiosk.dcc_signer_validity == DEFAULT_DCC_SIGNER_VALIDITY


@pytest.mark.parametrize("policy", DCC_SIGNER_VALIDITY_POLICIES)
def test_trust_provider_hands_the_policy_to_the_verifier(tmp_path: Path, policy: str) -> None:
    provider = TrustProvider(tmp_path, dcc_signer_validity=policy)
    assert provider().dcc_signer_validity == policy  # the loaded store carries it
    assert TrustProvider(tmp_path)().dcc_signer_validity == DEFAULT_DCC_SIGNER_VALIDITY


def test_healthgate_check_takes_the_policy(tmp_path: Path) -> None:
    import io

    from firmware.credentials.check import main
    not_before, not_after, at, _ = CASES["dcc outlives its dsc"]
    key = make_key("ec")
    der = make_cert(key, not_before=not_before, not_after=not_after)
    (tmp_path / "dcc-certs").mkdir()
    (tmp_path / "dcc-certs" / "dsc.der").write_bytes(der)
    text = issue_dcc(vaccination(), key, dcc_kid(der), ISSUED, EXPIRES, "XA")
    common = [text, "--trust", str(tmp_path), "--at", at.isoformat()]
    assert main(common, io.StringIO()) == 0  # the default: accepted, as the reference apps
    assert main([*common, "--dcc-signer-validity", DCC_SIGNER_AT_VALIDATION_TIME],
                io.StringIO()) == 0
    out = io.StringIO()
    assert main([*common, "--dcc-signer-validity", DCC_SIGNER_COVERS_DCC], out) == 1
    assert "DCC_SIGNER_VALIDITY" in out.getvalue()
    with pytest.raises(SystemExit) as caught:
        main([text, "--dcc-signer-validity", "never"], io.StringIO())
    assert caught.value.code == 2
