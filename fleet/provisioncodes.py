"""Create provisioning codes (a one-time enrolment token in a QR signed by the fleet key) and
offline bundles (such a code with the current trust envelopes, in a signed zip)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.setup.code import build_code
from fleet.tokens import new_token

if TYPE_CHECKING:
    from fleet.storage import Store

DEFAULT_TTL_MIN = 15.0
MAX_TTL_MIN = 24 * 60.0  # a code on a screen or a printout should not outlive a working day
DEFAULT_BUNDLE_TTL_MIN = 72 * 60.0
MAX_BUNDLE_TTL_MIN = 30 * 24 * 60.0  # a USB stick travels to a site without network


@dataclass(frozen=True)
class CreatedCode:
    text: str  # the HGP1: text the QR carries
    code_id: str
    expires_at: datetime


def create_code(store: Store, key: Ed25519PrivateKey, fleet_url: str, ttl_min: float,
                now: datetime, max_ttl_min: float = MAX_TTL_MIN) -> CreatedCode:
    """Store a fresh one-time token expiring with the code, and sign the code that carries it."""
    if not 0 < ttl_min <= max_ttl_min:
        raise ValueError(f"a provisioning code lives more than 0 and at most {max_ttl_min:.0f} "
                         "minutes")
    expires_at = (now + timedelta(minutes=ttl_min)).replace(microsecond=0)
    token, code_id = new_token(), new_token(9)
    store.add_token(token, expires_at)
    return CreatedCode(build_code(key, code_id, fleet_url, token, expires_at), code_id, expires_at)


def create_bundle(store: Store, key: Ed25519PrivateKey, fleet_url: str, ttl_min: float,
                  now: datetime) -> tuple[bytes, CreatedCode]:
    """An offline bundle: a new code and every published trust envelope, signed together."""
    from firmware.setup.bundle import build_bundle

    created = create_code(store, key, fleet_url, ttl_min, now, MAX_BUNDLE_TTL_MIN)
    envelopes = {item.name: item.envelope for item in store.trust_items()}
    return build_bundle(key, created.text, envelopes), created


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
