"""Privacy: events refuse personal fields, verdicts hide them; the image-write guard used by the
end-to-end test (tests/test_end_to_end.py checks logs, files and stdout of the whole path)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# The demo holder's personal data, as the demo issuer puts it into every credential.
PERSONAL = ("Muster", "MUSTER", "1990-01-01", "URN:UVCI")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF", b"P6\n", b"II*\x00", b"MM\x00*")


@pytest.fixture
def no_image_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every image-writing call we know of fail loudly, and record attempts."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def writer(*args: Any, **kwargs: Any) -> None:
            attempts.append(name)
            raise AssertionError(f"{name} called: images must never be written")
        return writer

    from PIL import Image
    monkeypatch.setattr(Image.Image, "save", refuse("PIL.Image.save"))
    try:
        import cv2
        monkeypatch.setattr(cv2, "imwrite", refuse("cv2.imwrite"))
    except ImportError:
        pass
    return attempts


def test_events_refuse_personal_fields(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware.eventlog import EventLog, EventLogError

    with EventLog.open(tmp_path / "e.db", Ed25519PrivateKey.generate(), "kiosk-1") as log:
        for body in ({"nam": {"fn": "X"}}, {"dob": "1990-01-01"}, {"ci": "URN:UVCI:1"},
                     {"face": {"name": "X"}}):
            with pytest.raises(EventLogError):
                log.append("decision", body)
        log.append("decision", {"decision": "granted", "pseudonym": "ab" * 16})


def test_verdict_repr_hides_payload_and_identifier() -> None:
    from firmware.credentials import Verdict

    verdict = Verdict(True, "dcc", None, {"nam": {"fn": "Muster"}, "dob": "1990-01-01"},
                      {"signature": True}, credential_id="URN:UVCI:01:XX:SECRET")
    shown = repr(verdict) + str(verdict)
    assert "Muster" not in shown and "1990" not in shown and "SECRET" not in shown


def test_verdict_extras_name_key_and_issuer_only_and_decisions_do_not_carry_them(
        tmp_path: Path) -> None:
    """The DCC kid and issuer country reach Verdict.extras for the technician tool; nothing
    personal does, and the kiosk's decision (what the event log records) carries no extras."""
    import dataclasses
    import json

    from firmware.credentials import verify, verify_document
    from firmware.kiosk.policy import Policy, decide
    from tests.container_helpers import AT, make_credentials, smart_health_card_file

    creds = make_credentials(tmp_path)
    store = creds.store()
    dcc = verify(creds.hc1, store, AT)
    [shc] = verify_document(smart_health_card_file([creds.jws(rid="cmlk")]), store, AT).verdicts
    assert dcc.valid and shc.valid
    assert dcc.extras["kid"] == creds.dcc_kid_hex and dcc.extras["issuer"] == "XA"
    allowed = {"details", "kid", "issuer", "issuer_name", "container", "note"}
    personal = ("Muster", "MUSTER", "Erika", "1980-01-02", "URN:UVCI", "Example", "Pat",
                "1970-01-01", "cmlk")
    for verdict in (dcc, shc):
        assert set(verdict.extras) <= allowed, verdict.extras
        shown = json.dumps(verdict.extras)
        assert not [p for p in personal if p in shown], shown
        codes_only = Policy(face_required=False)
        decision = json.dumps(dataclasses.asdict(decide(verdict, None, codes_only)))
        assert str(verdict.extras["kid"]) not in decision and "issuer" not in decision
