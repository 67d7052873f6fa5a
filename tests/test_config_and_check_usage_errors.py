"""Typical mistakes get one line and exit 2 (issue 16): `healthgate check` on something that is
not a credential, and a fleet URL without a scheme. The real commands, as subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 120.0  # a guard against a hung command, not a speed claim


def healthgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware.cli", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such file: "),
    ("folder", "is a directory: "),
    ("not-an-image", "not a credential or image: "),
])
def test_check_on_something_that_is_not_a_credential(tmp_path: Path, case: str,
                                                     expected: str) -> None:
    target = {"missing": tmp_path / "qr-photo.png", "folder": tmp_path,
              "not-an-image": tmp_path / "notes.bin"}[case]
    if case == "not-an-image":
        target.write_bytes(bytes(range(256)) * 4)
    result = healthgate("check", str(target))
    assert result.returncode == 2, result.stdout
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert str(target) in lines[0] and "Traceback" not in result.stderr


def test_check_still_reads_a_credential_text_and_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "code.txt"
    path.write_text("HC1:NOT*BASE45\n")
    for argument in (str(path), "HC1:NOT*BASE45", "HC2:XYZ"):
        result = healthgate("check", argument)
        assert result.returncode == 1 and "reason: " in result.stdout, result.stdout


@pytest.mark.parametrize("url", ["fleet.example:8443", "ftp://fleet.example", "https://"])
def test_a_fleet_url_without_a_scheme_or_host_fails_validation(tmp_path: Path, url: str) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[fleet]\nurl = "{url}"\n')
    result = healthgate("run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "fleet.url: expected an http:// or https:// URL" in lines[0]
    assert repr(url) in lines[0]
