"""healthgate: firmware/eventlog — the signed, hash-chained, durable event log."""
from firmware.eventlog.log import EventLog, EventLogError, LogStats
from firmware.eventlog.verify import VerifyReport

__all__ = ["EventLog", "EventLogError", "LogStats", "VerifyReport"]
