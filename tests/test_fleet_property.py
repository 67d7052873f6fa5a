"""Property tests of the fleet API: schemathesis against the shipped OpenAPI document (every
endpoint, generated requests over real HTTP) and hypothesis over signed event batches."""
from __future__ import annotations

import base64
import itertools
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import jsonschema
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings, strategies as st

from firmware.protocol.event_codec import Event
from firmware.protocol.request_signing import sign_request
from firmware.sync.trustsync import register_device
from fleet.devclient import make_chain, signed_post
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import generate_signing_key

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis not installed "
                                   "(pip install -e '.[dev]')")
from schemathesis.core import NotSet  # noqa: E402 - after the importorskip above

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "fleet-openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(OPENAPI))
DEVICE = "kiosk-prop-1"
ORDER_DEVICES = itertools.count(1)
CI_SETTINGS = settings(max_examples=20, deadline=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    folder = tmp_path_factory.mktemp("fleet-prop")
    generate_signing_key(folder / "fleet.key")
    with run_in_thread(f"sqlite:///{folder}/fleet.db", signing_key_path=folder / "fleet.key") \
            as handle:
        handle.publish("dcc-signers", {"certificates": []})
        yield handle


@pytest.fixture(scope="module")
def device(server: ServerHandle) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    server.store.add_token("property-token-00001", datetime.now(timezone.utc) + timedelta(1))
    register_device(server.url, "property-token-00001", DEVICE, key)
    return key


@SCHEMA.parametrize()
@CI_SETTINGS
def test_every_endpoint_conforms_to_its_document(case: object, server: ServerHandle) -> None:
    """Generated requests (valid and invalid) never crash the server, and every answer has a
    documented status, content type and body shape."""
    response = case.call(base_url=server.url, timeout=10)  # type: ignore[attr-defined]
    assert response.status_code < 500, response.text
    case.validate_response(response)  # type: ignore[attr-defined]


@SCHEMA.include(path="/v1/events", method="POST").parametrize()
@CI_SETTINGS
def test_signed_generated_batches_are_answered_not_crashed(
        case: object, server: ServerHandle, device: Ed25519PrivateKey) -> None:
    """The same generator, but correctly signed by a registered device, so the bodies reach
    the ingest code: answers stay documented, and nothing unverifiable is ever stored."""
    generated = case.body  # type: ignore[attr-defined]
    if isinstance(generated, NotSet):
        body = b""
    elif isinstance(generated, bytes):  # negative cases may be raw bytes
        body = generated
    else:
        body = json.dumps(generated).encode()
    with requests.Session() as http:
        response = signed_post(http, server.url, device, DEVICE, body)
    assert response.status_code in (200, 413, 422), response.text
    documented = SCHEMA.raw_schema["paths"]["/v1/events"]["post"]["responses"]
    shape = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**shape, "components": SCHEMA.raw_schema["components"]})
    if response.status_code == 200:
        answer = response.json()
        assert not set(answer["acked"]) & {r["seq"] for r in answer["rejected"]}
    # Generated signatures are never valid, so nothing may have been stored.
    assert server.store.events(DEVICE) == []


def forge(event: Event, how: str) -> dict:
    wire = event.to_wire()
    if how == "body":
        wire["body"] = {**event.body, "outcome": "granted", "forged": True}
    else:  # the right content, signed by somebody else
        wire["sig"] = base64.b64encode(Ed25519PrivateKey.generate().sign(b"x")).decode()
    return wire


@given(data=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_ingest_is_order_independent_and_exactly_once(data: st.DataObject,
                                                      server: ServerHandle) -> None:
    """Any permutation of a genuine chain, cut into any batches, with duplicates and forged
    copies mixed in, ends with exactly the genuine chain stored and every forgery refused."""
    count = data.draw(st.integers(1, 25), label="events")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = random.Random(seed)
    key = Ed25519PrivateKey.generate()
    device_id = f"kiosk-order-{next(ORDER_DEVICES)}"  # a fresh device on the shared server
    chain = make_chain(key, device_id, count)
    wires = [e.to_wire() for e in chain]
    wires += [e.to_wire() for e in rng.sample(chain, rng.randint(0, count))]  # duplicates
    forged = [forge(e, rng.choice(["body", "sig"]))
              for e in rng.sample(chain, rng.randint(0, min(3, count)))]
    wires += forged
    rng.shuffle(wires)
    token = f"order-token-{device_id}"
    server.store.add_token(token, datetime.now(timezone.utc) + timedelta(1))
    register_device(server.url, token, device_id, key)
    acked, refused = set(), []
    position = 0
    with requests.Session() as http:
        while position < len(wires):
            size = rng.randint(1, 8)
            part = wires[position:position + size]
            position += size
            body = json.dumps({"events": part}).encode()
            response = signed_post(http, server.url, key, device_id, body)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert len(answer["acked"]) + len(answer["rejected"]) == len(part)
            acked.update(answer["acked"])
            refused += [r["reason"] for r in answer["rejected"]]
    assert server.store.events(device_id) == chain
    assert acked == set(range(1, count + 1))
    # A forged copy is refused whether it arrives before or after its genuine twin.
    assert len(refused) == len(forged)
    assert set(refused) <= {"EVENT_BAD_SIGNATURE", "EVENT_HASH_MISMATCH", "EVENT_FORK"}


def test_conditional_trust_requests_with_odd_etags(server: ServerHandle,
                                                     device: Ed25519PrivateKey) -> None:
    """Conditional GETs with arbitrary If-None-Match values: 200 or 304, never an error."""
    rng = random.Random(5)
    item = server.store.trust("dcc-signers")
    assert item is not None
    for header in ["", "*", item.etag, f"W/{item.etag}", f'"x", {item.etag}', '"nope"',
                   "".join(chr(rng.randint(33, 126)) for _ in range(40))]:
        path = "/v1/trust/dcc-signers"
        headers = {"If-None-Match": header, **sign_request(device, DEVICE, "GET", path, b"")}
        response = requests.get(server.url + path, headers=headers, timeout=10)
        expected = 304 if item.etag in header or header == "*" else 200
        assert response.status_code == expected, header
