"""Keyed, rotating pseudonyms: the only trace of a credential that a decision log may carry."""
from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    """HMAC-SHA256 of a credential identifier under a key that changes every `rotation_s`.

    The epoch key is derived from a device secret that never leaves the kiosk, so the server
    can count repeats within one epoch (sharing, abuse) but cannot link across epochs or
    recover the identifier.
    """

    def __init__(self, device_secret: bytes, rotation_s: float) -> None:
        if len(device_secret) < 16:
            raise ValueError("device secret must be at least 16 bytes")
        self._secret = device_secret
        self._rotation_s = rotation_s

    def epoch(self, unix_time: float) -> int:
        return int(unix_time // self._rotation_s)

    def pseudonym(self, identifier: str, unix_time: float) -> str:
        epoch = self.epoch(unix_time)
        key = hmac.new(self._secret, f"pseudonym-epoch:{epoch}".encode(), hashlib.sha256).digest()
        return hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()[:32]
