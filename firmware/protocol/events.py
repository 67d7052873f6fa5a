"""The event schema: what an event may hold, decided alike for the kiosk log and the fleet ingest.

One decision, two callers: the kiosk's append path (`firmware/eventlog/guard.py`) and the fleet's
ingest (`fleet/ingest.py`) both call `check_body` (and `check_time` for the event's time), so
an event one side accepts the other accepts, and one side refuses the other refuses, with the
same reason (`tests/test_event_schema.py` runs one table and a property test against both).

Rules, in the order they are checked (the first failing rule is the reason):
1. the kind is one of `KINDS` (`EVENT_UNKNOWN_KIND`);
2. the body is a JSON object of JSON values only, nested at most `MAX_BODY_DEPTH` deep
   (`EVENT_TOO_DEEP`), with finite numbers only (`EVENT_NOT_FINITE`: NaN, +/-Infinity and
   literals such as `1e400` that overflow a double are refused while parsing, see `loads`),
   and no personal data at any depth (`EVENT_PERSONAL_DATA`: names, birth dates, credential
   identifiers, raw credentials);
3. each field the kind declares is present when required and of its declared type and range
   (`EVENT_BAD_FIELD`); fields a kind does not declare are allowed (a newer kiosk may add one
   before the fleet knows it), still bounded by rules 2 and 4;
4. the canonical JSON of the body is at most `MAX_EVENT_BODY_BYTES` bytes (`EVENT_TOO_LARGE`);
5. the event's time is RFC 3339 UTC with milliseconds, within `MIN_EVENT_TIME` ..
   `MAX_EVENT_TIME` (`EVENT_BAD_TIME`).
Messages name where the problem is, never the offending value (it may be personal data).
"""
from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from firmware.protocol.decoded import Decoded

# -- bounds -----------------------------------------------------------------------------------
# Bytes of the body's canonical JSON (UTF-8). The largest body the kiosk writes is a `fault`:
# a part name and a problem text cut to FAULT_PROBLEM_MAX_CHARS characters, at most ~1.3 KB
# even if every character needed a six-byte \u escape; a full `decision` (reason, format,
# pseudonym, a dozen checks, the face scores) is ~0.5 KB. 8 KiB keeps six times the largest
# for fields added later, and bounds a 1000-event batch to ~9 MB of bodies before the request
# limit even applies. It was already the kiosk's bound (in characters); the fleet had none.
MAX_EVENT_BODY_BYTES = 8 * 1024
MAX_BODY_DEPTH = 8  # containers below the body object; the kiosk's bodies use 2
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")  # also keeps kinds short and printable
FAULT_PROBLEM_MAX_CHARS = 200  # the kiosk cuts the problem text of a fault to this
# Event times: RFC 3339 UTC with milliseconds, as firmware.protocol.timestamps.rfc3339 writes
# them. A board without a real-time clock may log from the epoch until its clock is set, so
# the epoch is allowed; nothing sane lies in 2200 or later.
TIME_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
MIN_EVENT_TIME = "1970-01-01T00:00:00.000Z"  # inclusive
MAX_EVENT_TIME = "2200-01-01T00:00:00.000Z"  # exclusive

# -- privacy ----------------------------------------------------------------------------------
# Keys are compared after lower-casing and dropping "_", "-" and spaces, so "credential_id",
# "credentialId" and "Credential-ID" all match. These are the personal fields of the credential
# formats we read (DCC nam/fn/gn/fnt/gnt/dob, ci/uvci; SHC name/birthDate; NZCP givenName,
# familyName, dob; JWT/CWT jti) and their plain-English spellings.
FORBIDDEN_KEYS = frozenset({
    "nam", "name", "fn", "gn", "fnt", "gnt", "givenname", "familyname", "surname", "forename",
    "dob", "birth", "birthdate", "dateofbirth",
    "ci", "uvci", "credentialid", "certificateid", "jti", "cti",
})
# Any key containing these fragments is refused too ("first_name", "holder_birth_year").
FORBIDDEN_FRAGMENTS = ("name", "birth")
# String values that are, or carry, a raw credential or its identifier.
FORBIDDEN_VALUE = re.compile(r"(URN:UVCI:|^HC1:|^shc:/|^NZCP:/)", re.IGNORECASE)

# -- reasons ----------------------------------------------------------------------------------
UNKNOWN_KIND = "EVENT_UNKNOWN_KIND"
TOO_DEEP = "EVENT_TOO_DEEP"
NOT_FINITE = "EVENT_NOT_FINITE"
PERSONAL_DATA = "EVENT_PERSONAL_DATA"
BAD_FIELD = "EVENT_BAD_FIELD"
TOO_LARGE = "EVENT_TOO_LARGE"
BAD_TIME = "EVENT_BAD_TIME"
REASONS = (UNKNOWN_KIND, TOO_DEEP, NOT_FINITE, PERSONAL_DATA, BAD_FIELD, TOO_LARGE, BAD_TIME)


class EventRejected(ValueError):
    """The event may not be logged or stored; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- canonical JSON ---------------------------------------------------------------------------
# json.dumps with options builds a new encoder per call; one shared encoder gives the same bytes
# for less work (encoders hold no state between calls, so threads may share it). allow_nan=False:
# NaN and Infinity are not JSON, and nothing that carries them may be hashed or signed.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)


def canonical_json(value: Decoded) -> bytes:
    """Deterministic JSON bytes: sorted keys, no spaces, UTF-8. Both ends hash exactly these.
    Raises ValueError for a non-finite number."""
    return _CANONICAL.encode(value).encode()


# -- parsing ----------------------------------------------------------------------------------
class NonFinite:
    """Where a received event body held NaN, +/-Infinity or a literal that overflows a double
    (`1e400`): the parser puts this marker in place of the number, so no non-finite float ever
    exists in the parsed data and the event is refused with its own reason (`check_body`)."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return f"NonFinite({self.literal!r})"


def _refuse_constant(literal: str) -> NoReturn:
    raise EventRejected(NOT_FINITE, f"{literal} is not a JSON number")


def _refuse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # "1e400" is valid JSON text, but no double can hold it
        raise EventRejected(NOT_FINITE, "number literal out of range of a double")
    return value


def _mark_float(literal: str) -> float | NonFinite:
    value = float(literal)
    return value if math.isfinite(value) else NonFinite(literal)


def loads(text: str | bytes) -> Decoded:
    """Parse JSON, refusing NaN, Infinity, -Infinity and overflowing literals while parsing
    (EventRejected NOT_FINITE); other bad JSON raises ValueError as json.loads does."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_refuse_float)


def loads_batch(text: str | bytes) -> Decoded:
    """Parse an upload `{"events": [...]}`: a non-finite number inside an event's body becomes
    a NonFinite marker, so that one event is refused (and recorded) rather than the batch;
    anywhere else it refuses the whole text (ValueError), as malformed JSON."""
    payload = json.loads(text, parse_constant=NonFinite, parse_float=_mark_float)
    outside = payload
    if isinstance(payload, dict) and isinstance(payload.get("events"), list):
        outside = {**payload, "events": [
            {**item, "body": None} if isinstance(item, dict) else item
            for item in payload["events"]]}
    if has_non_finite(outside):
        raise ValueError("NaN or Infinity outside an event body")
    return payload


def has_non_finite(value: object) -> bool:
    """True when a NonFinite marker or a non-finite float is anywhere inside `value`, at any
    depth (iterative: a body nested as deep as the JSON parser allows cannot exhaust the
    stack here)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, NonFinite) or (isinstance(item, float)
                                             and not math.isfinite(item)):
            return True
    return False


def _marker_as_null(value: object) -> None:
    if isinstance(value, NonFinite):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON")


# Checks that parsed wire data can be stored as text (lone surrogates cannot); markers count as
# null here because the event holding one is refused by the schema anyway.
_ENCODABLE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False, default=_marker_as_null)


def check_encodable(value: Decoded) -> None:
    """Raise UnicodeError (or ValueError/RecursionError) for parsed wire data that has no
    canonical UTF-8 encoding."""
    _ENCODABLE.encode(value).encode()


# -- the kinds and their fields ---------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One declared body field: its JSON types (None for null), whether it must be present,
    and for strings a length bound and optionally the allowed values."""

    types: tuple[type | None, ...]
    required: bool = False
    max_chars: int = 64
    choices: frozenset[str] | None = None
    int_range: tuple[int, int] | None = None  # inclusive bounds of an integer
    # the non-null, non-bool types, for isinstance (worked out once: this runs per event)
    _plain: tuple[type, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plain", tuple(
            t for t in self.types if isinstance(t, type) and t is not bool))

    def problem(self, value: object) -> str | None:
        if value is None:
            return None if None in self.types else "may not be null"
        if isinstance(value, bool):  # a bool is an int to Python, never to the schema
            return None if bool in self.types else "must not be a boolean"
        if not isinstance(value, self._plain):
            return "has the wrong type"
        if isinstance(value, str):
            if len(value) > self.max_chars:
                return f"longer than {self.max_chars} characters"
            if self.choices is not None and value not in self.choices:
                return f"must be one of {sorted(self.choices)}"
        if isinstance(value, int) and self.int_range is not None \
                and not self.int_range[0] <= value <= self.int_range[1]:
            return f"outside {self.int_range[0]}..{self.int_range[1]}"
        return None


# Sequence numbers are JSON-safe integers (the fleet stores seq < 2**53); a restarted log
# numbers from the time in milliseconds (firmware/eventlog/restart.py), far inside that.
MAX_SEQ = 2**53 - 1
REASON_CODE = Field((str, None), max_chars=64)  # stable reason codes, e.g. DCC_EXPIRED
PART = Field((str,), required=True, max_chars=32)  # camera, display, eventlog, ...

# Every kind the kiosk writes, with the body fields it writes (firmware/kiosk/loop.py,
# firmware/eventlog/restart.py). A new kind needs an entry here, shipped to the fleet first.
KINDS: dict[str, dict[str, Field]] = {
    "boot": {},
    "decision": {
        "decision": Field((str,), required=True, choices=frozenset({"granted", "denied"})),
        "reason": REASON_CODE,
        "format": Field((str, None), max_chars=32),  # dcc, shc, nzcp, status, face_pass, ...
        "pseudonym": Field((str, None), max_chars=128),  # keyed, rotating; hex
        "checks": Field((dict, None)),  # each stage's outcome: true, false or null
        "face": Field((dict, None)),  # FaceOutcome.as_event(): scores and codes only
    },
    "fault": {"part": PART, "problem": Field((str,), max_chars=FAULT_PROBLEM_MAX_CHARS)},
    "recovered": {"part": PART},
    # The kiosk could not log an event (refused for good): which kind, and why.
    "event_refused": {"kind": Field((str,), required=True, max_chars=128),
                      "reason": Field((str,), required=True)},
    # Trust data the kiosk loaded with skipped parts (docs/credentials.md "Bad trust data"):
    # how many problems, and the first few (about trust files: issuers and keys, never people).
    "trust_problems": {"count": Field((int,), required=True, int_range=(1, MAX_SEQ)),
                       "problems": Field((list,), required=True)},
    # A provisioning code acted on in maintenance mode (firmware/setup/provisioner.py): the outcome
    # and its reason code only, never the code's token or the fleet URL.
    "provisioning": {"ok": Field((bool,), required=True), "reason": REASON_CODE},
    # First event of a new chain after the kiosk lost its log (firmware/eventlog/restart.py).
    "log_restarted": {"reason": Field((str,), required=True),
                      "previous_start": Field((int, None), required=True,
                                              int_range=(0, MAX_SEQ))},
}


# -- checks -----------------------------------------------------------------------------------
def check_kind(kind: object) -> str:
    """The kind itself when it is one of KINDS (each of which matches KIND_PATTERN)."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise EventRejected(UNKNOWN_KIND, f"event kind must be one of {sorted(KINDS)}")
    return kind


_DROP = str.maketrans("", "", " \t\n_-")


@functools.lru_cache(maxsize=1024)  # bodies reuse a handful of keys; this runs per event
def forbidden_key(key: str) -> bool:
    normal = key.translate(_DROP).lower()
    return normal in FORBIDDEN_KEYS or any(part in normal for part in FORBIDDEN_FRAGMENTS)


def is_plainly_clean(body: object, depth: int = 0) -> bool:
    """True when check_values() would surely accept `body`: the fast path of every append.

    It applies the same rules without building key paths for messages, and answers False (let
    check_values decide, and word the refusal) whenever it is unsure: a key that is not exactly
    a str, a value whose type is not exactly a JSON type (subclasses, tuples), anything refused.
    So it can only ever send more bodies through the careful check, never fewer.
    """
    if depth > MAX_BODY_DEPTH:
        return False
    values: Collection[object]
    if type(body) is dict:
        for key in body:
            if type(key) is not str or forbidden_key(key):
                return False
        values = body.values()
    elif type(body) is list:
        values = body
    else:
        return _plain_scalar(body)
    if not values:
        return True
    if depth + 1 > MAX_BODY_DEPTH:  # check_values refuses any value below the deepest level
        return False
    for value in values:
        kind = type(value)
        if kind is dict or kind is list:
            if not is_plainly_clean(value, depth + 1):
                return False
        elif not _plain_scalar(value):
            return False
    return True


def _plain_scalar(value: object) -> bool:
    if type(value) is str:
        return FORBIDDEN_VALUE.search(value) is None
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int or type(value) is bool or value is None


def check_values(body: object, path: str = "body", depth: int = 0) -> None:
    """The careful walk: raise EventRejected for nesting past MAX_BODY_DEPTH, a non-finite
    number, a forbidden key or value, or a value JSON cannot carry exactly."""
    if depth > MAX_BODY_DEPTH:
        raise EventRejected(TOO_DEEP, f"{path}: nested deeper than {MAX_BODY_DEPTH}")
    if isinstance(body, dict):
        for key, value in body.items():
            if not isinstance(key, str):
                raise EventRejected(BAD_FIELD, f"{path}: keys must be strings")
            if forbidden_key(key):
                raise EventRejected(PERSONAL_DATA,
                                    f"{path}.{key}: personal data may not be logged")
            check_values(value, f"{path}.{key}", depth + 1)
    elif isinstance(body, (list, tuple)):
        for index, value in enumerate(body):
            check_values(value, f"{path}[{index}]", depth + 1)
    elif isinstance(body, str):
        if FORBIDDEN_VALUE.search(body):
            raise EventRejected(PERSONAL_DATA,
                                f"{path}: looks like a raw credential or its identifier")
    elif isinstance(body, NonFinite) or (isinstance(body, float) and not math.isfinite(body)):
        raise EventRejected(NOT_FINITE, f"{path}: not a finite number (NaN or Infinity)")
    elif body is not None and not isinstance(body, (bool, int, float)):
        raise EventRejected(BAD_FIELD, f"{path}: {type(body).__name__} is not JSON")


def check_fields(kind: str, body: dict[str, Decoded]) -> None:
    """The kind's declared fields: present when required, of the declared type and range."""
    for name, declared in KINDS[kind].items():
        if name not in body:
            if declared.required:
                raise EventRejected(BAD_FIELD, f"body.{name}: required for {kind}")
            continue
        problem = declared.problem(body[name])
        if problem is not None:
            raise EventRejected(BAD_FIELD, f"body.{name}: {problem}")


def check_body(kind: object, body: object) -> str:
    """Decide whether an event of `kind` may carry `body`; returns the body's canonical JSON
    text, or raises EventRejected with the reason."""
    known = check_kind(kind)
    if not isinstance(body, dict):
        raise EventRejected(BAD_FIELD, "body must be a JSON object")
    if not is_plainly_clean(body):
        check_values(body)  # the careful walk: refuses naming the key path, or accepts
    check_fields(known, body)
    text = _CANONICAL.encode(body)
    try:
        size = len(text.encode())
    except UnicodeError:  # a lone surrogate has no UTF-8 form: it could be neither signed
        raise EventRejected(BAD_FIELD, "body: text that UTF-8 cannot carry") from None
    if size > MAX_EVENT_BODY_BYTES:
        raise EventRejected(TOO_LARGE, f"body: {size} bytes, more than "
                                       f"{MAX_EVENT_BODY_BYTES} (MAX_EVENT_BODY_BYTES)")
    return text


def check_time(ts: object) -> None:
    """An event time: RFC 3339 UTC with milliseconds, a real date, in the sane range."""
    if not isinstance(ts, str) or not TIME_PATTERN.match(ts):
        raise EventRejected(BAD_TIME, "ts: not RFC 3339 UTC with milliseconds")
    try:
        datetime.fromisoformat(ts[:-1])  # month 13, February 30, hour 24...
    except ValueError:
        raise EventRejected(BAD_TIME, "ts: not a real date and time") from None
    if not MIN_EVENT_TIME <= ts < MAX_EVENT_TIME:  # fixed width: text order is time order
        raise EventRejected(BAD_TIME, f"ts: outside {MIN_EVENT_TIME} .. {MAX_EVENT_TIME}")


def check_event(kind: object, body: object, ts: object) -> str:
    """Body and time of a received event (the fleet's whole schema decision); returns the
    body's canonical text or raises EventRejected."""
    text = check_body(kind, body)
    check_time(ts)
    return text
