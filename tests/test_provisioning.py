"""Technician tool: identity, registration with a real fleet server, self-test of a kiosk."""
from __future__ import annotations

import io
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from firmware.protocol.keys import public_key_b64
from firmware.statefolder import StateFolder
from fleet.runner import run_in_thread
from fleet.server import create_app
from fleet.trust import generate_signing_key
from provisioning.cli import main
from provisioning.selftest import run_selftest


def test_init_register_and_pin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["init", "--state", str(state), "--device-id", "shop-12-door"]) == 0
    assert "shop-12-door" in capsys.readouterr().out
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    fleet_key = public_key_b64(generate_signing_key(tmp_path / "fleet.key"))
    with run_in_thread(create_app(str(tmp_path / "fleet.db"))) as server:
        server.store.add_token("tok-0123456789abcdef", datetime.now(timezone.utc) + timedelta(hours=1))
        args = ["register", "--state", str(state), "--fleet", server.url, "--fleet-key", fleet_key]
        assert main(args + ["--token", "tok-0123456789abcdef"]) == 0
        assert StateFolder(state).pinned_fleet_key() == fleet_key
        assert [d.device_id for d in server.store.devices()] == ["shop-12-door"]
        # a retry by the same device (its answer lost on the way) is idempotent...
        assert main(args + ["--token", "tok-0123456789abcdef"]) == 0
        # ...but the one-time token cannot register another device
        other = tmp_path / "other"
        assert main(["init", "--state", str(other)]) == 0
        assert main(["register", "--state", str(other), "--fleet", server.url, "--fleet-key",
                     fleet_key, "--token", "tok-0123456789abcdef"]) == 1
        assert main(args + ["--token", "never-issued-token-xyz"]) == 1
        assert "registration refused" in capsys.readouterr().out


def test_register_before_init_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", "--state", str(tmp_path / "none"), "--fleet", "http://127.0.0.1:9",
                 "--token", "t", "--fleet-key", "AAAA"]) == 1
    assert "healthgate-provision init" in capsys.readouterr().out


def test_selftest_reports_every_part(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert main(["init", "--state", str(state)]) == 0
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[state]\ndir = "{state}"\n')
    out = io.StringIO()
    code = run_selftest(config, out)
    report = out.getvalue()
    assert "ok   identity" in report and "ok   camera" in report and "ok   display" in report
    assert "FAIL trust data" in report and "no trust data cached" in report  # nothing synced yet
    assert code == 1


def test_selftest_names_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text("[camera]\nsource = 'telescope'\n")
    out = io.StringIO()
    assert run_selftest(config, out) == 1
    assert "camera.source" in out.getvalue()


def test_template_key_generate_and_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from firmware.vision.record_template import TemplateKeyring, seal_template

    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["init", "--state-dir", str(first)]) == 0
    assert main(["init", "--state-dir", str(second)]) == 0
    capsys.readouterr()
    assert main(["template-key", "--state", str(first), "--id", "site-1", "--generate",
                 "--show-key"]) == 0
    printed = capsys.readouterr().out.split("key (base64): ")[1].strip()
    assert main(["template-key", "--state", str(second), "--id", "site-1",
                 "--import-b64", printed]) == 0
    assert stat.S_IMODE((second / "template-keys" / "site-1.key").stat().st_mode) == 0o600
    import base64

    blob = seal_template(np.ones(128), base64.b64decode(printed), "site-1")
    opened = TemplateKeyring(second / "template-keys").open(blob, "site-1")
    assert opened is not None and abs(float(opened @ np.ones(128) / np.sqrt(128)) - 1) < 1e-5
    assert TemplateKeyring(second / "template-keys").open(blob, "site-2") is None
    assert TemplateKeyring(second / "template-keys").open(blob[:-1] + bytes([blob[-1] ^ 1]), "site-1") is None
    assert main(["template-key", "--state", str(first), "--id", "bad id!", "--generate"]) == 2  # a bad option (docs/kiosk.md)
    assert main(["template-key", "--state", str(first), "--id", "x"]) == 2


def test_selftest_checks_trust_data_against_the_pinned_fleet_key(tmp_path: Path) -> None:
    """The kiosk refuses trust items not signed by its pinned fleet key; so must the self-test,
    or it reports "ok" for a kiosk that denies everyone with TRUST_DATA_MISSING."""
    from datetime import datetime, timezone

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware.demo.issuer import make_signer
    from firmware.protocol.keys import public_key_b64
    from fleet.trust import build_envelope

    state = tmp_path / "state"
    assert main(["init", "--state", str(state)]) == 0
    fleet, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (state / "fleet_key.pub").write_text(public_key_b64(fleet) + "\n")
    (state / "trust" / "dcc-certs").mkdir(parents=True)  # one DCC signer: a format has trust
    (state / "trust" / "dcc-certs" / "dsc.der").write_bytes(make_signer().certificate_der)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[state]\ndir = "{state}"\n')
    for signer, verdict in ((stranger, "FAIL trust data"), (fleet, "ok   trust data")):
        (state / "trust" / "dcc-rules.json").write_bytes(
            build_envelope(signer, "dcc-rules", 1, [], datetime.now(timezone.utc)))
        out = io.StringIO()
        run_selftest(config, out)
        assert verdict in out.getvalue(), out.getvalue()
