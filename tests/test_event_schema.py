"""One event schema for both sides: whatever the kiosk's append refuses the fleet refuses over
real HTTP (with the reason in its incidents), whatever one accepts the other accepts."""
from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.eventlog import EventLog, EventLogError
from firmware.eventlog.outbox import Outbox
from firmware.protocol import events as schema
from firmware.protocol.event_codec import GENESIS_HASH, Event
from firmware.protocol.events import canonical_json
from firmware.sync.trustsync import register_device
from firmware.sync.uploader import Uploader, UploadError
from fleet.devclient import signed_post, upload
from fleet.runner import ServerHandle
from fleet.server import run_in_thread

DEVICE = "kiosk-schema-1"
TS = "2026-11-26T08:00:00.000Z"
PLACEHOLDER = "@@NUMBER@@"  # stands for a raw number literal in a hand-written wire text
MAX = schema.MAX_EVENT_BODY_BYTES


def padded(size: int, filler: str = "x") -> str:
    """A decision body whose canonical JSON is exactly `size` bytes (ASCII padding, and the
    last character `filler`, which may take several bytes)."""
    base = len(canonical_json({"decision": "granted", "pad": ""}))
    pad = "x" * (size - base - len(filler.encode())) + filler
    text = canonical_json({"decision": "granted", "pad": pad}).decode()
    assert len(text.encode()) == size
    return text


def moment(ts: str) -> datetime:
    return datetime.fromisoformat(ts[:-1]).replace(tzinfo=timezone.utc)


# One table, run against the kiosk's append and the fleet's ingest. Each row: kind, the body as
# JSON text (Python's json reads NaN/Infinity/1e400 into floats for the kiosk; the fleet gets
# the literal itself), the event time, and the expected reason (None: accepted).
ROWS: list[tuple[str, str, str, str, str | None]] = [
    ("ordinary decision", "decision", '{"decision":"denied","reason":"DCC_EXPIRED","format":'
     '"dcc","pseudonym":"ab","checks":{"signature":true},"face":{"similarity":0.41}}', TS, None),
    ("boot", "boot", "{}", TS, None),
    ("fault", "fault", '{"part":"camera","problem":"no frames"}', TS, None),
    ("restart", "log_restarted", '{"reason":"EVENTLOG_MISSING","previous_start":null}', TS,
     None),
    ("1e400", "decision", '{"decision":"granted","face":{"similarity":1e400}}', TS,
     schema.NOT_FINITE),
    ("-1e400", "decision", '{"decision":"granted","x":[-1e400]}', TS, schema.NOT_FINITE),
    ("NaN", "decision", '{"decision":"granted","face":{"similarity":NaN}}', TS,
     schema.NOT_FINITE),
    ("Infinity", "decision", '{"decision":"granted","score":Infinity}', TS, schema.NOT_FINITE),
    ("-Infinity", "decision", '{"decision":"granted","score":-Infinity}', TS,
     schema.NOT_FINITE),
    ("at the size bound", "decision", padded(MAX), TS, None),
    ("one byte past", "decision", padded(MAX + 1), TS, schema.TOO_LARGE),
    # 8 KiB of characters but not of bytes: the kiosk once counted characters
    ("one byte past, multi-byte", "decision", padded(MAX + 1, "\u00e9"), TS, schema.TOO_LARGE),
    ("300 KB body", "decision", padded(300_000), TS, schema.TOO_LARGE),
    ("unknown kind", "shell_command", '{"decision":"granted"}', TS, schema.UNKNOWN_KIND),
    ("kind of bad shape", "Decision!", '{"decision":"granted"}', TS, schema.UNKNOWN_KIND),
    ("missing field", "decision", '{"outcome":"granted"}', TS, schema.BAD_FIELD),
    ("bad choice", "decision", '{"decision":"maybe"}', TS, schema.BAD_FIELD),
    ("bool for int", "log_restarted", '{"reason":"X","previous_start":true}', TS,
     schema.BAD_FIELD),
    ("seq past 2**53", "log_restarted", '{"reason":"X","previous_start":%d}' % 2**53, TS,
     schema.BAD_FIELD),
    ("float for int", "log_restarted", '{"reason":"X","previous_start":1.5}', TS,
     schema.BAD_FIELD),
    ("fault text too long", "fault", json.dumps({"part": "camera", "problem": "p" * 201}), TS,
     schema.BAD_FIELD),
    ("too deep", "decision", '{"decision":"granted","x":' + "[" * 9 + "]" * 9 + "}", TS,
     schema.TOO_DEEP),
    ("NaN far below the depth bound", "decision",
     '{"decision":"granted","x":' + "[" * 500 + "NaN" + "]" * 500 + "}", TS, schema.TOO_DEEP),
    ("deep enough", "decision", '{"decision":"granted","x":' + "[" * 8 + "]" * 8 + "}", TS,
     None),
    ("personal data", "decision", '{"decision":"granted","holder":{"givenName":"X"}}', TS,
     schema.PERSONAL_DATA),
    ("first time", "boot", "{}", schema.MIN_EVENT_TIME, None),
    ("before the epoch", "boot", "{}", "1969-12-31T23:59:59.999Z", schema.BAD_TIME),
    ("last time", "boot", "{}", "2199-12-31T23:59:59.999Z", None),
    ("year 2200", "boot", "{}", schema.MAX_EVENT_TIME, schema.BAD_TIME),
]
ROW_IDS = [row[0] for row in ROWS]


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def kiosk_reason(log: EventLog, clock: ManualClock, kind: str, body: object,
                 ts: str) -> str | None:
    clock.now = moment(ts)
    try:
        log.append(kind, body)  # type: ignore[arg-type]
    except EventLogError as refused:
        assert refused.reason is not None, refused
        return refused.reason
    return None


def handmade(key: Ed25519PrivateKey, seq: int, prev_hash: str, kind: str, body_text: str,
             ts: str) -> tuple[str, str]:
    """An event signed the way a sender that allows NaN and Infinity would sign it (json with
    allow_nan, as the old codec did); returns (wire JSON text, its hash). Literals such as
    1e400 stay as written in the wire text."""
    literals: list[str] = []

    def keep(literal: str) -> Any:
        literals.append(literal)
        return float(literal)

    body = json.loads(body_text, parse_float=keep, parse_constant=keep)
    content = json.dumps({"device_id": DEVICE, "seq": seq, "ts": ts, "kind": kind,
                          "body": body, "prev_hash": prev_hash},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(content).hexdigest()
    wire = {"device_id": DEVICE, "seq": seq, "ts": ts, "kind": kind, "body": PLACEHOLDER,
            "prev_hash": prev_hash, "hash": digest,
            "sig": base64.b64encode(key.sign(content)).decode()}
    text = json.dumps(wire, ensure_ascii=False).replace(json.dumps(PLACEHOLDER), body_text)
    return text, digest


@pytest.fixture
def fleet(db_url: str) -> Iterator[ServerHandle]:
    handle = run_in_thread(db_url)
    yield handle
    handle.stop()


def enrol(handle: ServerHandle, key: Ed25519PrivateKey, device_id: str = DEVICE) -> None:
    token = base64.urlsafe_b64encode(random.randbytes(24)).decode().rstrip("=")
    handle.store.add_token(token, datetime.now(timezone.utc) + timedelta(hours=1))
    register_device(handle.url, token, device_id, key)


def fleet_outcomes(handle: ServerHandle, key: Ed25519PrivateKey,
                   wires: list[str]) -> dict[str, Any]:
    body = ('{"events":[' + ",".join(wires) + "]}").encode()
    with requests.Session() as http:
        response = signed_post(http, handle.url, key, DEVICE, body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# -- the table against both sides ------------------------------------------------------------
def test_table_refused_alike_by_the_kiosk_and_by_the_fleet(tmp_path: Path,
                                                          fleet: ServerHandle) -> None:
    key = Ed25519PrivateKey.generate()
    enrol(fleet, key)
    clock = ManualClock(moment(TS))
    with EventLog.open(tmp_path / "events.db", key, DEVICE, durability="normal",
                       clock=clock) as log:
        kiosk = {name: kiosk_reason(log, clock, kind, json.loads(text), ts)
                 for name, kind, text, ts, _ in ROWS}
    # The fleet: one chain, one batch; a refused event leaves a gap, which is no error.
    wires, prev = [], GENESIS_HASH
    for seq, (_, kind, text, ts, _) in enumerate(ROWS, start=1):
        wire, prev = handmade(key, seq, prev, kind, text, ts)
        wires.append(wire)
    answer = fleet_outcomes(fleet, key, wires)
    refused = {r["seq"]: r["reason"] for r in answer["rejected"]}
    fleet_side = {name: refused.get(seq) for seq, (name, *_) in enumerate(ROWS, start=1)}
    expected = {name: reason for name, _, _, _, reason in ROWS}
    assert kiosk == expected
    assert fleet_side == expected
    assert sorted(answer["acked"]) == [seq for seq, row in enumerate(ROWS, start=1)
                                       if row[4] is None]
    # every refusal is in the incidents with its reason; nothing refused was stored
    incidents = {i["seq"]: i["reason"] for i in fleet.store.incidents(DEVICE)}
    assert incidents == refused
    stored = fleet.store.events(DEVICE)
    assert [e.seq for e in stored] == sorted(answer["acked"])
    assert all(canonical_json(e.body) for e in stored)  # all finite: canonical JSON refuses not


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_fleet_refuses_a_signed_non_finite_number_and_records_it(
        fleet: ServerHandle, literal: str) -> None:
    key = Ed25519PrivateKey.generate()
    enrol(fleet, key)
    good, prev = handmade(key, 1, GENESIS_HASH, "boot", "{}", TS)
    bad, _ = handmade(key, 2, prev, "decision",
                      '{"decision":"granted","face":{"similarity":%s}}' % literal, TS)
    after, _ = handmade(key, 3, _, "boot", "{}", TS)
    answer = fleet_outcomes(fleet, key, [good, bad, after])
    assert answer["rejected"] == [{"seq": 2, "reason": "EVENT_NOT_FINITE"}]
    assert answer["acked"] == [1, 3]  # the event after it is not held up
    assert [(i["seq"], i["reason"]) for i in fleet.store.incidents(DEVICE)] == \
        [(2, "EVENT_NOT_FINITE")]
    assert [e.seq for e in fleet.store.events(DEVICE)] == [1, 3]
    # Outside an event's body it is no event's fault: the whole request is refused, as before.
    retry, _ = handmade(key, 4, GENESIS_HASH, "boot", "{}", TS)
    for body in ('{"events":[%s],"x":%s}' % (retry, literal),
                 '{"events":[%s]}' % retry.replace('"seq": 4', '"seq": ' + literal)):
        with requests.Session() as http:
            response = signed_post(http, fleet.url, key, DEVICE, body.encode())
        assert (response.status_code, response.json()["error"]) == (422, "MALFORMED_JSON")
    assert len(fleet.store.incidents(DEVICE)) == 1


@pytest.mark.parametrize("ts", ["2026-11-26T08:00:00Z", "2026-02-30T08:00:00.000Z",
                                "2026-11-26T24:00:00.000Z", "2026-11-26 08:00:00.000Z",
                                "\u0662026-11-26T08:00:00.000Z", "1e400", ""])
def test_fleet_refuses_event_times_that_are_not_times(fleet: ServerHandle, ts: str) -> None:
    key = Ed25519PrivateKey.generate()
    enrol(fleet, key)
    wire, _ = handmade(key, 1, GENESIS_HASH, "boot", "{}", ts)
    answer = fleet_outcomes(fleet, key, [wire])
    assert answer["rejected"] == [{"seq": 1, "reason": "EVENT_BAD_TIME"}]
    assert fleet.store.events(DEVICE) == []


# -- the parser and the canonical form -------------------------------------------------------
@pytest.mark.parametrize("text", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity",
                                  '{"a":[1, 2e308]}'])
def test_loads_refuses_non_finite_while_parsing(text: str) -> None:
    with pytest.raises(schema.EventRejected) as refused:
        schema.loads(text)
    assert refused.value.reason == schema.NOT_FINITE
    assert schema.loads('{"a":[1,1e308,-0.0]}') == {"a": [1, 1e308, -0.0]}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_refuses_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"body": {"x": [value]}})


def test_every_known_kind_has_the_kind_shape() -> None:
    assert all(schema.KIND_PATTERN.match(kind) for kind in schema.KINDS)


# -- the kiosk's uploader and a refused event ------------------------------------------------
def test_refused_event_is_parked_kept_and_counted_not_wedging_the_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kiosk whose log holds an event the fleet refuses (one from software with a kind the
    fleet does not know): the uploader parks it with the fleet's reason, the events behind it
    are uploaded, it stays in the log and counts as rejected."""
    import firmware.eventlog.log as log_module
    from firmware.eventlog.guard import Prepared, prepare

    key = Ed25519PrivateKey.generate()
    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db")
    try:
        enrol(handle, key)
        with EventLog.open(tmp_path / "events.db", key, DEVICE, durability="normal") as log:
            log.append("boot", {})
            # the log of a kiosk whose software knew a kind the fleet does not (any more)
            monkeypatch.setattr(log_module, "prepare", lambda kind, body: Prepared(
                kind, body, canonical_json(body).decode()))
            retired = log.append("retired_kind", {"decision": "granted"})
            monkeypatch.setattr(log_module, "prepare", prepare)
            later = [log.append("decision", {"decision": "denied"}).seq for _ in range(3)]
            uploader = Uploader(Outbox(log), handle.url, DEVICE, key, batch_size=2)
            for _ in range(20):
                try:
                    if uploader.upload_once() == 0 and uploader.status().pending == 0:
                        break
                except UploadError:
                    continue
            assert Outbox(log).rejected() == {retired.seq: "EVENT_UNKNOWN_KIND"}
            assert log.get(retired.seq) == retired  # kept, never lost
            stats = log.stats()
            assert (stats.pending, stats.rejected, stats.uploaded) == (0, 1, 4)
            assert uploader.status().rejected == 1
        assert [e.seq for e in handle.store.events(DEVICE)] == [1] + later
        assert [(i["seq"], i["reason"]) for i in handle.store.incidents(DEVICE)] == \
            [(retired.seq, "EVENT_UNKNOWN_KIND")]
    finally:
        handle.stop()


# -- property: the two sides agree on any event ------------------------------------------------
json_leaf = (st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats()
             | st.text(max_size=8) | st.sampled_from(["granted", "denied", "HC1:6BF", "ok"]))
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["a", "b", "name"]), inner,
                                             max_size=2), max_leaves=6)
field_values = {name: json_leaf | json_values for name in
                {n for fields in schema.KINDS.values() for n in fields}}
kinds = st.sampled_from(sorted(schema.KINDS)) | st.sampled_from(["nope", "Decision", "", "a" * 65])
sizes = st.integers(MAX - 120, MAX + 40)  # bodies around the size bound


finite_leaf = (st.none() | st.booleans() | st.integers(-2**53, 2**53)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))


def good_value(field: schema.Field) -> st.SearchStrategy[Any]:
    """A value the field allows (rarely also one it does not: text may look like a raw
    credential, which the privacy rule refuses)."""
    options: list[st.SearchStrategy[Any]] = []
    for kind in field.types:
        if kind is None:
            options.append(st.none())
        elif kind is str:
            options.append(st.sampled_from(sorted(field.choices)) if field.choices
                           else st.text(max_size=field.max_chars))
        elif kind is int:
            low, high = field.int_range or (-2**53, 2**53)
            options.append(st.integers(low, high))
        elif kind is dict:
            options.append(st.dictionaries(st.sampled_from(["ok", "score", "signature"]),
                                           finite_leaf, max_size=3))
    return st.one_of(options)


@st.composite
def plausible_events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Events as the kiosk writes them: mostly accepted."""
    kind = draw(st.sampled_from(sorted(schema.KINDS)))
    body = {name: draw(good_value(field)) for name, field in schema.KINDS[kind].items()
            if field.required or draw(st.booleans())}
    body.update(draw(st.dictionaries(st.sampled_from(["score", "x"]), finite_leaf, max_size=2)))
    return kind, body


@st.composite
def wild_events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Anything near the rules: mostly refused, for one reason or another."""
    kind = draw(kinds)
    body: dict[str, Any] = {}
    for name, field in schema.KINDS.get(kind, schema.KINDS["decision"]).items():
        how = draw(st.integers(0, 4))
        if how == 0:
            continue  # sometimes missing, even when required
        if how == 1 and field.choices:
            body[name] = draw(st.sampled_from(sorted(field.choices)))
        elif how == 2:
            body[name] = draw(field_values[name])  # any JSON: mostly the wrong type
        else:  # plausible values, some of the right type, some at a length bound
            body[name] = draw(st.sampled_from(["granted", "camera", None, 1, {}, "t" * 201]))
    extras = draw(st.dictionaries(st.sampled_from(["score", "x", "dob", "pad"]), json_values,
                                  max_size=2))
    body.update(extras)
    if draw(st.integers(0, 5)) == 0:
        body["pad"] = ""
        body["pad"] = "p" * max(0, draw(sizes) - len(json.dumps(body, ensure_ascii=False)))
    return kind, body


def test_any_event_the_kiosk_accepts_the_fleet_accepts_and_vice_versa(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db")
    log = EventLog.open(tmp_path / "events.db", key, DEVICE, durability="normal")
    http = requests.Session()
    seen = {"accepted": 0, "refused": 0}
    try:
        enrol(handle, key)

        @settings(max_examples=150, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(event=plausible_events() | wild_events())
        def agree(event: tuple[str, dict[str, Any]]) -> None:
            kind, body = event
            tip = log.stats().tip_seq
            previous = log.get(tip)
            prev_hash = previous.hash if previous is not None else GENESIS_HASH
            try:
                appended: Event | None = log.append(kind, body)
                kiosk = None
            except EventLogError as refused:
                appended, kiosk = None, refused.reason
            if appended is not None:  # what the kiosk logged, exactly as it uploads it
                answer = upload(http, handle.url, key, DEVICE, [appended])
                seq = appended.seq
            else:  # what it refused, signed all the same (as a sender without the guard)
                seq = tip + 1
                wire, _ = handmade(key, seq, prev_hash, kind,
                                   json.dumps(body, ensure_ascii=False), TS)
                response = signed_post(http, handle.url, key, DEVICE,
                                       ('{"events":[%s]}' % wire).encode())
                assert response.status_code == 200, response.text
                answer = response.json()
            fleet = {r["seq"]: r["reason"] for r in answer["rejected"]}.get(seq)
            assert (fleet is None) == (seq in answer["acked"])
            assert fleet == kiosk, (kind, body)
            seen["refused" if kiosk else "accepted"] += 1

        agree()
    finally:
        http.close()
        log.close()
        handle.stop()
    assert seen["accepted"] >= 20 and seen["refused"] >= 20, seen  # both sides exercised
