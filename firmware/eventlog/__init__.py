"""healthgate: firmware/eventlog — the signed, hash-chained, durable event log and its outbox."""
from firmware.eventlog.log import EventLog, EventLogError, LogStats
from firmware.eventlog.outbox import Outbox
from firmware.eventlog.verify import VerifyReport

__all__ = ["EventLog", "EventLogError", "LogStats", "Outbox", "VerifyReport"]
