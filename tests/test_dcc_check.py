"""`healthgate check`: a technician's stage-by-stage report, from text, a text file or an image."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from firmware.credentials.check import main
from firmware.demo.issuers.dcc import issue_dcc
from firmware.credentials.trust import dcc_kid
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

AT = (T0 + timedelta(days=10)).isoformat()


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def _trust_dir(tmp_path: Path, der: bytes) -> Path:
    (tmp_path / "dcc-certs").mkdir(parents=True)
    (tmp_path / "dcc-certs" / "signer.der").write_bytes(der)
    return tmp_path


def test_valid_credential_text(tmp_path: Path) -> None:
    key = make_key("ec")
    der = make_cert(key)
    text = issue_dcc(vaccination(), key, dcc_kid(der), T0, T0 + timedelta(days=365))
    code, out = _run([text, "--trust", str(_trust_dir(tmp_path, der)), "--at", AT])
    assert code == 0
    assert "verdict: VALID" in out and "signature   ok" in out and "rules       -" in out
    assert "MUSTER" in out  # the technician sees the holder; nothing else prints this


def test_invalid_credential_explains_why(tmp_path: Path) -> None:
    key = make_key("ec")
    der = make_cert(key)
    text = issue_dcc(vaccination(), key, dcc_kid(der), T0, T0 + timedelta(days=365))
    code, out = _run([text, "--at", "2030-01-01T00:00:00Z"])
    assert code == 1
    assert "no --trust folder" in out
    assert "reason: DCC_KID_UNKNOWN (Issuer not trusted)" in out
    assert "signature   FAIL no trusted signer with kid" in out


def test_text_file_and_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "code.txt"
    path.write_text("HC1:NOT*BASE45\n")
    code, out = _run([str(path)])
    assert code == 1 and "DCC_BASE45_INVALID" in out
    code, out = _run(["x", "--at", "yesterday"])
    assert code == 2 and "--at" in out
    code, out = _run(["x", "--trust", str(tmp_path / "nowhere")])
    assert code == 2


def test_image_file_from_the_test_data(shared_data: Path, tmp_path: Path) -> None:
    case = json.loads((shared_data / "dcc-testdata/DK/2DCode/raw/1.json").read_text("utf-8"))
    trust = _trust_dir(tmp_path, base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    png = shared_data / "dcc-testdata/DK/2DCode/png/1.png"
    code, out = _run([str(png), "--trust", str(trust), "--at", case["TESTCTX"]["VALIDATIONCLOCK"]])
    assert "signature   ok" in out and "format: dcc" in out, out
    assert code == 0, out


def test_console_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "firmware.credentials.check", "HC2:XYZ"],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert result.returncode == 1 and "UNKNOWN_FORMAT" in result.stdout


def test_image_reader_falls_back_to_zxing(shared_data: Path, monkeypatch) -> None:
    """Without the kiosk's reader module the check still reads codes with zxing-cpp directly."""
    from firmware.credentials import check
    case = json.loads((shared_data / "dcc-testdata/common/2DCode/raw/CO28.json").read_text("utf-8"))
    monkeypatch.setitem(sys.modules, "firmware.codes", None)  # import now raises ImportError
    assert check.read_image_texts(base64.b64decode(case["2DCODE"])) == [case["PREFIX"]]


def test_a_synced_cache_needs_the_pinned_fleet_key(tmp_path: Path) -> None:
    """A kiosk's synced trust folder holds fleet envelopes: checked with --fleet-key, refused
    without it (an envelope is worth only its signature)."""
    from datetime import datetime, timezone

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware.protocol.keys import public_key_b64
    from fleet.trust import build_envelope

    key = make_key("ec")
    der = make_cert(key)
    text = issue_dcc(vaccination(), key, dcc_kid(der), T0, T0 + timedelta(days=365))
    fleet_key = Ed25519PrivateKey.generate()
    trust = _trust_dir(tmp_path, der)
    (trust / "dcc-rules.json").write_bytes(
        build_envelope(fleet_key, "dcc-rules", 1, [], datetime(2021, 6, 1, tzinfo=timezone.utc)))
    code, out = _run([text, "--trust", str(trust), "--at", AT])  # rules unusable: denied, said why
    assert code == 1 and "trust problem: dcc-rules.json" in out and "no pinned fleet key" in out
    assert "DCC_RULES_UNAVAILABLE" in out
    code, out = _run([text, "--trust", str(trust), "--at", AT,
                      "--fleet-key", public_key_b64(fleet_key)])
    assert code == 0 and "verdict: VALID" in out
    code, out = _run([text, "--trust", str(trust), "--fleet-key", "not base64!"])
    assert code == 2 and "error: --fleet-key" in out
