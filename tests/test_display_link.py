"""Display link and driver over a real pty: ACK, NAK, retransmit, dead link, reconnect, heartbeat."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.display import Display, DisplayEmulator, DisplayError, open_display, screen_for
from firmware.display.codec import MsgType, NakReason
from firmware.display.emulator import FaultScript
from firmware.display.link import LinkConfig, LinkDead, NotAcknowledged, SerialLink
from firmware.display.screen import KIOSK_STATES

# Tests assert what happened, never how long it took. Where a reply is expected the ACK timeout
# is generous (a loaded machine must not turn into a retransmit); tests whose point is waiting
# out timeouts (silent display, lost replies) pass a short one, which keeps the file quick.
CONFIG = dict(ack_timeout_s=0.5, max_retries=2, heartbeat_s=30.0)
SHORT = 0.1
WAIT = 5.0  # upper bound for waiting on the emulator thread; never reached when things work


class Clock:
    """Monotonic time plus an offset a test can advance, to make a heartbeat due without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DisplayEmulator]:
    emu = DisplayEmulator(link_path=str(tmp_path / "display"))
    emu.start()
    yield emu
    emu.stop()


def make_display(emu: DisplayEmulator, clock: Clock | None = None, **overrides: float) -> Display:
    settings = {**CONFIG, "reconnect_interval_s": 0.0, **overrides}
    config = LinkConfig(**settings)  # type: ignore[arg-type]
    clock = clock or Clock()
    display = Display(SerialLink(emu.port, config, clock=clock), clock=clock)
    assert display.connect(), display.last_error
    return display


def test_show_is_acknowledged_and_decoded_by_the_display(emulator: DisplayEmulator) -> None:
    with make_display(emulator) as display:
        display.show(screen_for("IDLE", detail="Trust data 2h old"), timeout=WAIT)
        display.show(screen_for("DENIED", "Pass expired"), timeout=WAIT)
        assert display.healthy
        assert [s.state for s in emulator.screens] == ["IDLE", "DENIED"]
        assert emulator.current.line2 == "Pass expired"
        assert display.link.stats.retransmits == 0 and display.link.stats.rx.errors == 0


def test_nak_causes_retransmit(emulator: DisplayEmulator) -> None:
    with make_display(emulator) as display:
        emulator.script(nak_frames=2)
        display.show(screen_for("GRANTED"), timeout=WAIT)
        assert display.link.stats.naks == 2
        assert display.link.stats.retransmits == 2
        assert emulator.screens == [screen_for("GRANTED")]


def test_naks_beyond_the_retries_raise_but_the_link_stays_up(emulator: DisplayEmulator) -> None:
    with make_display(emulator) as display:
        emulator.script(nak_frames=10)
        with pytest.raises(DisplayError) as caught:
            display.show(screen_for("GRANTED"), timeout=WAIT)
        assert caught.value.reason == "not_acknowledged"  # the probe PING was answered
        assert display.link.is_open and not display.healthy
        assert emulator.screens == []
        emulator.script(nak_frames=0)
        display.poll()  # unhealthy: pings at once, without waiting for the heartbeat
        assert display.healthy


def test_refused_payload_is_not_resent(emulator: DisplayEmulator) -> None:
    link = SerialLink(emulator.port, LinkConfig(**CONFIG))  # type: ignore[arg-type]
    link.open()  # nothing answered ACK
    try:
        with pytest.raises(NotAcknowledged) as caught:
            link.request(MsgType.SHOW, b"\x09\x00\x00\x00\x00")  # colour code 9 does not exist
        assert "BAD_PAYLOAD" in str(caught.value)
        assert link.stats.retransmits == 0 and link.stats.naks == 1
    finally:
        link.close()


def test_silent_display_raises_within_the_ladder(emulator: DisplayEmulator) -> None:
    with make_display(emulator, ack_timeout_s=SHORT) as display:
        emulator.go_silent()
        pings_before = display.link.stats.probes
        with pytest.raises(DisplayError) as caught:
            display.show(screen_for("GRANTED"))
        assert caught.value.reason == "link_dead"
        stats = display.link.stats
        assert stats.retransmits == CONFIG["max_retries"]
        assert stats.probes - pings_before == display.config.probe_pings
        assert not display.healthy and not display.link.is_open


def test_show_timeout_caps_the_ladder_without_declaring_death(emulator: DisplayEmulator) -> None:
    with make_display(emulator, ack_timeout_s=SHORT, max_retries=5) as display:
        emulator.go_silent()
        with pytest.raises(DisplayError) as caught:
            display.show(screen_for("IDLE"), timeout=2.5 * SHORT)
        assert caught.value.reason == "deadline"
        assert display.link.is_open and display.link.stats.deaths == 0


def test_corrupt_replies_are_resynced(emulator: DisplayEmulator) -> None:
    with make_display(emulator) as display:
        emulator.script(corrupt_replies=2)
        display.show(screen_for("VERIFYING"), timeout=WAIT)
        assert display.link.stats.rx.errors == 2
        assert display.link.stats.retransmits == 2
        # The display saw the same frame three times (same seq) and recorded it once.
        assert emulator.screens == [screen_for("VERIFYING")]
        display.show(screen_for("IDLE"), timeout=WAIT)
        assert display.link.stats.rx.errors == 2


def test_lost_ack_is_retransmitted_and_recorded_once(emulator: DisplayEmulator) -> None:
    with make_display(emulator, ack_timeout_s=SHORT) as display:
        emulator.script(drop_replies=1)
        display.show(screen_for("GRANTED"), timeout=WAIT)
        stats = display.link.stats
        # one ACK was dropped; on a loaded machine a later one may also come after the short
        # timeout: each timeout is one retransmit, and the display records the screen once
        assert stats.ack_timeouts >= 1 and stats.retransmits == stats.ack_timeouts
        assert emulator.screens == [screen_for("GRANTED")]


def test_slow_display_late_replies_are_discarded(emulator: DisplayEmulator) -> None:
    with make_display(emulator, ack_timeout_s=SHORT, max_retries=6) as display:
        emulator.script(reply_delay_s=1.5 * SHORT)  # longer than ack_timeout_s: replies come late
        display.show(screen_for("SCANNING"), timeout=WAIT)
        emulator.script(reply_delay_s=0.0)
        display.show(screen_for("IDLE"), timeout=WAIT)
        assert display.link.stats.retransmits >= 1
        assert [s.state for s in emulator.screens] == ["SCANNING", "IDLE"]


def test_dropped_link_errors_then_recovers_when_the_display_returns(emulator: DisplayEmulator) -> None:
    with make_display(emulator) as display:
        display.show(screen_for("IDLE"), timeout=WAIT)
        emulator.unplug()
        with pytest.raises(DisplayError) as caught:
            display.show(screen_for("DENIED", "Pass expired"), timeout=WAIT)
        assert caught.value.reason == "link_dead"
        with pytest.raises(DisplayError) as caught:
            display.poll()  # the port is gone: reopening fails
        assert caught.value.reason == "port_unavailable"
        emulator.replug()
        display.poll()
        assert display.healthy
        # The display came back blank; the driver repainted the screen the kiosk wanted last.
        assert emulator.current == screen_for("DENIED", "Pass expired")


def test_unplugged_display_at_start_is_picked_up_when_plugged_in(tmp_path: Path) -> None:
    port = str(tmp_path / "ttyDISPLAY")
    with open_display(port, ack_timeout_s=0.5, max_retries=1, reconnect_interval_s=0.0) as display:
        assert not display.healthy
        assert display.last_error is not None and display.last_error.reason == "port_unavailable"
        with pytest.raises(DisplayError):
            display.show(screen_for("BOOT"), timeout=WAIT)
        with DisplayEmulator(link_path=port) as emulator:
            display.poll()
            assert display.healthy
            assert emulator.current == screen_for("BOOT")


def test_reconnect_attempts_are_rate_limited(emulator: DisplayEmulator) -> None:
    clock = Clock()
    with make_display(emulator, clock=clock, reconnect_interval_s=10.0) as display:
        emulator.unplug()
        with pytest.raises(DisplayError):
            display.show(screen_for("IDLE"), timeout=WAIT)
        emulator.replug()
        # The connect in make_display was the last try, less than reconnect_interval_s ago.
        with pytest.raises(DisplayError) as caught:
            display.poll()
        assert caught.value.reason == "reconnect_wait"
        clock.offset += 10.0
        display.poll()
        assert display.healthy


def test_heartbeat_pings_when_due_and_repaints_after_a_brownout(emulator: DisplayEmulator) -> None:
    clock = Clock()
    with make_display(emulator, clock=clock, heartbeat_s=5.0) as display:
        display.show(screen_for("IDLE"), timeout=WAIT)
        pings = emulator.pings
        display.poll()
        assert emulator.pings == pings  # not due yet
        clock.offset += 5.0
        display.poll()
        assert emulator.pings == pings + 1
        emulator.reboot()  # controller restarts, port stays: the screen goes blank
        clock.offset += 5.0
        display.poll()
        assert emulator.current == screen_for("IDLE")
        assert emulator.screens.count(screen_for("IDLE")) == 2


def test_heartbeat_detects_a_hung_display(emulator: DisplayEmulator) -> None:
    clock = Clock()
    with make_display(emulator, clock=clock, heartbeat_s=5.0, ack_timeout_s=SHORT) as display:
        emulator.go_silent()
        clock.offset += 5.0
        with pytest.raises(DisplayError) as caught:
            display.poll()
        assert caught.value.reason == "link_dead"
        emulator.go_silent(False)
        display.poll()
        assert display.healthy


def test_concurrent_callers_share_the_link_safely(emulator: DisplayEmulator) -> None:
    states = ["IDLE", "SCANNING", "VERIFYING", "GRANTED", "DENIED"]
    errors: list[BaseException] = []
    with make_display(emulator) as display:
        def worker(state: str) -> None:
            try:
                for _ in range(5):
                    display.show(screen_for(state), timeout=WAIT)
                    display.poll()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(s,)) for s in states]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 5)
        assert errors == []
        assert len(emulator.screens) == 25
        assert display.link.stats.rx.errors == 0 and emulator.rx_errors == 0


def test_brightness_and_closed_display(emulator: DisplayEmulator) -> None:
    display = make_display(emulator)
    display.set_brightness(40, timeout=WAIT)
    assert display.link.ping().brightness == 40
    with pytest.raises(ValueError):
        display.set_brightness(300)
    display.close()
    display.close()
    with pytest.raises(DisplayError) as caught:
        display.show(screen_for("IDLE"))
    assert caught.value.reason == "closed"


def test_open_display_emulator_is_owned_and_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    display = open_display("emulator", ack_timeout_s=0.5)
    emulator = display.emulator
    assert emulator is not None and display.healthy
    port = Path(emulator.port)
    assert port.is_symlink()
    display.show(screen_for("GRANTED"), timeout=WAIT)
    assert emulator.wait_for(lambda s: s.state == "GRANTED", timeout=WAIT).colour == "green"
    display.close()
    assert not port.exists() and not port.parent.exists()
    assert capsys.readouterr().out == ""  # rendering is off unless asked for


def test_link_errors_on_a_closed_port() -> None:
    link = SerialLink("/nonexistent/tty", LinkConfig(**CONFIG))  # type: ignore[arg-type]
    with pytest.raises(LinkDead) as caught:
        link.open()
    assert caught.value.reason == "port_unavailable"
    with pytest.raises(LinkDead):
        link.request(MsgType.SHOW, b"")


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="ack_timeout_s"):
        LinkConfig(ack_timeout_s=0)
    with pytest.raises(ValueError):
        LinkConfig(max_retries=-1)
    with pytest.raises(ValueError):
        open_display("emulator", heartbeat_s=-1)


@pytest.mark.parametrize("reason, resent", [
    (NakReason.BAD_CRC, True), (NakReason.BAD_LENGTH, True), (NakReason.BUSY, True),
    (NakReason.UNKNOWN_TYPE, False), (NakReason.BAD_PAYLOAD, False),
])
def test_nak_reasons_decide_whether_to_resend(emulator: DisplayEmulator, reason: NakReason, resent: bool) -> None:
    with make_display(emulator) as display:
        emulator.script(nak_frames=1, nak_reason=reason)
        if resent:
            display.show(screen_for("IDLE"), timeout=WAIT)
            assert display.link.stats.retransmits == 1
            assert emulator.screens == [screen_for("IDLE")]
        else:
            with pytest.raises(DisplayError) as caught:
                display.show(screen_for("IDLE"), timeout=WAIT)
            assert caught.value.reason == "not_acknowledged" and reason.name in str(caught.value)
            assert display.link.stats.retransmits == 0 and display.link.stats.probes == 0



def test_heartbeat_repaints_after_the_display_fell_back_to_no_signal(tmp_path: Path) -> None:
    clock = Clock()
    with DisplayEmulator(link_path=str(tmp_path / "display"), host_timeout_s=0.1) as emulator:
        with make_display(emulator, clock=clock, heartbeat_s=5.0) as display:
            display.show(screen_for("IDLE"), timeout=WAIT)
            emulator.wait_for(lambda s: s.state == "NO_HOST", WAIT)  # the kiosk was quiet too long
            clock.offset += 5.0
            display.poll()
            assert emulator.current == screen_for("IDLE")


def test_sequence_numbers_skip_zero_when_wrapping(emulator: DisplayEmulator) -> None:
    with make_display(emulator) as display:
        seqs = [display.link.request(MsgType.BRIGHTNESS, b"\x80") for _ in range(300)]
        assert 0 not in seqs and set(seqs) == set(range(1, 256))
        assert all(b == a % 255 + 1 for a, b in zip(seqs, seqs[1:]))


def test_frozen_display_is_dead_and_its_late_backlog_does_not_confuse_the_host(emulator: DisplayEmulator) -> None:
    with make_display(emulator, ack_timeout_s=SHORT) as display:
        emulator.script(frozen=True)  # stops reading: requests pile up in the pty unanswered
        with pytest.raises(DisplayError) as caught:
            display.show(screen_for("GRANTED"))
        assert caught.value.reason == "link_dead"
        emulator.script(frozen=False)  # thaws and answers the whole backlog, far too late
        display.poll()
        display.show(screen_for("IDLE"), timeout=WAIT)
        assert display.healthy and emulator.current == screen_for("IDLE")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["nak", "corrupt", "drop"]), max_size=3), st.sampled_from(KIOSK_STATES))
def test_any_mix_of_faults_within_the_retry_budget_is_survived(
        emulator: DisplayEmulator, faults: list[str], state: str) -> None:
    with make_display(emulator, ack_timeout_s=SHORT, max_retries=6) as display:
        emulator.script(nak_frames=faults.count("nak"), corrupt_replies=faults.count("corrupt"),
                        drop_replies=faults.count("drop"))
        display.show(screen_for(state, "Pass expired"), timeout=WAIT)
        assert emulator.current == screen_for(state, "Pass expired")
        # A NAK reply can itself be corrupted or dropped, so faults may share one retransmit.
        nak, damaged = faults.count("nak"), faults.count("corrupt") + faults.count("drop")
        assert display.link.stats.retransmits >= max(nak, damaged)
        assert emulator.faults == FaultScript()  # every scripted fault was played
