"""`healthgate run` on a provisioned kiosk: trust synced from the fleet, decisions uploaded."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from firmware.app import main as run_main
from firmware.demo.frames import background, frame_with_code
from firmware.demo.issuer import issue_dcc, make_signer, vaccination_payload
from firmware.protocol.keys import public_key_b64
from fleet.runner import run_in_thread
from fleet.server import create_app
from fleet.trust import generate_signing_key
from provisioning.cli import main as provision

NOW = datetime.now(timezone.utc)


def _signer_list(signer_der: bytes, anchor: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """A gateway-style signer list holding one DSC, signed by the national trust anchor."""
    digest = hashlib.sha256(signer_der).digest()
    document = {"certificates": [{
        "kid": base64.b64encode(digest[:8]).decode(), "country": "XX", "certificateType": "DSC",
        "rawData": base64.b64encode(signer_der).decode(), "thumbprint": digest.hex(),
        "signature": "", "timestamp": NOW.isoformat()}]}
    listed = json.dumps(document).encode()
    signature = anchor.sign(listed, ec.ECDSA(hashes.SHA256()))
    return {"list": base64.b64encode(listed).decode(),
            "signature": base64.b64encode(signature).decode()}


def test_provisioned_kiosk_syncs_trust_decides_and_uploads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    fleet_key = generate_signing_key(tmp_path / "fleet.key")
    anchor = ec.generate_private_key(ec.SECP256R1())
    signer = make_signer()
    texts = [issue_dcc(signer, vaccination_payload(), NOW - timedelta(days=1), NOW + timedelta(days=30)),
             issue_dcc(signer, vaccination_payload(), NOW - timedelta(days=90), NOW - timedelta(days=1))]
    frames = tmp_path / "frames"
    frames.mkdir()
    index = 0
    for text in texts:  # each person: empty scene, then the code held up, then empty again
        for image in [background(480, 360)] * 6 + [frame_with_code(text, 480, 360)] * 6:
            Image.fromarray(image).save(frames / f"{index:04d}.png")
            index += 1
    for _ in range(15):
        Image.fromarray(background(480, 360)).save(frames / f"{index:04d}.png")
        index += 1

    with run_in_thread(create_app(str(tmp_path / "fleet.db"), tmp_path / "fleet.key")) as server:
        server.store.add_token("enrol-0123456789abcdef", NOW + timedelta(hours=1))
        server.publish("dcc-signers", _signer_list(signer.certificate_der, anchor))
        assert provision(["init", "--state", str(state), "--device-id", "door-1"]) == 0
        assert provision(["register", "--state", str(state), "--fleet", server.url,
                          "--token", "enrol-0123456789abcdef",
                          "--fleet-key", public_key_b64(fleet_key)]) == 0
        # the technician installs the national trust anchor that signs DCC signer lists
        anchors = state / "trust" / "dcc-trust-anchors"
        anchors.mkdir(parents=True)
        (anchors / "xx.pem").write_bytes(anchor.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        config = tmp_path / "kiosk.toml"
        config.write_text(f"""
[kiosk]
result_hold_s = 0.3
[camera]
source = "files"
path = "{frames}"
fps = 15
[face]
enabled = false
[fleet]
url = "{server.url}"
[state]
dir = "{state}"
""")
        assert run_main(["--config", str(config)]) == 0
        assert "2 decisions (1 granted)" in capsys.readouterr().out
        decisions = [e.body for e in server.store.events("door-1") if e.kind == "decision"]
    assert [d["decision"] for d in decisions] == ["granted", "denied"]
    assert decisions[1]["reason"] == "DCC_EXPIRED"
    assert (state / "trust" / "dcc-signers.json").exists()  # synced and cached for offline use
