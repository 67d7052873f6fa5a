"""Act on a scanned provisioning code: check it, register with the fleet, fetch trust data.

Runs in a worker thread of the kiosk (firmware/kiosk/loop.py), never in the frame loop. Every
failure is an outcome with a reason code, never an exception; the code's one-time use is
recorded in the state folder so the same code is refused here even before the fleet says so.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.clock import Clock
from firmware.fsutil import write_atomic
from firmware.identity import IdentityError, load
from firmware.protocol import finite_json
from firmware.protocol.keys import public_key_from_b64
from firmware.setup.code import ProvisionCode, ProvisionCodeError, check_code
from firmware.setup.firstboot import clear_pending
from firmware.statefolder import StateFolder
from firmware.sync.trustsync import RegistrationError, TrustSync, register_device

log = logging.getLogger("healthgate.provisioner")

BUNDLE_FILE = "healthgate-bundle.zip"  # the name the kiosk looks for in fleet.bundle_dir
MAX_USED_CODES = 1000  # the ledger keeps the newest ones; codes live minutes, not years
REGISTER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProvisionOutcome:
    """What the display shows: a reason code when refused; `detail` is for the log only."""

    ok: bool
    reason: str | None
    detail: str = ""
    trust_updated: int = 0
    trust_wanted: int = 0


class CodeProvisioner:
    """`handle(text)` takes one scanned `HGP1:` text to a ProvisionOutcome."""

    def __init__(self, state_dir: Path, *, clock: Clock | None = None,
                 session: requests.Session | None = None,
                 timeout_s: float = REGISTER_TIMEOUT_S) -> None:
        """`clock` is the kiosk's own (the one credentials are checked by); by default one
        that remembers the state folder's `last_seen`, as the kiosk's does."""
        self.state_dir = Path(state_dir)
        self.clock = clock or Clock(StateFolder(self.state_dir).last_seen)
        self.session = session
        self.timeout_s = timeout_s

    def handle(self, text: str) -> ProvisionOutcome:
        try:
            return self._done(self._handle(text))
        except ProvisionCodeError as error:
            return ProvisionOutcome(False, error.code, error.detail)
        except Exception as error:  # fail safe: a bug refuses the code, never crashes the kiosk
            log.error("provisioning failed: %s", type(error).__name__)
            return ProvisionOutcome(False, "PROVISION_FAILED", type(error).__name__)

    def _handle(self, text: str) -> ProvisionOutcome:
        pinned = self._pinned_key()
        if pinned is None:
            raise ProvisionCodeError("PROVISION_NO_FLEET_KEY", "no fleet key pinned")
        code = check_code(text, pinned, self._trusted_now())
        if code.code_id in self._used_codes():
            raise ProvisionCodeError("PROVISION_CODE_USED", "used on this kiosk before")
        try:
            identity = load(self.state_dir)
        except IdentityError as error:
            raise ProvisionCodeError("PROVISION_NO_IDENTITY", str(error)) from None
        try:
            register_device(code.fleet_url, code.token, identity.device_id, identity.key,
                            session=self.session, timeout_s=self.timeout_s)
        except RegistrationError as error:
            raise ProvisionCodeError(_registration_reason(error), error.code) from None
        self._record_used(code)  # registered: the code is spent, whatever trust sync does
        sync = TrustSync(code.fleet_url, StateFolder(self.state_dir).trust_dir, [pinned], identity.device_id,
                         identity.key, session=self.session, timeout_s=self.timeout_s,
                         clock=self.clock.now)
        outcomes = sync.sync()
        updated = sum(1 for outcome in outcomes if outcome.status in ("updated", "not_modified"))
        if any(outcome.status == "error" for outcome in outcomes):
            return ProvisionOutcome(False, "PROVISION_TRUST_FAILED",
                                    ", ".join(f"{o.name}: {o.reason}" for o in outcomes
                                              if o.status == "error"),
                                    updated, len(outcomes))
        return ProvisionOutcome(True, None, f"registered {identity.device_id}", updated,
                                len(outcomes))

    def import_bundle(self, path: Path) -> ProvisionOutcome:
        """Install an offline bundle's trust data, then register if the fleet answers."""
        try:
            return self._done(self._import_bundle(Path(path)))
        except ProvisionCodeError as error:
            return ProvisionOutcome(False, error.code, error.detail)
        except Exception as error:  # fail safe, as for a scanned code
            log.error("bundle import failed: %s", type(error).__name__)
            return ProvisionOutcome(False, "PROVISION_FAILED", type(error).__name__)

    def import_from_folder(self, folder: Path) -> ProvisionOutcome | None:
        """The kiosk's USB hook: import `folder/BUNDLE_FILE` once; None when there is none (or
        this bundle was imported before: a stick left in must not refuse itself each time)."""
        path = Path(folder) / BUNDLE_FILE
        if not path.is_file():
            return None
        outcome = self.import_bundle(path)
        return None if outcome.reason == "PROVISION_CODE_USED" else outcome

    def _import_bundle(self, path: Path) -> ProvisionOutcome:
        from firmware.setup.bundle import check_bundle

        pinned = self._pinned_key()
        if pinned is None:
            raise ProvisionCodeError("PROVISION_NO_FLEET_KEY", "no fleet key pinned")
        bundle = check_bundle(path, pinned, self._trusted_now())  # verified, nothing written
        if bundle.code.code_id in self._used_codes():
            raise ProvisionCodeError("PROVISION_CODE_USED", "bundle used on this kiosk before")
        try:
            identity = load(self.state_dir)
        except IdentityError as error:
            raise ProvisionCodeError("PROVISION_NO_IDENTITY", str(error)) from None
        sync = TrustSync(bundle.code.fleet_url, StateFolder(self.state_dir).trust_dir, [pinned],
                         identity.device_id, identity.key, clock=self.clock.now)
        installed = 0
        for name, raw in bundle.envelopes.items():
            cached = sync.load(name)
            offered = finite_json.loads(raw)["version"]
            if cached is not None and cached["version"] >= offered:
                continue  # never roll trust data back; the newer copy stays
            write_atomic(StateFolder(self.state_dir).trust_dir / f"{name}.json", raw)
            installed += 1
        self._record_used(bundle.code)  # one use per kiosk, whether the fleet answers or not
        try:
            register_device(bundle.code.fleet_url, bundle.code.token, identity.device_id,
                            identity.key, session=self.session, timeout_s=self.timeout_s)
        except RegistrationError as error:
            return ProvisionOutcome(True, _registration_reason(error), error.code, installed,
                                    len(bundle.envelopes))
        return ProvisionOutcome(True, None, f"registered {identity.device_id}", installed,
                                len(bundle.envelopes))

    def _done(self, outcome: ProvisionOutcome) -> ProvisionOutcome:
        """A success ends first-boot setup, whichever way it came (firmware/setup/firstboot.py)."""
        if outcome.ok:
            clear_pending(StateFolder(self.state_dir))
        return outcome

    def _trusted_now(self) -> datetime:
        """The time to check a code's expiry by, refused while the clock cannot be trusted: a
        kiosk reset to 1970 (or set back behind the last time it saw) would take an expired
        code for a valid one."""
        problem = self.clock.trust_problem()
        if problem is not None:
            raise ProvisionCodeError("PROVISION_CLOCK_UNTRUSTED", problem)
        return self.clock.now()

    def _pinned_key(self) -> Ed25519PublicKey | None:
        try:
            return public_key_from_b64(StateFolder(self.state_dir).fleet_key.read_text().strip())
        except (OSError, ValueError):
            return None

    def _used_codes(self) -> list[str]:
        try:
            used = json.loads((self.state_dir / StateFolder.USED_PROVISION_CODES).read_text())
        except (OSError, ValueError):
            return []
        return [item for item in used if isinstance(item, str)] if isinstance(used, list) else []

    def _record_used(self, code: ProvisionCode) -> None:
        used = (self._used_codes() + [code.code_id])[-MAX_USED_CODES:]
        write_atomic(self.state_dir / StateFolder.USED_PROVISION_CODES, json.dumps(used).encode())


def _registration_reason(error: RegistrationError) -> str:
    """The fleet's answer as a reason the display can say in words."""
    if error.code == "NETWORK_ERROR":
        return "PROVISION_FLEET_UNREACHABLE"
    if error.code == "TOKEN_INVALID":  # unknown, used, revoked or expired at the fleet
        return "PROVISION_TOKEN_REFUSED"
    return "PROVISION_REGISTRATION_REFUSED"
