"""Business-rule sets: parsing the gateway format, selection, PASS/FAIL/OPEN, real DCC payloads."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from firmware.credentials.certlogic import (
    CertLogicError,
    Outcome,
    RuleFormatError,
    build_external,
    certificate_type_of,
    load_value_sets,
    overall,
    parse_rules,
    run_rules,
    select_rules,
)
from firmware.credentials.certlogic.datetimes import parse_date_time

UTC = timezone.utc


def _rule(identifier: str, cert_type: str, logic: Any, *, version: str = "1.0.0",
          valid_from: str = "2021-06-01T00:00:00Z", valid_to: str = "2030-06-01T00:00:00Z",
          country: str | None = None, rule_type: str = "Acceptance", engine_version: str = "1.0.0",
          region: str | None = None, fields: tuple[str, ...] = ("v.0",)) -> dict[str, Any]:
    rule = {
        "Identifier": identifier,
        "Type": rule_type,
        "Country": country or identifier.split("-")[1],
        "Version": version,
        "SchemaVersion": "1.0.0",
        "Engine": "CERTLOGIC",
        "EngineVersion": engine_version,
        "CertificateType": cert_type,
        "Description": [{"lang": "en", "desc": f"Test rule {identifier} version {version}."},
                        {"lang": "de", "desc": f"Testregel {identifier} Version {version}."}],
        "ValidFrom": valid_from,
        "ValidTo": valid_to,
        "AffectedFields": list(fields),
        "Logic": logic,
    }
    if region is not None:
        rule["Region"] = region
    return rule


def _days_after(field: str, low: int, high: int) -> dict[str, Any]:
    """Clock within [field + low days, field + high days]."""
    return {"not-after": [
        {"plusTime": [{"var": field}, low, "day"]},
        {"plusTime": [{"var": "external.validationClock"}, 0, "day"]},
        {"plusTime": [{"var": field}, high, "day"]},
    ]}


def _if_present(section: str, check: dict[str, Any]) -> dict[str, Any]:
    return {"if": [{"var": f"payload.{section}.0"}, check, True]}


# A rule set written for these tests in the EU gateway format, modelled on the EU template
# rules: NL acceptance rules, and one DE invalidation rule.
RULE_SET: list[dict[str, Any]] = [
    _rule("GR-NL-0000", "General", {"===": [{"reduce": [
        [{"var": "payload.r"}, {"var": "payload.t"}, {"var": "payload.v"}],
        {"+": [{"var": "accumulator"}, {"if": [{"var": "current.0"}, 1, 0]}]}, 0]}, 1]},
        fields=("r", "t", "v")),
    _rule("GR-NL-0001", "General", {"and": [
        {"var": "payload.dob"},
        {"!": [{"after": [{"dccDateOfBirth": [{"var": "payload.dob"}]},
                          {"plusTime": [{"var": "external.validationClock"}, -12, "year"]}]}]}]},
        fields=("dob",)),
    _rule("VR-NL-0000", "Vaccination", {"!": [{"var": "payload.v.1"}]}),
    _rule("VR-NL-0001", "Vaccination", _if_present("v", {"in": [
        {"var": "payload.v.0.mp"}, {"var": "external.valueSets.vaccines-covid-19-names"}]})),
    _rule("VR-NL-0002", "Vaccination", _if_present("v", {">=": [
        {"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]})),
    _rule("VR-NL-0003", "Vaccination", _if_present("v", _days_after("payload.v.0.dt", 14, 365)),
          valid_to="2021-12-01T00:00:00Z"),
    # Version 1.1.0 of VR-NL-0003 shortens validity to 270 days from 2021-12-01.
    _rule("VR-NL-0003", "Vaccination", _if_present("v", _days_after("payload.v.0.dt", 14, 270)),
          version="1.1.0", valid_from="2021-12-01T00:00:00Z"),
    # A version 2.0.0 that is not yet valid must not be chosen before its ValidFrom.
    _rule("VR-NL-0003", "Vaccination", False, version="2.0.0",
          valid_from="2029-01-01T00:00:00+01:00"),
    _rule("TR-NL-0001", "Test", _if_present("t", {"in": [
        {"var": "payload.t.0.tt"}, {"var": "external.valueSets.covid-19-lab-test-type"}]})),
    _rule("TR-NL-0003", "Test", _if_present("t", {"before": [
        {"plusTime": [{"var": "external.validationClock"}, 0, "day"]},
        {"plusTime": [{"var": "payload.t.0.sc"}, 48, "hour"]}]})),
    _rule("TR-NL-0004", "Test", _if_present("t", {"===": [{"var": "payload.t.0.tr"}, "260415000"]})),
    _rule("RR-NL-0001", "Recovery", _if_present("r", {"not-after": [
        {"plusTime": [{"var": "payload.r.0.df"}, 0, "day"]},
        {"plusTime": [{"var": "external.validationClock"}, 0, "day"]},
        {"plusTime": [{"var": "payload.r.0.du"}, 0, "day"]}]})),
    # Region-specific rule: only for kiosks configured with region "BQ".
    _rule("VR-NL-0010", "Vaccination", _if_present("v", {">": [{"var": "payload.v.0.dn"}, 2]}),
          region="BQ"),
    # Needs a newer engine than ours (major 2): selected, but OPEN.
    _rule("VR-NL-0020", "Vaccination", True, engine_version="2.0.0"),
    # Logic that is not valid CertLogic: kept, and OPEN.
    _rule("GR-NL-0030", "General", {"all": [{"var": "payload.v"}, True]}),
    # Invalidation rule of the issuing country: certificates from batch "BAD" are revoked.
    _rule("IR-DE-0001", "General", {"!": [{"in": [
        {"extractFromUVCI": [{"var": "payload.v.0.ci"}, 2]}, ["BAD", "WORSE"]]}]},
        rule_type="Invalidation", fields=("v.0.ci",)),
    # Rules of other countries never apply here.
    _rule("GR-BE-0000", "General", False),
    _rule("IR-BE-0001", "General", False, rule_type="Invalidation"),
]

VACCINATION = {
    "ver": "1.3.0", "dob": "1985-05-05",
    "nam": {"fn": "Tester", "fnt": "TESTER", "gn": "Kim", "gnt": "KIM"},
    "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215",
           "dn": 2, "sd": 2, "dt": "2021-06-01", "co": "DE", "is": "Test Ministry",
           "ci": "URN:UVCI:01:DE:GOOD1234#X"}],
}
TEST = {
    "ver": "1.3.0", "dob": "1985-05",
    "nam": {"fn": "Tester", "fnt": "TESTER"},
    "t": [{"tg": "840539006", "tt": "LP6464-4", "sc": "2021-10-01T08:00:00+02:00",
           "tr": "260415000", "tc": "Test centre", "co": "DE", "is": "Test Ministry",
           "ci": "URN:UVCI:01:DE:T999#Y"}],
}
CLOCK = datetime(2021, 10, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> list[Any]:
    return parse_rules(json.dumps(RULE_SET))


@pytest.fixture(scope="module")
def value_sets(shared_data: Path) -> dict[str, list[str]]:
    return load_value_sets(shared_data / "dcc-spec" / "valuesets")


def _external(value_sets: dict[str, list[str]], clock: datetime = CLOCK) -> dict[str, Any]:
    return build_external(clock, value_sets, "NL", exp=int((clock + timedelta(days=300)).timestamp()),
                          iat=int((clock - timedelta(days=30)).timestamp()),
                          issuer_country_code="DE", kid=b"\x01\x02\x03\x04\x05\x06\x07\x08")


def _ids(selected: list[Any]) -> list[str]:
    return [f"{r.identifier}@{r.version}" for r in selected]


def test_parse_keeps_metadata(rules: list[Any]) -> None:
    assert len(rules) == len(RULE_SET)
    vr3 = [r for r in rules if r.identifier == "VR-NL-0003"]
    assert [r.version_key for r in vr3] == [(1, 0, 0), (1, 1, 0), (2, 0, 0)]
    assert vr3[2].valid_from.isoformat() == "2028-12-31T23:00:00.000Z"
    assert vr3[0].description("de").startswith("Testregel") and vr3[0].description("fr").startswith("Test rule")
    assert rules[0].affected_fields == ("r", "t", "v")
    invalid = next(r for r in rules if r.identifier == "GR-NL-0030")
    assert invalid.logic_problems == ('unrecognised operator: "all"',)


def test_selection_by_country_type_clock_and_version(rules: list[Any]) -> None:
    selected = select_rules(rules, "nl", "Vaccination", CLOCK, issuer_country="DE")
    assert _ids(selected) == [
        "GR-NL-0000@1.0.0", "GR-NL-0001@1.0.0", "GR-NL-0030@1.0.0", "VR-NL-0000@1.0.0",
        "VR-NL-0001@1.0.0", "VR-NL-0002@1.0.0", "VR-NL-0003@1.0.0", "VR-NL-0020@1.0.0",
        "IR-DE-0001@1.0.0"]
    # After 2021-12-01 the 1.1.0 version replaces 1.0.0; 2.0.0 waits for its ValidFrom.
    later = select_rules(rules, "NL", "vaccination", datetime(2022, 3, 1, tzinfo=UTC))
    assert "VR-NL-0003@1.1.0" in _ids(later) and "IR-DE-0001@1.0.0" not in _ids(later)
    boundary = datetime(2028, 12, 31, 23, 0, tzinfo=UTC)            # = 2029-01-01T00:00+01:00
    assert "VR-NL-0003@2.0.0" in _ids(select_rules(rules, "NL", "Vaccination", boundary))
    assert "VR-NL-0003@1.1.0" in _ids(select_rules(rules, "NL", "Vaccination",
                                                   boundary - timedelta(milliseconds=1)))
    # ValidTo is exclusive; nothing is valid before the first ValidFrom.
    assert select_rules(rules, "NL", "Test", datetime(2021, 5, 31, 23, 59, tzinfo=UTC)) == []
    assert select_rules(rules, "NL", "Test", datetime(2030, 6, 1, tzinfo=UTC)) == []
    tests = select_rules(rules, "NL", "Test", CLOCK)
    assert {r.certificate_type for r in tests} == {"General", "Test"}
    # A region picks up its own rules on top of the country-wide ones.
    assert "VR-NL-0010@1.0.0" in _ids(select_rules(rules, "NL", "Vaccination", CLOCK, region="bq"))
    assert "VR-NL-0010@1.0.0" not in _ids(selected)


def test_engine_version_compatible_when_not_newer(rules: list[Any]) -> None:
    selected = {r.identifier: r for r in select_rules(rules, "NL", "Vaccination", CLOCK)}
    assert selected["VR-NL-0020"].open_reason and "2.0.0" in selected["VR-NL-0020"].open_reason
    assert selected["VR-NL-0002"].open_reason is None
    as_v2 = {r.identifier: r for r in select_rules(rules, "NL", "Vaccination", CLOCK, "2.1.0")}
    assert as_v2["VR-NL-0020"].open_reason is None
    assert as_v2["VR-NL-0002"].open_reason is None            # 1.0.0 rule, 2.x engine: older
    as_v1 = {r.identifier: r for r in select_rules(rules, "NL", "Vaccination", CLOCK, "1.0.0")}
    assert as_v1["VR-NL-0002"].open_reason is None


# Shaped like the gateway's published rule sets: many countries, each with its own engine
# version (0.7.5 was certlogic-js's release number before the spec had a version of its own).
PUBLISHED_ENGINE_VERSIONS = {"AT": "0.7.5", "BE": "1.0.0", "DE": "1.3.0", "ES": "0.7.5",
                             "FR": "1.0.0", "IT": "1.3.0", "NL": "0.7.5", "PL": "1.0.0"}


def _published_rule_set() -> list[dict[str, Any]]:
    rules = []
    for country, engine in PUBLISHED_ENGINE_VERSIONS.items():
        rules += [
            _rule(f"GR-{country}-0001", "General", {"if": [{"var": "payload.dob"}, True, False]},
                  engine_version=engine,
                  fields=("dob",)),
            _rule(f"VR-{country}-0001", "Vaccination", _if_present("v", {">=": [
                {"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]}), engine_version=engine),
            _rule(f"IR-{country}-0001", "General", {"!": [{"in": [
                {"extractFromUVCI": [{"var": "payload.v.0.ci"}, 2]}, ["BAD"]]}]},
                rule_type="Invalidation", engine_version=engine, fields=("v.0.ci",)),
        ]
        rules[-2]["SchemaVersion"] = "1.3.0" if engine == "1.3.0" else "1.0.0"
    return rules


@pytest.mark.parametrize("country", sorted(PUBLISHED_ENGINE_VERSIONS))
def test_published_rule_sets_run_whatever_their_engine_version(
        country: str, value_sets: dict[str, list[str]]) -> None:
    """Every country's rules run (PASS / FAIL), so a good DCC passes wherever the kiosk stands;
    under the former major-version check the 0.7.5 countries gave OPEN for everyone."""
    rules = parse_rules(json.dumps(_published_rule_set()))
    for issuer in ("DE", "AT"):
        selected = select_rules(rules, country, "Vaccination", CLOCK, issuer_country=issuer)
        assert len(selected) == 3 and all(rule.open_reason is None for rule in selected)
        results = run_rules(selected, VACCINATION, _external(value_sets))
        assert overall(results) is Outcome.PASS, [(r.identifier, r.reason) for r in results]
        partial = copy.deepcopy(VACCINATION)
        partial["v"][0]["dn"] = 1
        assert overall(run_rules(selected, partial, _external(value_sets))) is Outcome.FAIL
    # A payload without `ver` cannot be matched to any rule's SchemaVersion: OPEN, not PASS
    # (as the reference engine), so the kiosk denies with DCC_RULES_OPEN instead of guessing.
    no_ver = {k: v for k, v in VACCINATION.items() if k != "ver"}
    selected = select_rules(rules, country, "Vaccination", CLOCK, issuer_country="DE")
    results = run_rules(selected, no_ver, _external(value_sets))
    assert {r.outcome for r in results} == {Outcome.OPEN}
    assert all("schema version" in (r.reason or "") for r in results)
    # A 1.0.0 certificate is judged by the 1.0.0-schema rules, not by 1.3.0-schema ones.
    old_schema = dict(VACCINATION, ver="1.0.0")
    outcomes = {r.identifier: r.outcome for r in run_rules(selected, old_schema, _external(value_sets))}
    expected = Outcome.OPEN if PUBLISHED_ENGINE_VERSIONS[country] == "1.3.0" else Outcome.PASS
    assert outcomes[f"VR-{country}-0001"] is expected


def test_a_rule_from_a_newer_engine_stays_open() -> None:
    (rule,) = parse_rules([_rule("VR-NL-0099", "Vaccination", True, engine_version="1.4.0")])
    (result,) = run_rules(select_rules([rule], "NL", "Vaccination", CLOCK), VACCINATION, {})
    assert result.outcome is Outcome.OPEN and "1.4.0" in (result.reason or "")


def test_vaccination_passes_and_each_defect_fails_its_rule(rules: list[Any],
                                                           value_sets: dict[str, list[str]]) -> None:
    selected = select_rules(rules, "NL", "Vaccination", CLOCK, issuer_country="DE")
    external = _external(value_sets)
    results = {r.identifier: r for r in run_rules(selected, VACCINATION, external)}
    assert {k: v.outcome for k, v in results.items()} == {
        "GR-NL-0000": Outcome.PASS, "GR-NL-0001": Outcome.PASS, "GR-NL-0030": Outcome.OPEN,
        "VR-NL-0000": Outcome.PASS, "VR-NL-0001": Outcome.PASS, "VR-NL-0002": Outcome.PASS,
        "VR-NL-0003": Outcome.PASS, "VR-NL-0020": Outcome.OPEN, "IR-DE-0001": Outcome.PASS}
    assert "invalid CertLogic" in results["GR-NL-0030"].reason
    assert overall(results.values()) is Outcome.OPEN

    def outcome_with(change: Any, identifier: str, clock: datetime = CLOCK) -> Outcome:
        payload = copy.deepcopy(VACCINATION)
        change(payload)
        (result,) = [r for r in run_rules(selected, payload, _external(value_sets, clock))
                     if r.identifier == identifier]
        return result.outcome

    assert outcome_with(lambda p: p["v"][0].update(dn=1), "VR-NL-0002") is Outcome.FAIL
    assert outcome_with(lambda p: p["v"][0].update(mp="Sputnik-X"), "VR-NL-0001") is Outcome.FAIL
    assert outcome_with(lambda p: p["v"].append(dict(p["v"][0])), "VR-NL-0000") is Outcome.FAIL
    assert outcome_with(lambda p: p.update(t=TEST["t"]), "GR-NL-0000") is Outcome.FAIL
    assert outcome_with(lambda p: p["v"][0].update(ci="URN:UVCI:01:DE:BAD#1"), "IR-DE-0001") \
        is Outcome.FAIL
    assert outcome_with(lambda p: p.update(dob="2011-12"), "GR-NL-0001") is Outcome.FAIL
    # dccDateOfBirth takes the last date a partial DOB can mean: "2009" may be 2009-12-31.
    assert outcome_with(lambda p: p.update(dob="2009"), "GR-NL-0001") is Outcome.FAIL
    assert outcome_with(lambda p: p.update(dob="2009-09"), "GR-NL-0001") is Outcome.PASS
    assert outcome_with(lambda p: p["v"][0].update(dt="2021-09-20"), "VR-NL-0003") is Outcome.FAIL
    assert outcome_with(lambda p: p["v"][0].update(dt="2021-09-17"), "VR-NL-0003") is Outcome.PASS
    # Bad data is OPEN, not a crash: a date the spec does not allow, a non-integer dose.
    assert outcome_with(lambda p: p["v"][0].update(dt="01.06.2021"), "VR-NL-0003") is Outcome.OPEN
    assert outcome_with(lambda p: p["v"][0].update(dn="2"), "VR-NL-0002") is Outcome.OPEN


def test_test_certificate_clock_window(rules: list[Any], value_sets: dict[str, list[str]]) -> None:
    selected = select_rules(rules, "NL", "Test", CLOCK)
    # Sample 2021-10-01T06:00Z; 48 h later is 2021-10-03T06:00Z (exclusive).
    for clock, expected in [(datetime(2021, 10, 3, 5, 59, 59, 999000, tzinfo=UTC), Outcome.PASS),
                            (datetime(2021, 10, 3, 6, 0, tzinfo=UTC), Outcome.FAIL)]:
        results = {r.identifier: r.outcome for r in run_rules(selected, TEST, _external(value_sets, clock))}
        assert results["TR-NL-0003"] is expected
        assert results["TR-NL-0001"] is results["TR-NL-0004"] is Outcome.PASS


def test_rules_judge_only_certificates_of_a_compatible_schema_version(
        value_sets: dict[str, list[str]]) -> None:
    rule = _rule("VR-NL-0200", "Vaccination", True)
    rule["SchemaVersion"] = "1.3.0"
    (parsed,) = parse_rules([rule])
    for ver, expected in [("1.3.0", Outcome.PASS), ("1.3.2", Outcome.PASS), ("1.2.1", Outcome.OPEN),
                          ("2.0.0", Outcome.OPEN), (None, Outcome.OPEN), ("1.3", Outcome.OPEN)]:
        payload = dict(VACCINATION, ver=ver) if ver else {k: v for k, v in VACCINATION.items() if k != "ver"}
        (result,) = run_rules([parsed], payload, _external(value_sets))
        assert result.outcome is expected, ver
        assert expected is Outcome.PASS or "schema" in (result.reason or "")
    rule.pop("SchemaVersion")  # the gateway requires one; without it no payload can match
    (unversioned,) = parse_rules([rule])
    (result,) = run_rules([unversioned], VACCINATION, _external(value_sets))
    assert result.outcome is Outcome.OPEN and "SchemaVersion" in (result.reason or "")


def test_non_boolean_results_are_open(value_sets: dict[str, list[str]]) -> None:
    rules = parse_rules([_rule("GR-NL-0100", "General", {"var": "payload.dob"}),
                         _rule("GR-NL-0101", "General", {"if": [True, 1, 0]})])
    results = run_rules(rules, VACCINATION, _external(value_sets))
    assert [r.outcome for r in results] == [Outcome.OPEN, Outcome.OPEN]
    assert "string" in results[0].reason and VACCINATION["dob"] not in results[0].reason


def test_rules_and_results_are_hashable(rules: list[Any]) -> None:
    assert len(set(rules)) == len(rules)
    assert len({r.identifier for r in set(run_rules(rules[:3], VACCINATION, {}))}) == 3


def test_logic_as_json_string_single_rule_and_wrapped_list() -> None:
    rule = _rule("VR-AT-0001", "Vaccination", json.dumps({"var": "payload.v.0"}))
    (parsed,) = parse_rules(json.dumps(rule).encode())
    assert parsed.logic == {"var": "payload.v.0"} and parsed.country == "AT"
    assert parse_rules({"rules": [rule, rule]}) == [parsed, parsed]   # fleet wrapper
    assert parse_rules({"rules": []}) == []


@pytest.mark.parametrize(("field", "value"), [
    ("Identifier", ""), ("Type", "Whatever"), ("Country", None), ("Version", "one"),
    ("EngineVersion", "1.0"), ("CertificateType", "Passport"), ("ValidFrom", "yesterday"),
    ("ValidTo", 20300101), ("AffectedFields", "v"), ("Description", [{"lang": "en"}]),
    ("Engine", None), ("SchemaVersion", "latest"),
])
def test_malformed_metadata_rejects_the_rule_set(field: str, value: Any) -> None:
    rule = _rule("VR-NL-0001", "Vaccination", True)
    rule[field] = value
    with pytest.raises(RuleFormatError, match=field):
        parse_rules([rule])


@pytest.mark.parametrize("source", ["not json", "42", '["x"]', b"\xff", '{"Logic": {}}'])
def test_malformed_rule_sets_raise_one_error_type(source: Any) -> None:
    with pytest.raises(CertLogicError):
        parse_rules(source)


def test_clock_must_be_aware_and_type_known(rules: list[Any]) -> None:
    with pytest.raises(CertLogicError):
        select_rules(rules, "NL", "Vaccination", datetime(2021, 10, 1))
    with pytest.raises(CertLogicError):
        select_rules(rules, "NL", "Passport", CLOCK)


def test_external_parameters(value_sets: dict[str, list[str]]) -> None:
    external = _external(value_sets, datetime(2021, 10, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert external["validationClock"] == "2021-10-01T12:00:00.000Z"
    assert external["countryCode"] == "NL" and external["issuerCountryCode"] == "DE"
    assert external["kid"] == "AQIDBAUGBwg=" and external["region"] == ""
    assert external["exp"] == "2022-07-28T12:00:00.000Z"
    assert external["valueSets"]["covid-19-lab-result"] == ["260415000", "260373001"]
    assert "EU/1/20/1528" in external["valueSets"]["vaccines-covid-19-names"]


def _testdata_cases(shared_data: Path) -> list[tuple[str, dict[str, Any], str]]:
    cases = []
    for path in sorted((shared_data / "dcc-testdata").rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(document, dict) and isinstance(document.get("JSON"), dict) \
                and isinstance(document.get("TESTCTX"), dict):
            cases.append((str(path.relative_to(shared_data)), document["JSON"],
                          str(document["TESTCTX"].get("VALIDATIONCLOCK"))))
    return cases


def test_rule_set_on_every_dcc_testdata_payload(shared_data: Path, rules: list[Any],
                                                value_sets: dict[str, list[str]]) -> None:
    """Differential check on real payloads: the CertLogic rules agree with plain Python."""
    cases = _testdata_cases(shared_data)
    assert len(cases) > 400
    checked = 0
    for name, payload, clock_text in cases:
        clock = parse_date_time(clock_text).to_datetime()   # every VALIDATIONCLOCK shape parses
        sections = [key for key in ("v", "t", "r") if isinstance(payload.get(key), list) and payload[key]]
        cert_type = certificate_type_of(payload)
        assert cert_type == ({"v": "Vaccination", "t": "Test", "r": "Recovery"}[sections[0]]
                             if len(sections) == 1 else None), name
        cert_type = cert_type or "Vaccination"
        # Rules as selected at CLOCK; each payload is judged at its own validation clock.
        selected = select_rules(rules, "NL", cert_type, CLOCK, issuer_country="DE")
        results = {r.identifier: r for r in run_rules(selected, payload, _external(value_sets, clock))}
        for result in results.values():
            assert result.reason is None or "internal error" not in result.reason, name
        exactly_one = results["GR-NL-0000"].outcome
        assert exactly_one is (Outcome.PASS if len(sections) == 1 else Outcome.FAIL), name
        vaccination = (payload.get("v") or [None])[0]
        if cert_type == "Vaccination" and isinstance(vaccination, dict) \
                and isinstance(vaccination.get("dn"), int) and isinstance(vaccination.get("sd"), int):
            expected = Outcome.PASS if vaccination["dn"] >= vaccination["sd"] else Outcome.FAIL
            assert results["VR-NL-0002"].outcome is expected, name
            checked += 1
    assert checked > 100
