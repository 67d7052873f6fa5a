"""Offline provisioning bundles: written by `healthgate-fleet bundle`, installed by
`healthgate-provision import-bundle`; tampered, traversing, forged, expired, oversized and
replayed bundles are refused before anything is written."""
from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.setup.bundle import MAX_MEMBER_BYTES, build_bundle
from firmware.clock import FixedClock
from firmware.setup.provisioner import CodeProvisioner
from fleet.cli import main as fleet_main
from fleet.provisioncodes import create_bundle
from provisioning.cli import main as provision_main
from tests.test_provisioncode import NOW, Fleet, fleet, kiosk_state  # noqa: F401 (fixture)

CLOSED_PORT_URL = "http://127.0.0.1:9"  # discard port: nothing listens, the site is offline


# what each bad bundle below is refused for, so that no case passes by failing another check
DETAILS = {"changed member": "was changed", "extra member": "differ from the manifest",
           "traversal": "unexpected member", "nested traversal": "unexpected member",
           "absolute": "unexpected member", "edited manifest": "not signed by the pinned key",
           "no signature": "no signed manifest", "other key": "not signed by the pinned key",
           "zip bomb": "too large", "not a zip": "BadZipFile"}


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rezip(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, raw in parts.items():
            archive.writestr(name, raw)
    return out.getvalue()


def test_cli_bundle_installs_offline_and_registers_online(fleet: Fleet, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    db, key = f"sqlite:///{tmp_path}/fleet.db", str(tmp_path / "fleet" / "signing.key")
    offline, online = tmp_path / "offline.zip", tmp_path / "online.zip"
    assert fleet_main(["bundle", "--db", db, "--key", key, "--fleet-url", CLOSED_PORT_URL,
                       "--out", str(offline)]) == 0
    assert fleet_main(["bundle", "--db", db, "--key", key, "--fleet-url", fleet.server.url,
                       "--out", str(online)]) == 0
    assert fleet_main(["bundle", "--db", db, "--key", key, "--fleet-url", fleet.server.url,
                       "--out", str(online)]) == 2  # never over an existing file
    capsys.readouterr()
    site = kiosk_state(tmp_path / "site", fleet.key, "farm-1-gate")
    assert provision_main(["import-bundle", "--state-dir", str(site), str(offline)]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 items" in out and "not registered yet" in out, out
    assert (site / "trust" / "dcc-signers.json").read_bytes() == \
        fleet.server.store.trust("dcc-signers").envelope
    assert provision_main(["import-bundle", "--state-dir", str(site), str(offline)]) == 1
    assert "already used" in capsys.readouterr().out
    shop = kiosk_state(tmp_path / "shop", fleet.key, "shop-4-door")
    assert provision_main(["import-bundle", "--state-dir", str(shop), str(online)]) == 0
    assert "registered shop-4-door" in capsys.readouterr().out
    assert [d.device_id for d in fleet.server.store.devices()] == ["shop-4-door"]


def test_bad_bundles_are_refused_before_anything_is_written(fleet: Fleet, tmp_path: Path) -> None:
    good, _ = create_bundle(fleet.server.store, fleet.key, fleet.server.url, 60.0, NOW)
    parts = members(good)
    envelope = parts["trust/dcc-signers.json"]
    changed = envelope.replace(b'"certificates":[]', b'"certificates":[ ]')
    assert changed != envelope
    forger = Ed25519PrivateKey.generate()
    cases = {
        "changed member": (rezip({**parts, "trust/dcc-signers.json": changed}),
                           "PROVISION_BUNDLE_INVALID"),
        "extra member": (rezip({**parts, "trust/extra.json": envelope}),
                         "PROVISION_BUNDLE_INVALID"),
        "traversal": (rezip({**parts, "../../evil.json": b"x"}), "PROVISION_BUNDLE_INVALID"),
        "nested traversal": (rezip({**parts, "trust/../../evil.json": b"x"}),
                             "PROVISION_BUNDLE_INVALID"),
        "absolute": (rezip({**parts, "/tmp/evil.json": b"x"}), "PROVISION_BUNDLE_INVALID"),
        "edited manifest": (rezip({**parts, "manifest.json":
                                   parts["manifest.json"].replace(b'"v":1', b'"v":1 ')}),
                            "PROVISION_CODE_FORGED"),
        "no signature": (rezip({k: v for k, v in parts.items() if k != "manifest.sig"}),
                         "PROVISION_BUNDLE_INVALID"),
        "other key": (build_bundle(forger, "HGP1:x.y", {}), "PROVISION_CODE_FORGED"),
        "zip bomb": (rezip({**parts, "trust/dcc-rules.json": bytes(MAX_MEMBER_BYTES + 1)}),
                     "PROVISION_BUNDLE_INVALID"),
        "not a zip": (b"PK\x03\x04 this is not an archive" * 10, "PROVISION_BUNDLE_INVALID"),
    }
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-5-door")
    provisioner = CodeProvisioner(state, clock=FixedClock(NOW))
    for what, (data, reason) in cases.items():
        path = tmp_path / f"{what}.zip"
        path.write_bytes(data)
        outcome = provisioner.import_bundle(path)
        assert (outcome.ok, outcome.reason) == (False, reason), (what, outcome)
        assert DETAILS[what] in outcome.detail, (what, outcome)  # refused for that reason
    expired = CodeProvisioner(state, clock=FixedClock(NOW + timedelta(hours=2)))
    (tmp_path / "good.zip").write_bytes(good)
    assert expired.import_bundle(tmp_path / "good.zip").reason == "PROVISION_CODE_EXPIRED"
    assert not (state / "trust").exists() and not (tmp_path.parent / "evil.json").exists()
    assert fleet.server.store.devices() == []
    assert provisioner.import_bundle(tmp_path / "good.zip").ok  # the control: the real one works


def test_kiosk_imports_a_bundle_from_the_usb_folder_in_maintenance(fleet: Fleet,
                                                                   tmp_path: Path) -> None:
    from firmware.kiosk.inbox import Message
    from firmware.setup.provisioner import BUNDLE_FILE
    from tests.kiosk_harness import make_rig
    from tests.waiting import wait_for

    usb = tmp_path / "usb"
    usb.mkdir()
    data, _ = create_bundle(fleet.server.store, fleet.key, CLOSED_PORT_URL, 60.0, NOW)
    (usb / BUNDLE_FILE).write_bytes(data)
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "farm-2-gate")
    provisioner = CodeProvisioner(state, clock=FixedClock(NOW))
    rig = make_rig(tmp_path, provisioner=provisioner.handle,
                   bundle_source=lambda: provisioner.import_from_folder(usb))
    try:
        rig.kiosk.post(Message("maintenance", True))
        assert rig.wait_state("MAINTENANCE").line2 == "Back soon"
        assert rig.wait_state("MAINTENANCE").line2 == "Done: trust 1/1"  # offline: trust only
        assert (state / "trust" / "dcc-signers.json").is_file()
        rig.kiosk.post(Message("maintenance", False))
        rig.wait_state("IDLE")
        handled = rig.kiosk.progress.messages
        before = handled["provisioned"]  # counted before the cause: its answer cannot be missed
        rig.kiosk.post(Message("maintenance", True))  # the stick is still in: used, so quiet
        rig.wait_state("MAINTENANCE")
        wait_for(lambda: handled["provisioned"] > before, "the second look at the USB folder")
        assert rig._shown_since_cursor() == []
    finally:
        rig.stop()


def test_cli_import_is_logged_while_the_kiosk_runs_and_reaches_the_fleet(
        fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`import-bundle` records a `provisioning` event in the signed log (no token, no URL, no
    person), chained with the running kiosk's own events; the next upload delivers it."""
    import json

    from firmware.eventlog.outbox import Outbox
    from firmware.eventlog.restart import open_or_restart
    from firmware.identity import load
    from firmware.statefolder import StateFolder
    from firmware.sync.uploader import Uploader

    site = kiosk_state(tmp_path / "site", fleet.key, "farm-3-gate")
    identity = load(site)
    kiosk_log = open_or_restart(StateFolder(site).events_db, identity.key, identity.device_id,
                                lambda: NOW)  # the kiosk runs: its log is open throughout
    try:
        kiosk_log.append("boot", {})
        data, created = create_bundle(fleet.server.store, fleet.key, fleet.server.url, 60.0, NOW)
        (tmp_path / "bundle.zip").write_bytes(data)
        assert provision_main(["import-bundle", "--state-dir", str(site),
                               str(tmp_path / "bundle.zip")]) == 0
        assert "recorded in the event log" in capsys.readouterr().out
        kiosk_log.append("boot", {})  # the kiosk goes on after the tool's event: no collision
        assert kiosk_log.verify().ok
        events = [kiosk_log.get(seq) for seq in range(1, kiosk_log.tip_seq + 1)]
        assert [event.kind for event in events if event] == ["boot", "provisioning", "boot"]
        logged = events[1]
        assert logged is not None and logged.body == {"ok": True, "reason": None}
        wire = json.dumps(logged.to_wire())
        token = created.text.split(".")[0]
        for secret in (fleet.server.url, created.code_id, token[len("HGP1:"):][:40]):
            assert secret not in wire
        uploader = Uploader(Outbox(kiosk_log), fleet.server.url, identity.device_id, identity.key)
        while uploader.status().pending:
            assert uploader.upload_once() > 0
        assert [event.kind for event in fleet.server.store.events("farm-3-gate")] == \
            ["boot", "provisioning", "boot"]
    finally:
        kiosk_log.close()
    refused = tmp_path / "again.zip"
    refused.write_bytes(data)  # used up: refused, and a refusal writes nothing, not even an event
    assert provision_main(["import-bundle", "--state-dir", str(site), str(refused)]) == 1
    with open_or_restart(StateFolder(site).events_db, identity.key, identity.device_id,
                         lambda: NOW) as reopened:
        assert reopened.tip_seq == 3
