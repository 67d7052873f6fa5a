"""`healthgate demo --save DIR`: sample credentials and the trust folder that checks them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from firmware.credentials.dcc.revocation import hash_entry
from firmware.demo.frames import frame_with_code
from firmware.demo.issuer import issue_dcc, make_signer, vaccination_payload

TRUST_FOLDER = "trust"
IMAGE_SIZE = (640, 480)  # a camera-like frame around the QR code
MENU_LINK = "https://example.org/menu"
DAMAGED_TAIL_CHARS = 40  # cut off the end of a valid code, as a torn or folded print does


@dataclass(frozen=True)
class Sample:
    file: str
    what: str
    verdict: str  # "VALID" or the reason code `healthgate check` gives


def save_samples(folder: Path, now: datetime) -> list[Sample]:
    """Write the samples and `trust/` into `folder` (created); returns what each should give.
    The holder is fictional ("Demo Muster"); the signer is a fresh self-signed demo key."""
    signer = make_signer()
    trust = folder / TRUST_FOLDER
    (trust / "dcc-certs").mkdir(parents=True, exist_ok=True)
    (trust / "dcc-certs" / "demo-signer.der").write_bytes(signer.certificate_der)

    def dcc(valid_from: datetime, until: datetime, forged: bool = False,
            payload: dict | None = None) -> str:  # type: ignore[type-arg]
        key = ec.generate_private_key(ec.SECP256R1()) if forged else None
        return issue_dcc(signer, payload or vaccination_payload(), valid_from, until,
                         signing_key=key)

    valid = dcc(now - timedelta(days=2), now + timedelta(days=200))
    revoked_payload = vaccination_payload()
    revoked = dcc(now - timedelta(days=2), now + timedelta(days=200), payload=revoked_payload)
    uvci = revoked_payload["v"][0]["ci"]
    (trust / "dcc-revocation.json").write_text(json.dumps({"UCI": [hash_entry(uvci.encode()).hex()]}))
    texts = [
        Sample("valid.txt", "a valid vaccination certificate", "VALID"),
        Sample("expired.txt", "expired 35 days ago", "DCC_EXPIRED"),
        Sample("revoked.txt", "valid dates, but its certificate id is on the revocation list",
               "DCC_REVOKED"),
        Sample("forged.txt", "signed with another key under the genuine kid",
               "DCC_SIGNATURE_INVALID"),
        Sample("damaged.txt", "a valid code with its end cut off", "DCC_"),
    ]
    contents = {
        "valid.txt": valid,
        "expired.txt": dcc(now - timedelta(days=400), now - timedelta(days=35)),
        "revoked.txt": revoked,
        "forged.txt": dcc(now - timedelta(days=1), now + timedelta(days=200), forged=True),
        "damaged.txt": valid[:-DAMAGED_TAIL_CHARS],
    }
    for sample in texts:
        (folder / sample.file).write_text(contents[sample.file] + "\n")
    Image.fromarray(frame_with_code(valid, *IMAGE_SIZE)).save(folder / "valid.png")
    # A code that is no credential, as a shop's menu QR code: `check` reads the image and
    # verifies what it finds (as a text file, a web link would be refused as no credential).
    Image.fromarray(frame_with_code(MENU_LINK, *IMAGE_SIZE)).save(folder / "not-a-credential.png")
    samples = [*texts, Sample("valid.png", "the valid certificate as a camera would see it",
                              "VALID"),
               Sample("not-a-credential.png", "a web link, as a menu QR code holds",
                      "UNKNOWN_FORMAT")]
    lines = [f"healthgate demo samples, written {now:%Y-%m-%d %H:%M} UTC (valid for 200 days)",
             "", f"try: healthgate check {folder / 'valid.txt'} --trust {trust}", ""]
    lines += [f"{s.file:22} {s.what:66} -> {s.verdict}" for s in samples]
    (folder / "README.txt").write_text("\n".join(lines) + "\n")
    return samples
