"""healthgate: firmware/eventlog — the signed, hash-chained, durable event log."""
from firmware.eventlog.log import EventLog, EventLogError, LogStats
from firmware.eventlog.verify import VerifyReport
from firmware.protocol.event_codec import Event

__all__ = ["Event", "EventLog", "EventLogError", "LogStats", "VerifyReport"]
