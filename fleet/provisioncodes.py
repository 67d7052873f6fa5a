"""Create provisioning codes: a one-time enrolment token inside a QR signed by the fleet key."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.provisioncode import build_code

DEFAULT_TTL_MIN = 15.0
MAX_TTL_MIN = 24 * 60.0  # a code on a screen or a printout should not outlive a working day


@dataclass(frozen=True)
class CreatedCode:
    text: str  # the HGP1: text the QR carries
    code_id: str
    expires_at: datetime


def create_code(store: Any, key: Ed25519PrivateKey, fleet_url: str, ttl_min: float,
                now: datetime) -> CreatedCode:
    """Store a fresh one-time token expiring with the code, and sign the code that carries it."""
    if not 0 < ttl_min <= MAX_TTL_MIN:
        raise ValueError(f"a provisioning code lives more than 0 and at most {MAX_TTL_MIN:.0f} "
                         "minutes")
    expires_at = (now + timedelta(minutes=ttl_min)).replace(microsecond=0)
    token, code_id = secrets.token_urlsafe(24), secrets.token_urlsafe(9)
    store.add_token(token, expires_at)
    return CreatedCode(build_code(key, code_id, fleet_url, token, expires_at), code_id, expires_at)


def fleet_url_problem(url: str) -> str | None:
    """One line when `url` is not an http(s) URL with a host (it goes into every code)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.scheme in ("http", "https") else None
    except ValueError:
        host = None
    return None if host else f"{url!r} is not an http:// or https:// URL with a host"


def qr_svg(text: str) -> str:
    """The code as an inline SVG element (no XML declaration), for the dashboard page."""
    import segno

    return str(segno.make(text, error="m", micro=False).svg_inline(scale=4, border=4))
