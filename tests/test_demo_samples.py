"""`healthgate demo --save DIR`: every saved sample gives its stated verdict in `healthgate check`
with the saved trust folder (the real commands, as a technician runs them)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 120.0
EXPECTED = {"valid.txt": "VALID", "valid.png": "VALID", "expired.txt": "DCC_EXPIRED",
            "revoked.txt": "DCC_REVOKED", "forged.txt": "DCC_SIGNATURE_INVALID",
            "damaged.txt": "DCC_", "not-a-credential.png": "UNKNOWN_FORMAT"}


def healthgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware.cli", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


def test_saved_samples_check_as_stated(tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    saved = healthgate("demo", "--save", str(folder))
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert f"--trust {folder / 'trust'}" in saved.stdout
    assert {p.name for p in folder.iterdir()} >= set(EXPECTED) | {"trust", "README.txt"}
    for name, verdict in EXPECTED.items():
        result = healthgate("check", str(folder / name), "--trust", str(folder / "trust"))
        if verdict == "VALID":
            assert result.returncode == 0 and "verdict: VALID" in result.stdout, name
        else:
            assert result.returncode == 1, (name, result.stdout)
            assert f"reason: {verdict}" in result.stdout, (name, result.stdout)
        assert verdict in (folder / "README.txt").read_text()
    again = healthgate("demo", "--save", str(folder))  # never over earlier samples
    assert again.returncode == 2 and "not an empty folder" in again.stdout
