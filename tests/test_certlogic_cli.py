"""The CertLogic command line: validate, evaluate and run, on real files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.credentials.certlogic.__main__ import main

RULES = [{
    "Identifier": "VR-NL-0002", "Type": "Acceptance", "Country": "NL", "Version": "1.0.0",
    "SchemaVersion": "1.3.0", "Engine": "CERTLOGIC", "EngineVersion": "1.0.0",
    "CertificateType": "Vaccination",
    "Description": [{"lang": "en", "desc": "Doses must be complete for the course."}],
    "ValidFrom": "2021-06-01T00:00:00Z", "ValidTo": "2030-06-01T00:00:00Z",
    "AffectedFields": ["v.0.dn", "v.0.sd"],
    "Logic": {"if": [{"var": "payload.v.0"},
                     {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]}, True]},
}, {
    "Identifier": "VR-NL-0003", "Type": "Acceptance", "Country": "NL", "Version": "1.0.0",
    "SchemaVersion": "1.3.0", "Engine": "CERTLOGIC", "EngineVersion": "1.0.0",
    "CertificateType": "Vaccination",
    "Description": [{"lang": "en", "desc": "A rule whose logic is not CertLogic."}],
    "ValidFrom": "2021-06-01T00:00:00Z", "ValidTo": "2030-06-01T00:00:00Z",
    "AffectedFields": ["v"], "Logic": {"plusDays": [{"var": "payload.v.0.dt"}, 14]},
}]


def _write(tmp_path: Path, name: str, value: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def test_validate_expression_and_rule_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", _write(tmp_path, "ok.json", {"var": "payload.v.0"})]) == 0
    assert main(["validate", _write(tmp_path, "rules.json", RULES)]) == 1
    out = capsys.readouterr().out
    assert 'VR-NL-0003 1.0.0: unrecognised operator: "plusDays"' in out


def test_evaluate_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expr = _write(tmp_path, "e.json", [{"dccDateOfBirth": [{"var": "dob"}]}, {"var": "n"}])
    assert main(["evaluate", expr, _write(tmp_path, "d.json", {"dob": "2000-02", "n": 3})]) == 0
    assert json.loads(capsys.readouterr().out) == ["2000-02-29T00:00:00.000Z", 3]


def test_run_prints_outcomes_but_no_payload_values(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    payload = {"ver": "1.3.0", "dob": "1961-07-19", "nam": {"fn": "Sample"},
               "v": [{"dn": 1, "sd": 2, "dt": "2021-06-01", "ci": "URN:UVCI:01:NL:SECRET42#1"}]}
    code = main(["run", _write(tmp_path, "r.json", RULES), _write(tmp_path, "p.json", payload),
                 "--country", "nl", "--at", "2021-10-01T12:00:00+02:00"])
    out = capsys.readouterr().out
    assert code == 0
    assert "FAIL  VR-NL-0002 1.0.0" in out and "OPEN  VR-NL-0003 1.0.0" in out
    assert "overall: FAIL (2 rules)" in out
    assert "1961" not in out and "SECRET42" not in out and "Sample" not in out


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "bad.json", [{"Identifier": "X"}])
    assert main(["run", bad, _write(tmp_path, "p.json", {"v": [{}]}), "--country", "NL",
                 "--at", "2021-10-01T12:00:00Z"]) == 2
    assert main(["evaluate", _write(tmp_path, "e.json", {"if": [1.5, 1, 2]}), bad]) == 2
    assert main(["run", bad, _write(tmp_path, "q.json", {}), "--country", "NL",
                 "--at", "2021-10-01T12:00:00Z"]) == 2
    assert "error:" in capsys.readouterr().err
