"""Credential verifications per second, per format; and an existing PyPI DCC verifier for scale.

    .venv/bin/python bench/verify.py [--seconds 2]
    (comparison: .venv/bin/pip install -r bench/requirements-verify.txt)

Each format registers a sample maker in SAMPLES: `() -> (text, trust, at)` for one valid
credential of that format. The loop calls the public `verify()` exactly as the kiosk does.
The comparison verifier (CovidPyLib's DCCVerifier, via pycose) does less work than ours: base45,
zlib and the COSE signature only (no expiry, key usage, schema, rules or revocation); the
ratio is ours / theirs on the same credential. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import json
import sys
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from firmware.credentials import TrustStore, verify  # noqa: E402
from firmware.credentials.base45 import b45decode  # noqa: E402
from firmware.demo.issuers.dcc import issue_dcc  # noqa: E402
from firmware.credentials.trust import dcc_kid  # noqa: E402

T0 = datetime(2021, 6, 1, tzinfo=timezone.utc)
Sample = tuple[str, TrustStore, datetime]


def _signing_pair(kind: str) -> tuple[Any, bytes]:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench DSC")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(T0 - timedelta(days=1)).not_valid_after(T0 + timedelta(days=800))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.DER)


def _dcc_document() -> dict[str, Any]:
    return {"ver": "1.3.0", "nam": {"fn": "Bench", "fnt": "BENCH", "gn": "Mark", "gnt": "MARK"},
            "dob": "1980-01-01",
            "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528",
                   "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": "2021-05-01", "co": "AT",
                   "is": "Bench issuer", "ci": "URN:UVCI:01:AT:BENCH000000001#B"}]}


def _dcc_sample(kind: str) -> Callable[[], Sample]:
    def make() -> Sample:
        key, der = _signing_pair(kind)
        text = issue_dcc(_dcc_document(), key, dcc_kid(der), T0, T0 + timedelta(days=365), "AT")
        return text, TrustStore.from_certificates([der]), T0 + timedelta(days=10)
    return make


def _from_module(module: str, index: int) -> Callable[[], Sample]:
    """The `index`-th sample of `firmware.demo.issuers.<module>.bench_samples()`."""
    def make() -> Sample:
        return importlib.import_module(f"firmware.demo.issuers.{module}").bench_samples()[index]
    return make


# format name -> sample maker. Other formats add their own entry here.
SAMPLES: dict[str, Callable[[], Sample]] = {
    "dcc_es256": _dcc_sample("ec"),
    "dcc_ps256": _dcc_sample("rsa"),
    "shc": _from_module("shc", 0),
    "shc_2chunk": _from_module("shc", 1),
    "nzcp": _from_module("nzcp", 0),
    "status_es256": _from_module("status", 0),
    "status_eddsa": _from_module("status", 1),
}


def _rate(call: Callable[[], Any], seconds: float) -> float:
    call()  # warm caches (schema compile, imports)
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            call()
        count += 20
    return count / (time.perf_counter() - start)


def _reference_verifier(der: bytes) -> Callable[[str], bool] | None:
    """CovidPyLib's DCCVerifier loaded from its file (its package __init__ needs libzbar)."""
    spec = importlib.util.find_spec("covidpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "verifier.py"
    module_spec = importlib.util.spec_from_file_location("covidpy_verifier", path)
    if module_spec is None or module_spec.loader is None:
        return None
    try:
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        verifier = module.DCCVerifier(True, True)  # no scheduled network refresh
    except Exception as exc:  # noqa: BLE001 - the comparison is optional
        print(f"reference verifier unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    verifier.append_kid(base64.b64encode(dcc_kid(der)).decode(), base64.b64encode(spki).decode())

    import cbor2
    from cose.headers import KID
    from cose.messages import Sign1Message

    def check(text: str) -> bool:
        # covidpy's is_valid() step by step: its CoseMessage.decode() refuses the tuples that
        # cbor2 >= 6 returns inside tags, so the message is built with from_cose_obj instead.
        tagged = cbor2.loads(zlib.decompress(b45decode(text[4:])))
        message = Sign1Message.from_cose_obj(list(tagged.value), True)
        kid = message.phdr[KID] if KID in message.phdr else message.uhdr[KID]
        key = verifier.kids.get(base64.b64encode(kid).decode("ascii"))
        if key is None:
            return False
        message.key = key
        return bool(message.verify_signature())
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    for name, make in SAMPLES.items():
        text, trust, at = make()
        verdict = verify(text, trust, at)
        if not verdict.valid:
            raise SystemExit(f"{name}: sample does not verify ({verdict.failure})")
        figures[f"{name}_per_s"] = round(_rate(lambda: verify(text, trust, at), args.seconds), 1)
        print(f"{name:<12} ours       {figures[f'{name}_per_s']:>9.1f} /s")
        if name.startswith("dcc_"):
            der = next(iter(trust.dcc_signers.values()))[0].der
            reference = _reference_verifier(der)
            if reference is None:
                figures[f"{name}_reference_per_s"] = None
                continue
            if not reference(text):
                raise SystemExit(f"{name}: the reference verifier rejects the sample")
            rate = _rate(lambda: reference(text), args.seconds)
            figures[f"{name}_reference_per_s"] = round(rate, 1)
            figures[f"{name}_ratio_ours_to_reference"] = round(figures[f"{name}_per_s"] / rate, 3)
            print(f"{name:<12} covidpylib {rate:>9.1f} /s  (signature only)")
    figures["reference"] = "CovidPyLib 0.1.4 DCCVerifier (pycose 0.9.dev8)"
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
