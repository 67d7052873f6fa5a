"""End to end: QR frames in -> pty display bytes and signed events on the fleet server out."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.demo.run import run_demo
from firmware.protocol.event_codec import GENESIS_HASH, check_event, check_link
from tests.test_privacy import IMAGE_MAGIC, no_image_writes  # noqa: F401 - fixture

# What the demo's fictional holder carries; none of it may leave the verifier.
PERSONAL = [b"Muster", b"MUSTER", b"1990-01-01", b"URN:UVCI"]


def test_demo_path_end_to_end(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                              no_image_writes: list[str]) -> None:
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    result = run_demo(tmp_path, out=out)
    assert result.ok, out.getvalue()
    assert "face checks on" in out.getvalue()  # the dev install has the demo portrait
    assert any(not p.face_in_view for p in result.presentations)  # NO_FACE is exercised
    # the green status code was granted by a real 1:1 match against its record's sealed template
    matched = [d for p, d in zip(result.presentations, result.decisions)
               if p.text.startswith("HG1:") and d.granted]
    assert len(matched) == 1 and matched[0].face is not None
    assert matched[0].face["similarity"] is not None and matched[0].face["similarity"] >= 0.9

    # The kiosk decided exactly as the presentations require.
    assert [d.granted for d in result.decisions] == [p.expect_granted for p in result.presentations]

    # The display (emulator decoding real bytes from the pty) showed each decision, in order.
    shown = [s.state for s in result.screens if s.state in ("GRANTED", "DENIED")]
    assert shown == ["GRANTED" if p.expect_granted else "DENIED" for p in result.presentations]
    assert result.screens[-1].state == "IDLE"
    denied_lines = [s.line2 for s in result.screens if s.state == "DENIED"]
    assert "Code not recognised" in denied_lines

    # The server holds every decision exactly once, each signed by the device and chained.
    events = sorted(result.server_events, key=lambda e: e.seq)
    decisions = [e for e in events if e.kind == "decision"]
    assert len(decisions) == len(result.presentations)
    assert [e.body["decision"] == "granted" for e in decisions] == \
        [p.expect_granted for p in result.presentations]
    assert len({e.seq for e in events}) == len(events)
    key = Ed25519PublicKey.from_public_bytes(_public_key(tmp_path))
    assert events[0].prev_hash == GENESIS_HASH
    for event in events:
        assert check_event(event, key) is None
    for previous, event in zip(events, events[1:]):
        assert check_link(previous, event) is None

    # Privacy: no name, birth date or certificate identifier anywhere on disk, in any log
    # record or on stdout; no image (or face crop) written anywhere, by any call.
    assert no_image_writes == []
    assert len(caplog.records) > 5
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not data.startswith(IMAGE_MAGIC), f"image-like file written: {path}"
            for needle in PERSONAL:
                assert needle not in data, f"{needle!r} found in {path}"
    for needle in PERSONAL:
        assert needle.decode() not in out.getvalue() + caplog.text


def _public_key(workdir: Path) -> bytes:
    from firmware.identity import load

    return load(workdir / "state").public_key_raw
