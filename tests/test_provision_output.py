"""healthgate-provision output: one JSON object with --json (errors too), dry runs that write
nothing (against a real fleet server on loopback, and enrolment with the real face models),
rich tables on a terminal, plain in logs."""
from __future__ import annotations

import io
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fleet.runner import run_in_thread
from fleet.server import create_app
from firmware.protocol.keys import public_key_b64
from fleet.trust import generate_signing_key
from firmware.statefolder import StateFolder
from provisioning.cli import main
from provisioning.output import JSON_KEYS
from provisioning.selftest import CHECKS
from tests.test_enrol import _models_present, lfw  # noqa: F401 - lfw is a fixture
from tests.test_typical_mistakes import closed_port

TOKEN = "enrol-0123456789abcdef"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # exactly one object, nothing else on stdout
    document = json.loads(lines[0])
    assert tuple(document) == JSON_KEYS and document["exit_code"] == code
    assert document["ok"] == (code == 0)
    return code, document


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder below `folder`: mode and bytes."""
    found: dict[str, tuple[int, bytes]] = {".": (folder.stat().st_mode, b"")}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = (
                path.stat().st_mode, path.read_bytes() if path.is_file() else b"")
    return found


def test_init_json_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, done = run_json(capsys, "init", "--state-dir", str(tmp_path / "s"), "--device-id",
                          "shop-12-door")
    assert code == 0 and done["error"] is None
    assert done["result"]["device_id"] == "shop-12-door" and done["result"]["created"]  # type: ignore[index]
    (tmp_path / "file").write_text("in the way")
    code, refused = run_json(capsys, "init", "--state-dir", str(tmp_path / "file" / "s"))
    assert code == 2 and refused["error"]["code"] == "STATE_FOLDER_UNUSABLE"  # type: ignore[index]
    code, usage = run_json(capsys, "register", "--state-dir", str(tmp_path / "s"))
    assert code == 2 and usage["error"]["code"] == "USAGE"  # type: ignore[index]
    assert "--fleet-url" in usage["error"]["message"]  # type: ignore[index]


def test_dry_runs_write_nothing_and_spend_no_token(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["init", "--state-dir", str(state), "--device-id", "shop-12-door"]) == 0
    assert main(["template-key", "--state-dir", str(state), "--id", "site-1", "--generate"]) == 0
    capsys.readouterr()
    before = snapshot(state)
    fleet_key = public_key_b64(generate_signing_key(tmp_path / "fleet.key"))
    with run_in_thread(create_app(str(tmp_path / "fleet.db"))) as server:
        server.store.add_token(TOKEN, datetime.now(timezone.utc) + timedelta(hours=1))
        register = ["register", "--state-dir", str(state), "--fleet-url", server.url,
                    "--token", TOKEN, "--fleet-key", fleet_key]
        code, planned = run_json(capsys, *register, "--dry-run")
        assert code == 0 and planned["dry_run"] is True
        would = planned["result"]["would"]  # type: ignore[index]
        assert any("register shop-12-door" in line for line in would)
        assert any("pin the fleet key" in line for line in would)
        assert planned["result"]["server_time"]  # type: ignore[index]
        assert main(["template-key", "--state-dir", str(state), "--id", "site-1", "--generate",
                     "--force", "--dry-run"]) == 0
        assert "would back up the old key" in capsys.readouterr().out
        assert main(["init", "--state-dir", str(state), "--dry-run"]) == 0
        assert "would keep the identity of shop-12-door" in capsys.readouterr().out
        assert snapshot(state) == before  # byte-identical, modes included
        assert server.store.devices() == []  # not registered ...
        assert main(register) == 0  # ... and the one-time token is still good
        assert [d.device_id for d in server.store.devices()] == ["shop-12-door"]
        assert StateFolder(state).pinned_fleet_key() == fleet_key
        capsys.readouterr()
        code, refused = run_json(capsys, "register", "--state-dir", str(state), "--fleet-url",
                                 server.url, "--token", "never-issued-token-xyz", "--fleet-key",
                                 fleet_key)
        assert code == 1 and refused["error"]["code"] == "TOKEN_INVALID"  # type: ignore[index]


def test_a_dry_run_checks_the_fleet_and_the_token(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["init", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    before = snapshot(state)
    key = public_key_b64(generate_signing_key(tmp_path / "fleet.key"))
    code, unreachable = run_json(capsys, "register", "--state-dir", str(state), "--fleet-url",
                                 f"http://127.0.0.1:{closed_port()}", "--token", TOKEN,
                                 "--fleet-key", key, "--dry-run")
    assert code == 1 and unreachable["error"]["code"] == "NETWORK_ERROR"  # type: ignore[index]
    code, bad_token = run_json(capsys, "register", "--state-dir", str(state), "--fleet-url",
                               "http://127.0.0.1:9", "--token", "short", "--fleet-key", key,
                               "--dry-run")
    assert code == 2 and bad_token["error"]["code"] == "TOKEN_FORMAT"  # type: ignore[index]
    assert snapshot(state) == before


def test_a_dry_run_init_creates_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, planned = run_json(capsys, "init", "--state-dir", str(tmp_path / "new" / "state"),
                             "--dry-run")
    assert code == 0 and any("create the state folder" in line
                             for line in planned["result"]["would"])  # type: ignore[index]
    assert list(tmp_path.iterdir()) == []
    code, invalid = run_json(capsys, "init", "--state-dir", str(tmp_path / "s"), "--device-id",
                             "x", "--dry-run")
    assert code == 1 and invalid["error"]["code"] == "DEVICE_ID_INVALID"  # type: ignore[index]


def _selftest_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / "state"
    assert main(["init", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[state]\ndir = "{state}"\n')
    return config


def test_selftest_json_lists_every_check(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = _selftest_config(tmp_path, capsys)
    code, report = run_json(capsys, "selftest", "--config", str(config))
    checks = report["result"]["checks"]  # type: ignore[index]
    assert [c["name"] for c in checks] == [name for name, _ in CHECKS]
    assert {c["name"] for c in checks if not c["ok"]} == {"trust data"}  # nothing synced yet
    assert code == 1 and report["error"]["code"] == "SELFTEST_FAILED"  # type: ignore[index]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_table_and_a_log_plain_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = _selftest_config(tmp_path, capsys)
    assert main(["selftest", "--config", str(config)]) == 1
    plain = capsys.readouterr().out
    assert "\x1b" not in plain and "┃" not in plain  # readable in a log
    assert any(line.startswith("FAIL trust data") for line in plain.splitlines())
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["selftest", "--config", str(config)]) == 1
    shown = terminal.getvalue()
    assert "┃" in shown and "check" in shown and "trust data" in shown and "FAIL" in shown
    assert not shown.lstrip().startswith("{")


@pytest.mark.skipif(not _models_present(), reason="shipped face models not built yet (tflite_models/)")
def test_enrol_and_erase_dry_runs_with_the_real_models(
        tmp_path: Path, lfw: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    first, second = [str(p) for p in lfw["A"]], [str(p) for p in lfw["B"]]
    code, planned = run_json(capsys, "enrol", "--member", "m-1", "--state-dir", str(state),
                             "--consent", *first, "--dry-run")
    assert code == 0 and planned["result"]["used_images"] == 3  # type: ignore[index]
    assert planned["result"]["enrolled"] is False  # type: ignore[index]
    assert [w.split()[0] for w in planned["result"]["would"]] == ["create", "store"]  # type: ignore[index]
    assert not any(Path(p).name in json.dumps(planned) for p in first)  # never a file name
    assert list(state.iterdir()) == []
    assert main(["enrol", "--member", "m-1", "--state-dir", str(state), "--consent", *first]) == 0
    capsys.readouterr()
    before = snapshot(state)
    code, planned = run_json(capsys, "enrol", "--member", "m-2", "--state-dir", str(state),
                             "--consent", *second, "--dry-run")
    assert code == 0 and planned["result"]["would"] == [  # type: ignore[index]
        f"store the template from 3 image(s) in {state / 'gallery.hgg'}"]
    code, planned = run_json(capsys, "erase", "--member", "m-1", "--state-dir", str(state),
                             "--dry-run")
    assert code == 0 and planned["result"]["erased"] is False  # type: ignore[index]
    code, missing = run_json(capsys, "erase", "--member", "m-2", "--state-dir", str(state),
                             "--dry-run")
    assert code == 1 and missing["error"]["code"] == "MEMBER_NOT_FOUND"  # type: ignore[index]
    assert snapshot(state) == before
    code, erased = run_json(capsys, "erase", "--member", "m-1", "--state-dir", str(state))
    assert code == 0 and erased["result"]["erased"] is True  # type: ignore[index]
