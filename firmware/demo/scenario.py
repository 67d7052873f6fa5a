"""The demo's cast: a handful of DCCs (valid, expired, forged, damaged, not a DCC) as frames."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials import TrustStore
from firmware.demo.frames import background, frame_with_code
from firmware.demo.issuer import DemoSigner, issue_dcc, make_signer, vaccination_payload


@dataclass(frozen=True)
class Presentation:
    """One person holding up one code, and what the kiosk must decide."""

    label: str
    text: str
    expect_granted: bool
    expect_reason_prefix: str | None  # the reason code must start with this (None: granted)


def build_presentations(signer: DemoSigner, now: datetime) -> list[Presentation]:
    valid = issue_dcc(signer, vaccination_payload(), now - timedelta(days=2), now + timedelta(days=200))
    expired = issue_dcc(signer, vaccination_payload(), now - timedelta(days=400),
                        now - timedelta(days=35))
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = issue_dcc(signer, vaccination_payload(), now - timedelta(days=1),
                       now + timedelta(days=200), signing_key=forger)
    damaged = valid[:-40]  # a torn sticker: the base45 text ends mid-stream
    second = issue_dcc(signer, vaccination_payload(), now - timedelta(days=1), now + timedelta(days=90))
    return [
        Presentation("valid vaccination certificate", valid, True, None),
        Presentation("expired certificate", expired, False, "DCC_EXPIRED"),
        Presentation("forged signature (right kid, wrong key)", forged, False, "DCC_SIGNATURE"),
        Presentation("damaged code (truncated)", damaged, False, "DCC_"),
        Presentation("not a health credential (a web link)", "https://example.org/menu", False,
                     "UNKNOWN_FORMAT"),
        Presentation("second valid certificate", second, True, None),
    ]


def build_frames(presentations: list[Presentation], gap_frames: int, code_frames: int,
                 width: int = 640, height: int = 480) -> list[np.ndarray]:
    """Empty scene, then the code held up for a while, for each presentation in turn."""
    frames: list[np.ndarray] = []
    empty = background(width, height, seed=1)
    for index, item in enumerate(presentations):
        frames.extend([empty] * gap_frames)
        frames.extend([frame_with_code(item.text, width, height, seed=index)] * code_frames)
    frames.extend([empty] * gap_frames)
    return frames


def demo_trust(signer: DemoSigner, now: datetime) -> TrustStore:
    store = TrustStore.from_certificates([signer.certificate_der])
    store.updated_at = now
    return store


__all__ = ["Presentation", "build_frames", "build_presentations", "demo_trust", "make_signer"]
