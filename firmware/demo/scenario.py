"""The demo's cast: DCCs and status codes, held up with or without the holder's face in view."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials import TrustStore
from firmware.credentials.status import StatusTrust
from firmware.credentials.status.code import new_subject_pseudonym
from firmware.credentials.status.records import StatusIssuerKey, StatusRecord, StatusRecordCache
from firmware.demo.frames import background, frame_with_code
from firmware.demo.issuer import DemoSigner, issue_dcc, make_signer, vaccination_payload
from firmware.demo.issuers.status import issue_status_code, sign_status_record

STATUS_ISSUER = "healthgate-demo"
STATUS_KID = b"demo-status-1"
TEMPLATE_KEY_ID = "demo-site"


@dataclass(frozen=True)
class Presentation:
    """One person holding up one code, and what the kiosk must decide."""

    label: str
    text: str
    expect_granted: bool
    expect_reason_prefix: str | None  # the reason code must start with this (None: granted)
    face_in_view: bool = True


@dataclass
class Cast:
    """Everything the demo issues: credentials, trust, and the site template key."""

    signer: DemoSigner
    trust: TrustStore
    presentations: list[Presentation]
    template_key: bytes = field(repr=False, default=b"")


def demo_face() -> np.ndarray | None:
    """The demo's holder: NASA's public-domain astronaut portrait shipped with scikit-image
    (the `demo` extra); None when it is not installed (the demo then runs without faces)."""
    try:
        from skimage import data
    except ImportError:
        return None
    portrait = np.asarray(data.astronaut(), dtype=np.uint8)
    return np.ascontiguousarray(portrait[20:290, 110:345])  # head and shoulders, as at a kiosk


def build_cast(now: datetime, enrolled_template: np.ndarray | None) -> Cast:
    """The demo's credentials. With an enrolled template, face checks are part of the story."""
    signer = make_signer()
    trust = TrustStore.from_certificates([signer.certificate_der])
    trust.updated_at = now
    valid = issue_dcc(signer, vaccination_payload(), now - timedelta(days=2), now + timedelta(days=200))
    expired = issue_dcc(signer, vaccination_payload(), now - timedelta(days=400),
                        now - timedelta(days=35))
    forged = issue_dcc(signer, vaccination_payload(), now - timedelta(days=1),
                       now + timedelta(days=200), signing_key=ec.generate_private_key(ec.SECP256R1()))
    cast = Cast(signer, trust, [
        Presentation("valid vaccination certificate", valid, True, None),
        Presentation("expired certificate", expired, False, "DCC_EXPIRED"),
        Presentation("forged signature (right kid, wrong key)", forged, False, "DCC_SIGNATURE"),
        Presentation("damaged code (truncated)", valid[:-40], False, "DCC_"),
        Presentation("not a health credential (a web link)", "https://example.org/menu", False,
                     "UNKNOWN_FORMAT"),
    ])
    if enrolled_template is not None:
        second = issue_dcc(signer, vaccination_payload(), now - timedelta(days=1),
                           now + timedelta(days=90))
        cast.presentations.insert(1, Presentation("valid certificate, nobody in front of camera",
                                                  second, False, "NO_FACE", face_in_view=False))
    _add_status_codes(cast, now, enrolled_template)
    return cast


def _add_status_codes(cast: Cast, now: datetime, enrolled: np.ndarray | None) -> None:
    """Two status codes backed by cached signed records: green (with the enrolled face when
    faces are on) and red."""
    from firmware.vision.record_template import seal_template

    key = ec.generate_private_key(ec.SECP256R1())
    keys = {STATUS_KID: StatusIssuerKey(STATUS_ISSUER, key.public_key())}
    cache = StatusRecordCache(keys)  # in memory: the demo's "synced" records
    stamp = int(now.timestamp())
    green, red = new_subject_pseudonym(), new_subject_pseudonym()
    sealed = None
    if enrolled is not None:
        cast.template_key = os.urandom(32)
        sealed = seal_template(enrolled, cast.template_key, TEMPLATE_KEY_ID)
    records = [
        StatusRecord(STATUS_ISSUER, green, "green", stamp - 60, stamp + 86400,
                     face_key_id=TEMPLATE_KEY_ID if sealed else None, face_template=sealed),
        StatusRecord(STATUS_ISSUER, red, "red", stamp - 60, stamp + 86400),
    ]
    cache.apply_sync([sign_status_record(r, key, kid=STATUS_KID) for r in records], synced_at=now)
    cast.trust.status = StatusTrust(keys=keys, cache=cache)
    label = "status code, green record" + (", enrolled face matches" if enrolled is not None else "")
    cast.presentations.insert(-1, Presentation(label, issue_status_code(
        key, kid=STATUS_KID, issuer=STATUS_ISSUER, subject=green, issued_at=stamp - 30), True, None))
    cast.presentations.insert(-1, Presentation("status code, red record", issue_status_code(
        key, kid=STATUS_KID, issuer=STATUS_ISSUER, subject=red, issued_at=stamp - 30), False,
        "STATUS_RED"))


def build_frames(presentations: list[Presentation], face: np.ndarray | None, gap_frames: int,
                 code_frames: int, width: int = 960, height: int = 540) -> list[np.ndarray]:
    """Empty scene, then the code held up (beside the holder's face) for a while, in turn."""
    frames: list[np.ndarray] = []
    empty = background(width, height, seed=1)
    for index, item in enumerate(presentations):
        frames.extend([empty] * gap_frames)
        scene = frame_with_code(item.text, width, height, seed=index,
                                face=face if item.face_in_view else None)
        frames.extend([scene] * code_frames)
    frames.extend([empty] * gap_frames)
    return frames
