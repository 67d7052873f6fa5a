"""Provisioning codes: a signed QR from the fleet registers a kiosk and fetches its trust data;
forged, expired, replayed, oversized and garbage codes are refused with a reason (real
signatures, real HTTP to a loopback fleet server, the real kiosk loop and display emulator)."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.credentials.reasons import message_for
from firmware.protocol.events import canonical_json
from firmware.identity import load_or_create
from firmware.kiosk.inbox import Message
from firmware.setup.code import MAX_CODE_CHARS, PREFIX, build_code, check_code, \
    ProvisionCodeError
from firmware.clock import Clock, FixedClock
from firmware.setup.provisioner import CodeProvisioner
from firmware.statefolder import StateFolder
from firmware.protocol.keys import key_id
from fleet.provisioncodes import create_code
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import generate_signing_key, publish
from firmware.protocol.keys import public_key_b64
from tests.kiosk_harness import make_rig

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class Fleet:
    server: ServerHandle
    key: Ed25519PrivateKey

    def code(self, ttl_min: float = 15.0) -> str:
        return create_code(self.server.store, self.key, self.server.url, ttl_min, NOW).text


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    key_path = tmp_path / "fleet" / "signing.key"
    key = generate_signing_key(key_path)
    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db", signing_key_path=key_path)
    publish(handle.store, key, "dcc-signers", {"certificates": []}, published_by="test")
    yield Fleet(handle, key)
    handle.stop()


def kiosk_state(folder: Path, fleet_key: Ed25519PrivateKey | None, device_id: str) -> Path:
    """A first-boot state folder: an identity and (as the image installs it) the fleet key."""
    load_or_create(folder, device_id)
    if fleet_key is not None:
        (folder / StateFolder.FLEET_KEY).write_text(public_key_b64(fleet_key) + "\n")
    return folder


def test_code_registers_the_kiosk_and_fetches_trust_data(fleet: Fleet, tmp_path: Path) -> None:
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-1-door")
    outcome = CodeProvisioner(state, clock=FixedClock(NOW)).handle(fleet.code())
    assert outcome.ok and outcome.reason is None, outcome
    assert [d.device_id for d in fleet.server.store.devices()] == ["shop-1-door"]
    assert (state / "trust" / "dcc-signers.json").is_file()
    assert outcome.trust_updated == 1  # the one item published; the others are "missing"


def test_replayed_code_is_refused_here_and_at_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    code = fleet.code()
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-1-door")
    assert CodeProvisioner(state, clock=FixedClock(NOW)).handle(code).ok
    again = CodeProvisioner(state, clock=FixedClock(NOW)).handle(code)
    assert (again.ok, again.reason) == (False, "PROVISION_CODE_USED")
    other = kiosk_state(tmp_path / "other", fleet.key, "shop-2-door")
    stolen = CodeProvisioner(other, clock=FixedClock(NOW)).handle(code)
    assert (stolen.ok, stolen.reason) == (False, "PROVISION_TOKEN_REFUSED")
    assert [d.device_id for d in fleet.server.store.devices()] == ["shop-1-door"]


def test_refusals_name_their_reason(fleet: Fleet, tmp_path: Path) -> None:
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-1-door")
    provisioner = CodeProvisioner(state, clock=FixedClock(NOW))
    forger = Ed25519PrivateKey.generate()
    forged = build_code(forger, "forged-code-1", fleet.server.url, "any-token", NOW + timedelta(hours=1))
    good = fleet.code()
    body, _, sig = good[len(PREFIX):].partition(".")
    payload = base64.urlsafe_b64decode(body + "==")
    tampered_payload = payload.replace(fleet.server.url.encode(), b"http://evil.example")
    tampered = PREFIX + base64.urlsafe_b64encode(tampered_payload).decode().rstrip("=") + "." + sig
    later = CodeProvisioner(state, clock=FixedClock(NOW + timedelta(minutes=16)))
    cases = {
        "PROVISION_CODE_FORGED": (provisioner, forged),
        "PROVISION_CODE_EXPIRED": (later, fleet.code(ttl_min=15)),
        "PROVISION_CODE_TOO_LARGE": (provisioner, PREFIX + "A" * MAX_CODE_CHARS),
        "PROVISION_CODE_MALFORMED": (provisioner, PREFIX + "not base64 at all!"),
    }
    for reason, (handler, text) in cases.items():
        outcome = handler.handle(text)
        assert (outcome.ok, outcome.reason) == (False, reason), (reason, outcome)
        assert message_for(reason) != message_for("NO_SUCH_REASON")  # said in words
    tampered_outcome = provisioner.handle(tampered)
    assert tampered_outcome.reason == "PROVISION_CODE_FORGED", tampered_outcome
    assert fleet.server.store.devices() == []  # nothing refused reached the fleet
    unpinned = kiosk_state(tmp_path / "unpinned", None, "shop-3-door")
    assert CodeProvisioner(unpinned, clock=FixedClock(NOW)).handle(good).reason == \
        "PROVISION_NO_FLEET_KEY"


class SetClock(Clock):
    """The kiosk's own clock logic (build date, `last_seen`) reading a time the test sets."""

    def __init__(self, at: datetime, state_file: Path | None = None) -> None:
        super().__init__(state_file)
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_expiry_is_judged_by_the_kiosks_trusted_clock(fleet: Fleet, tmp_path: Path) -> None:
    """A clock reset to 1970, or set back behind the last time the kiosk saw, would take an
    expired code (or bundle: no fleet then refuses its token) for a valid one: refused."""
    from fleet.provisioncodes import create_bundle
    from tests.test_provisionbundle import CLOSED_PORT_URL

    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-1-door")
    hour_ago = NOW - timedelta(hours=1)
    expired = create_code(fleet.server.store, fleet.key, fleet.server.url, 15, hour_ago).text
    bundle, _ = create_bundle(fleet.server.store, fleet.key, CLOSED_PORT_URL, 15, hour_ago)
    (tmp_path / "old.zip").write_bytes(bundle)
    seen = StateFolder(state).last_seen
    seen.write_text(f"{NOW.timestamp():.3f}\n")  # the kiosk has seen NOW
    clocks = {"1970": SetClock(datetime(1970, 1, 2, tzinfo=timezone.utc), seen),
              "set back": SetClock(hour_ago, seen)}  # both read a time before the expiry
    for what, clock in clocks.items():
        assert clock.trust_problem() == "CLOCK_UNTRUSTED", what
        for outcome in (CodeProvisioner(state, clock=clock).handle(expired),
                        CodeProvisioner(state, clock=clock).import_bundle(tmp_path / "old.zip")):
            assert (outcome.ok, outcome.reason) == (False, "PROVISION_CLOCK_UNTRUSTED"), what
    assert message_for("PROVISION_CLOCK_UNTRUSTED") == "Clock wrong - setup refused"
    assert fleet.server.store.devices() == [] and not (state / "trust").exists()
    right = CodeProvisioner(state, clock=SetClock(NOW, seen))  # the control: right clock
    assert right.handle(expired).reason == "PROVISION_CODE_EXPIRED"
    assert right.import_bundle(tmp_path / "old.zip").reason == "PROVISION_CODE_EXPIRED"
    seen.write_text(f"{(NOW + timedelta(days=2)).timestamp():.3f}\n")
    default = CodeProvisioner(state)  # as `import-bundle` builds it: the state folder's clock
    assert default.handle(fleet.code()).reason == "PROVISION_CLOCK_UNTRUSTED"


def test_signed_payload_of_another_fleet_or_wrong_shape_is_refused() -> None:
    key = Ed25519PrivateKey.generate()

    def signed(fields: dict[str, object]) -> str:
        payload = canonical_json(fields)
        sig = key.sign(PREFIX.encode() + payload)
        return (PREFIX + base64.urlsafe_b64encode(payload).decode().rstrip("=") + "."
                + base64.urlsafe_b64encode(sig).decode().rstrip("="))

    fields = {"v": 1, "id": "code-00001", "url": "http://127.0.0.1:1", "token": "t" * 20,
              "fp": "0" * 16, "exp": int((NOW + timedelta(hours=1)).timestamp())}
    with pytest.raises(ProvisionCodeError) as wrong_fleet:
        check_code(signed(fields), key.public_key(), NOW)
    assert wrong_fleet.value.code == "PROVISION_CODE_WRONG_FLEET"
    fields["fp"] = key_id(key.public_key())
    check_code(signed(fields), key.public_key(), NOW)  # the control: this one passes
    for change in ({"exp": 1e300}, {"exp": True}, {"v": 2}, {"url": "file:///etc/passwd"},
                   {"id": "../x"}, {"token": ""}):
        with pytest.raises(ProvisionCodeError) as bad:
            check_code(signed({**fields, **change}), key.public_key(), NOW)
        assert bad.value.code == "PROVISION_CODE_MALFORMED", change


def shown(screen: Any) -> str:
    """The message of a maintenance screen: on line 2, or over both lines when it is long."""
    return screen.line2 if screen.line1 == "Maintenance" else f"{screen.line1} {screen.line2}"


def test_kiosk_in_maintenance_scans_the_code_and_shows_the_outcome(fleet: Fleet,
                                                                    tmp_path: Path) -> None:
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-1-door")
    provisioner = CodeProvisioner(state, clock=FixedClock(NOW))
    rig = make_rig(tmp_path, provisioner=provisioner.handle)
    try:
        code = fleet.code()
        rig.show_code(code, 640, 480)  # normal mode: a setup code is not a pass
        denied = rig.wait_state("DENIED")
        assert "Setup code - not a pass" in f"{denied.line1} {denied.line2}"
        assert fleet.server.store.devices() == []
        rig.next_person()
        rig.kiosk.post(Message("maintenance", True))
        rig.wait_state("MAINTENANCE")
        rig.advance(rig.kiosk.config.same_code_cooldown_s)  # the same code was just denied
        rig.show_code(code, 640, 480)
        assert rig.wait_state("MAINTENANCE").line2 == "Setting up..."
        done = rig.wait_state("MAINTENANCE")
        assert done.line2.startswith("Done: trust 1/"), done
        assert [d.device_id for d in fleet.server.store.devices()] == ["shop-1-door"]
        forged = build_code(Ed25519PrivateKey.generate(), "forged-code-2", fleet.server.url,
                            "x" * 20, NOW + timedelta(hours=1))
        rig.show_code(forged, 640, 480)
        assert rig.wait_state("MAINTENANCE").line2 == "Setting up..."
        assert shown(rig.wait_state("MAINTENANCE")) == message_for("PROVISION_CODE_FORGED")
        rig.show_code(code, 640, 480)  # the used code again
        assert rig.wait_state("MAINTENANCE").line2 == "Setting up..."
        assert shown(rig.wait_state("MAINTENANCE")) == message_for("PROVISION_CODE_USED")
    finally:
        rig.stop()


def test_fleet_cli_prints_a_code_the_kiosk_accepts(fleet: Fleet, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli import main as fleet_main

    db = f"sqlite:///{tmp_path}/fleet.db"
    key = str(tmp_path / "fleet" / "signing.key")
    svg = tmp_path / "code.svg"
    assert fleet_main(["provision-code", "--db", db, "--key", key, "--fleet-url",
                       fleet.server.url, "--ttl-minutes", "5", "--svg", str(svg)]) == 0
    out = capsys.readouterr()
    text = out.out.strip()
    assert text.startswith(PREFIX) and "expires" in out.err and svg.read_text().startswith("<?xml")
    state = kiosk_state(tmp_path / "kiosk", fleet.key, "shop-9-door")
    assert CodeProvisioner(state).handle(text).ok
    assert fleet_main(["provision-code", "--db", db, "--key", key, "--fleet-url",
                       "ftp://fleet", "--ttl-minutes", "5"]) == 2
    assert fleet_main(["provision-code", "--db", db, "--key", key, "--fleet-url",
                       fleet.server.url, "--ttl-minutes", "0"]) == 2
    assert "at most" in capsys.readouterr().err


def test_dashboard_page_needs_login_csrf_and_the_signing_key(fleet: Fleet, tmp_path: Path) -> None:
    import re

    import requests

    from fleet.dashboard.auth import add_operator
    from fleet.storage import rfc3339, utc_now

    url = fleet.server.url + "/dashboard/provisioning"
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 303
    assert requests.post(url, data={"ttl_minutes": "5"}, allow_redirects=False,
                         timeout=10).status_code == 303
    add_operator(fleet.server.store, "alice", "correct horse battery", rfc3339(utc_now()))
    session = requests.Session()
    session.post(fleet.server.url + "/dashboard/login",
                 data={"name": "alice", "password": "correct horse battery"}, timeout=10)
    form = session.get(url, timeout=10).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)  # type: ignore[union-attr]
    assert session.post(url, data={"ttl_minutes": "5"}, timeout=10).status_code == 403
    assert session.post(url, data={"ttl_minutes": "5", "fleet_url": "javascript:alert(1)",
                                   "csrf": csrf}, timeout=10).status_code == 422
    assert session.post(url, data={"ttl_minutes": "99999", "csrf": csrf},
                        timeout=10).status_code == 422
    created = session.post(url, data={"ttl_minutes": "5", "csrf": csrf}, timeout=10)
    assert created.status_code == 201 and "<svg" in created.text
    assert len(fleet.server.store.tokens()) == 1  # the code's one-time token
    fleet.server.app.state.signing_key = None  # a server started without --key
    unsigned = session.post(url, data={"ttl_minutes": "5", "csrf": csrf}, timeout=10)
    assert unsigned.status_code == 503 and "signing key" in unsigned.text


def test_a_provisioner_that_raises_is_a_refusal_and_the_kiosk_goes_on(tmp_path: Path) -> None:
    calls: list[str] = []

    def broken(text: str) -> Any:
        calls.append(text)
        raise RuntimeError("bug")

    rig = make_rig(tmp_path, provisioner=broken)
    try:
        rig.kiosk.post(Message("maintenance", True))
        rig.wait_state("MAINTENANCE")
        for number in (1, 2):  # the second code is taken: the failed worker left no lock
            rig.show_code(f"{PREFIX}not-a-real-code-{number}", 640, 480)
            assert rig.wait_state("MAINTENANCE").line2 == "Setting up..."
            assert shown(rig.wait_state("MAINTENANCE")) == message_for("PROVISION_FAILED")
        assert len(calls) == 2
        assert rig.kiosk.state.value == "MAINTENANCE"
    finally:
        rig.stop()
