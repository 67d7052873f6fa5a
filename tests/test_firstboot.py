"""First boot: a kiosk whose image carries only the pinned fleet key creates its identity,
waits for a provisioning code on its own display, registers from the code its camera sees and
goes on into IDLE without a restart (real kiosk assembly, loopback fleet, pty display
emulator); what starts setup, what ends it, and what it refuses."""
from __future__ import annotations

import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.app import build, not_provisioned
from firmware.camera.fake import FakeCamera
from firmware.config import parse_config
from firmware.credentials.reasons import message_for
from firmware.demo.frames import background, frame_with_code
from firmware.setup.firstboot import PROMPT, RESTART, FirstBootSetup, prepare
from firmware.identity import load, load_or_create
from firmware.kiosk.inbox import Message
from firmware.protocol.keys import public_key_b64
from firmware.setup.code import build_code
from firmware.statefolder import StateFolder
from provisioning.cli import main as provision_main
from tests.test_provisioncode import NOW, Fleet, fleet  # noqa: F401 (fixture)
from tests.waiting import HANG_GUARD_S, wait_for


def image_state(folder: Path, fleet_key: Ed25519PrivateKey) -> Path:
    """A fresh kiosk image's state folder: the fleet's public key pinned, no device identity."""
    folder.mkdir(mode=0o700)
    (folder / StateFolder.FLEET_KEY).write_text(public_key_b64(fleet_key) + "\n")
    return folder


class Screens:
    """The screens the display emulator decoded from the serial line, waited for in order."""

    def __init__(self, display: Any) -> None:
        self.emulator = display.emulator
        self.cursor = 0

    def _next(self, state: str) -> Any:
        screens = self.emulator.screens
        for index in range(self.cursor, len(screens)):
            if screens[index].state == state:
                self.cursor = index + 1
                return screens[index]
        return None

    def wait(self, state: str) -> Any:
        return wait_for(lambda: self._next(state),
                        lambda: f"a {state} screen; shown: {self.emulator.screens[self.cursor:]}")


def shown(screen: Any) -> str:
    """A maintenance screen's message: line 2, or both lines when it is long."""
    return screen.line2 if screen.line1 == "Maintenance" else f"{screen.line1} {screen.line2}"


def test_first_boot_kiosk_registers_from_a_code_and_goes_on_into_idle(fleet: Fleet,
                                                                       tmp_path: Path) -> None:
    state = image_state(tmp_path / "state", fleet.key)
    config = parse_config({
        # a code in view is read once (no re-read while the test thread looks, however slow)
        "kiosk": {"result_hold_s": 0.3, "same_code_cooldown_s": 3600.0},
        "camera": {"source": "fake"},
        "face": {"enabled": False}, "display": {"ack_timeout_s": 1.0, "heartbeat_s": 0.5},
        "fleet": {"url": fleet.server.url, "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
        "state": {"dir": str(state)}})
    assert prepare(StateFolder(state))  # what `healthgate run` does first
    identity = load(state)  # created by the kiosk itself: hg-<from its key>
    assert identity.device_id.startswith("hg-") and not_provisioned(config) is None
    assert stat.S_IMODE(StateFolder(state).device_key.stat().st_mode) == 0o600
    camera = FakeCamera([background(640, 480)], fps=30)
    app = build(config, camera=camera)
    thread = threading.Thread(target=app.kiosk.run, daemon=True)
    try:
        app.start_background()  # the first trust sync fails: not registered yet
        thread.start()
        screens = Screens(app.display)
        assert screens.wait("MAINTENANCE").line2 == PROMPT  # by itself, no technician switch
        # a code of another fleet is refused on the display; setup goes on
        forged = build_code(Ed25519PrivateKey.generate(), "forged-code-9", fleet.server.url,
                            "x" * 20, NOW + timedelta(hours=1))
        camera.set_frames([frame_with_code(forged, 640, 480)])
        assert screens.wait("MAINTENANCE").line2 == "Setting up..."
        assert shown(screens.wait("MAINTENANCE")) == message_for("PROVISION_CODE_FORGED")
        camera.set_frames([background(640, 480)])
        handled = app.kiosk.progress.messages
        before = handled["maintenance"]
        app.kiosk.post(Message("maintenance", False))  # setup is not left on request
        wait_for(lambda: handled["maintenance"] > before, "the request to leave")
        assert app.kiosk.state.value == "MAINTENANCE" and fleet.server.store.devices() == []
        camera.set_frames([frame_with_code(fleet.code(), 640, 480)])
        assert screens.wait("MAINTENANCE").line2 == "Setting up..."
        done = screens.wait("MAINTENANCE")
        assert done.line2.startswith("Done: trust 1/"), done  # the outcome, on the display
        camera.set_frames([background(640, 480)])  # the technician takes the code away
        screens.wait("IDLE")  # normal operation, without a restart
        assert [d.device_id for d in fleet.server.store.devices()] == [identity.device_id]
        assert (state / "trust" / "dcc-signers.json").is_file()
        assert not StateFolder(state).setup_pending.exists()  # the next start is a normal one
        assert app.kiosk.status.snapshot().state == "IDLE"
        # the outcome reaches the fleet in the signed log, as every event of the kiosk
        wait_for(lambda: [e.body for e in fleet.server.store.events(identity.device_id)
                          if e.kind == "provisioning"] == [
                              {"ok": False, "reason": "PROVISION_CODE_FORGED"},
                              {"ok": True, "reason": None}], "the provisioning events uploaded")
    finally:
        app.kiosk.stop()
        thread.join(HANG_GUARD_S)
        app.close()


def test_what_starts_first_boot_setup(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not prepare(StateFolder(empty))  # nothing pinned: no identity invented either
    assert list(empty.iterdir()) == []
    legacy = tmp_path / "legacy"  # provisioned by init + register before setup mode existed
    load_or_create(legacy, "door-1")
    (legacy / StateFolder.FLEET_KEY).write_text(public_key_b64(key) + "\n")
    assert not prepare(StateFolder(legacy))
    fresh = image_state(tmp_path / "fresh", key)
    assert prepare(StateFolder(fresh)) and prepare(StateFolder(fresh))
    assert load(fresh).device_id == load(fresh).device_id  # created once, then kept


def test_setup_says_what_is_missing_and_when_a_restart_is_needed(tmp_path: Path) -> None:
    state = image_state(tmp_path / "state", Ed25519PrivateKey.generate())
    prepare(StateFolder(state))
    setup = FirstBootSetup(StateFolder(state))
    assert setup.prompt() == PROMPT and setup.finish() is None
    (state / StateFolder.FLEET_KEY).unlink()
    unpinned = FirstBootSetup(StateFolder(state))
    assert unpinned.prompt() == message_for("PROVISION_NO_FLEET_KEY")
    # a key pinned by hand while the kiosk ran: its trust data was loaded without it
    (state / StateFolder.FLEET_KEY).write_text(
        public_key_b64(Ed25519PrivateKey.generate()) + "\n")
    assert unpinned.finish() == RESTART


def test_init_with_fleet_key_prepares_setup_and_register_ends_it(
        fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    key = public_key_b64(fleet.key)
    assert provision_main(["init", "--state-dir", str(state), "--device-id", "shop-7-door",
                           "--fleet-key", "not a key"]) == 2
    assert not state.exists() or not StateFolder(state).has_identity()
    assert provision_main(["init", "--state-dir", str(state), "--device-id", "shop-7-door",
                           "--fleet-key", key]) == 0
    assert "first-boot setup" in capsys.readouterr().out
    assert StateFolder(state).pinned_fleet_key() == key and prepare(StateFolder(state))
    other = public_key_b64(Ed25519PrivateKey.generate())
    assert provision_main(["init", "--state-dir", str(state), "--fleet-key", other]) == 2
    assert "different fleet key" in capsys.readouterr().out
    token = "enrol-" + "a" * 20
    fleet.server.store.add_token(token, NOW + timedelta(hours=1))
    assert provision_main(["register", "--state-dir", str(state), "--fleet-url",
                           fleet.server.url, "--token", token, "--fleet-key", key]) == 0
    assert not prepare(StateFolder(state))  # registered by hand: a normal start


def test_run_on_a_first_boot_image_creates_the_identity_and_starts_in_setup(
        fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import firmware.app as app_module

    state = image_state(tmp_path / "state", fleet.key)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[fleet]\nurl = "{fleet.server.url}"\n'
                      f'[state]\ndir = "{state}"\n')
    started: list[Any] = []
    monkeypatch.setattr(app_module, "_run", lambda config, render: started.append(config) or 0)
    assert app_module.main(["--config", str(config)]) == 0
    assert len(started) == 1 and StateFolder(state).has_identity()
    assert StateFolder(state).setup_pending.is_file()


def test_first_boot_of_an_offline_site_takes_the_bundle_on_the_usb_stick(
        fleet: Fleet, tmp_path: Path) -> None:
    from fleet.provisioncodes import create_bundle
    from firmware.setup.provisioner import BUNDLE_FILE
    from tests.test_provisionbundle import CLOSED_PORT_URL

    usb = tmp_path / "usb"
    usb.mkdir()
    data, _ = create_bundle(fleet.server.store, fleet.key, CLOSED_PORT_URL, 60.0, NOW)
    (usb / BUNDLE_FILE).write_bytes(data)
    state = image_state(tmp_path / "state", fleet.key)
    config = parse_config({  # no fleet.url: the site has no network
        "kiosk": {"result_hold_s": 0.3}, "camera": {"source": "fake"},
        "face": {"enabled": False}, "display": {"ack_timeout_s": 1.0, "heartbeat_s": 0.5},
        "fleet": {"bundle_dir": str(usb)}, "state": {"dir": str(state)}})
    assert prepare(StateFolder(state)) and not_provisioned(config) is None
    app = build(config, camera=FakeCamera([background(320, 240)], fps=30))
    thread = threading.Thread(target=app.kiosk.run, daemon=True)
    try:
        thread.start()
        screens = Screens(app.display)
        assert screens.wait("MAINTENANCE").line2 == PROMPT
        assert screens.wait("MAINTENANCE").line2 == "Done: trust 1/1"  # installed; offline
        screens.wait("IDLE")
        assert (state / "trust" / "dcc-signers.json").is_file()
        assert not StateFolder(state).setup_pending.exists()
    finally:
        app.kiosk.stop()
        thread.join(HANG_GUARD_S)
        app.close()
