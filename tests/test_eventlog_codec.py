"""Fast paths of the event log are byte-identical to the reference codec the fleet verifies."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.eventlog.guard import BodyRejected, check_body, is_plainly_clean
from firmware.protocol.event_codec import (GENESIS_HASH, check_event, make_event, signed_content,
                                           signed_content_from_text)
from firmware.protocol.events import canonical_json
from firmware.protocol.timestamps import rfc3339


def reference_json(value: object) -> bytes:
    """The codec as first written (json.dumps with the canonical options)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Any JSON value, with awkward text (escapes, quotes, non-ASCII) and any keys.
json_leaf = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
             | st.floats(allow_nan=False, allow_infinity=False))
any_json = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
json_bodies = st.dictionaries(st.text(max_size=8), any_json, max_size=4)
no_surrogates = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)


@settings(max_examples=150, deadline=None)
@given(body=json_bodies, device_id=no_surrogates, kind=no_surrogates, ts=no_surrogates,
       prev_hash=no_surrogates, seq=st.integers(0, 2**63))
def test_signed_content_from_text_is_byte_identical(body: dict, device_id: str, kind: str,
                                                    ts: str, prev_hash: str, seq: int) -> None:
    body_text = canonical_json(body).decode()
    assert body_text.encode() == reference_json(body)
    expected = reference_json({"device_id": device_id, "seq": seq, "ts": ts, "kind": kind,
                               "body": body, "prev_hash": prev_hash})
    assert signed_content(device_id, seq, ts, kind, body, prev_hash) == expected
    assert signed_content_from_text(device_id, seq, ts, kind, body_text, prev_hash) == expected
    # what the log signs is the parsed-back body: it must encode to the same text again
    assert canonical_json(json.loads(body_text)).decode() == body_text


def test_event_made_from_text_verifies_like_the_reference() -> None:
    key = Ed25519PrivateKey.generate()
    body = {"decision": "denied", "reason": "DCC_EXPIRED", "note": "ä \"q\" \\ \u2028 \n",
            "face": {"score": 0.1 + 0.2, "n": -0.0, "big": 10**30}}
    text = canonical_json(body).decode()
    fast = make_event(key, "kiosk-ü", 7, "2026-11-26T08:00:00.123Z", "decision", body,
                      GENESIS_HASH, text)
    slow = make_event(key, "kiosk-ü", 7, "2026-11-26T08:00:00.123Z", "decision", body,
                      GENESIS_HASH)
    assert (fast.hash, fast.sig) == (slow.hash, slow.sig)  # Ed25519 is deterministic
    assert check_event(fast, key.public_key()) is None


guard_keys = st.sampled_from(["decision", "reason", "score", "Name", "first_name", "dob",
                              "credential-Id", "x", "birth year", "jti", "ok"]) | st.text(max_size=6)
guard_leaf = (st.none() | st.booleans() | st.integers() | st.floats()
              | st.sampled_from(["HC1:6BF", "urn:uvci:01:X", "shc:/56", "NZCP:/1/", "fine"])
              | st.text(max_size=8))
guard_values = st.recursive(
    guard_leaf, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
    | st.dictionaries(guard_keys | st.integers(), inner, max_size=3), max_leaves=12)


def nested(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = {"x": leaf}
    return leaf


@settings(max_examples=300, deadline=None)
@given(body=guard_values)
def test_guard_fast_path_never_accepts_what_the_careful_check_refuses(body: object) -> None:
    try:
        check_body(body)
        refused = False
    except BodyRejected:
        refused = True
    if refused:
        assert not is_plainly_clean(body)


@pytest.mark.parametrize("depth", range(6, 12))
@pytest.mark.parametrize("leaf", [1, "s", None, {}, [], [1], {"a": 1}])
def test_guard_fast_path_agrees_at_the_depth_limit(depth: int, leaf: object) -> None:
    body = nested(depth, leaf)
    try:
        check_body(body)
        accepted = True
    except BodyRejected:
        accepted = False
    assert is_plainly_clean(body) == accepted  # plain JSON types: the two must agree exactly


@pytest.mark.parametrize("body", [
    {"decision": "granted", "face": {"score": 0.8}, "list": [1, "a", None, True, 2.5]},
    {}, {"nested": [[[]]]},
])
def test_guard_fast_path_accepts_ordinary_bodies(body: dict) -> None:
    assert is_plainly_clean(body)


def test_rfc3339_matches_strftime_formatting() -> None:
    moments = [datetime(2026, 11, 26, 8, 0, 0, 123999, tzinfo=timezone.utc),
               datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=timezone(timedelta(hours=-5))),
               datetime(2030, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=14))),
               datetime(999, 5, 5, 5, 5, 5, 5, tzinfo=timezone.utc),
               datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)]
    for moment in moments:
        expected = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert rfc3339(moment) == expected
