"""First-boot setup: when a kiosk starts waiting for a provisioning code, and when it is done.

A kiosk is in setup while its state folder holds `setup-pending`. That file is written when the
kiosk creates its own identity at first boot (the image carries the pinned fleet key, never a
device key) and by `healthgate-provision init --fleet-key`; a successful provisioning (a code,
or a bundle) removes it, and so does `healthgate-provision register`. A kiosk provisioned
before setup mode existed has no such file and starts as it always did. See
docs/provisioning.md ("First boot") for why the fleet key must be pinned beforehand.
"""
from __future__ import annotations

import logging

from firmware.credentials.reasons import message_for
from firmware.fsutil import write_atomic
from firmware.identity import IdentityError, load_or_create
from firmware.statefolder import StateFolder

log = logging.getLogger(__name__)

PROMPT = "Show setup code"  # the display, line 2, while the kiosk waits (fits 20 columns)
RESTART = "Done - restart kiosk"  # the pinned key changed while it ran: a restart loads it


def mark_pending(folder: StateFolder) -> None:
    """The kiosk starts in setup until a provisioning succeeds."""
    write_atomic(folder.setup_pending, b"waiting for a provisioning code or bundle\n")


def clear_pending(folder: StateFolder) -> None:
    folder.setup_pending.unlink(missing_ok=True)


def prepare(folder: StateFolder) -> bool:
    """At start: a state folder with a pinned fleet key and no identity is a first boot, so
    create the device identity (its id derived from the key: `hg-...`) and mark setup pending.
    True when the kiosk is to start in setup. A folder that cannot take the identity is left
    to the start-up checks, which say what is wrong."""
    if not folder.has_identity() and folder.pinned_fleet_key() is not None:
        try:
            identity = load_or_create(folder.root)
            mark_pending(folder)
        except (IdentityError, OSError) as error:
            log.error("first boot: cannot create the device identity in %s: %s", folder.root,
                      error)
            return False
        log.info("first boot: created device identity %s; waiting for a provisioning code",
                 identity.device_id)
    return folder.setup_pending.is_file()


class FirstBootSetup:
    """What the kiosk loop asks while in first-boot setup (firmware/kiosk/loop.py)."""

    def __init__(self, folder: StateFolder) -> None:
        self.folder = folder
        self._key_at_start = folder.pinned_fleet_key()  # what trust data is checked against

    def prompt(self) -> str:
        """Line 2 of the waiting screen: show a code, or (no key pinned) what is missing."""
        if self.folder.pinned_fleet_key() is None:
            return message_for("PROVISION_NO_FLEET_KEY")
        return PROMPT

    def finish(self) -> str | None:
        """Setup succeeded (the provisioner removed `setup-pending`): None when the kiosk can
        go on into normal operation now; else what the display says instead (the fleet key
        pinned now is not the one its trust data is checked against: a restart loads it)."""
        clear_pending(self.folder)
        if self.folder.pinned_fleet_key() != self._key_at_start:
            return RESTART
        return None
