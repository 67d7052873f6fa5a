"""Record a provisioning outcome in the kiosk's signed event log from outside the kiosk loop."""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.eventlog.common import EventLogError
from firmware.eventlog.restart import open_or_restart
from firmware.identity import IdentityError, load
from firmware.statefolder import StateFolder

if TYPE_CHECKING:  # for the annotation only: the provisioner pulls in requests and the trust sync
    from firmware.setup.provisioner import ProvisionOutcome

log = logging.getLogger(__name__)

KIND = "provisioning"  # the kind the kiosk loop logs for a code or a USB bundle


def provisioning_body(outcome: ProvisionOutcome) -> dict[str, bool | str | None]:
    """The event's body: whether it worked and the reason code; never the token, the fleet URL
    or anything about a person (docs/eventlog.md)."""
    return {"ok": bool(getattr(outcome, "ok", False)),
            "reason": getattr(outcome, "reason", None)}


def record_provisioning(state_dir: Path, outcome: ProvisionOutcome,
                        clock: Callable[[], datetime]) -> str | None:
    """Append a `provisioning` event to the state folder's event log (created as the kiosk
    creates it when there is none yet), so the fleet learns of an offline import at the next
    upload. None when it is recorded, else one line saying why not."""
    folder = StateFolder(Path(state_dir))
    try:
        identity = load(folder.root)
        events = open_or_restart(folder.events_db, identity.key, identity.device_id, clock)
    except (IdentityError, EventLogError, OSError, sqlite3.Error) as error:
        return f"the event log could not be opened ({type(error).__name__}: {error})"
    try:
        events.append(KIND, provisioning_body(outcome))
    except (EventLogError, OSError, sqlite3.Error) as error:
        return f"the event log refused the event ({type(error).__name__}: {error})"
    finally:
        events.close()
    return None
