"""Test helpers: credentials signed with throwaway keys, packed in every container people carry."""
from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import segno
from PIL import Image

from firmware.demo.issuers.dcc import issue_dcc
from firmware.credentials.shc.codec import jws_to_numeric, jws_to_qr_texts
from firmware.demo.issuers.shc import sign_compact_jws
from firmware.demo.issuers.shc import DemoIssuer, card_claims, new_issuer
from firmware.credentials.trust import TrustStore, dcc_kid
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

AT = T0 + timedelta(days=10)  # inside both the DCC's and the cards' validity
DCC_ISSUER = "XA"  # the CWT iss claim: a country code


@dataclass
class Credentials:
    """One DCC and one SHC issuer, the texts they issued, and a trust folder for both."""

    hc1: str
    dcc_kid_hex: str
    shc_issuer: DemoIssuer
    trust_dir: Path

    def jws(self, doses: int = 1, rid: str | None = None) -> str:
        nbf = (T0 - timedelta(days=1)).timestamp()
        return sign_compact_jws(card_claims(self.shc_issuer.iss, nbf, doses=doses, rid=rid),
                                self.shc_issuer.key)

    def store(self) -> TrustStore:
        from firmware.credentials.store import load_trust_dir
        return load_trust_dir(self.trust_dir)


def make_credentials(folder: Path) -> Credentials:
    """Sign a DCC and set up an SHC issuer; write the trust folder that accepts both."""
    key = make_key("ec")
    der = make_cert(key)
    kid = dcc_kid(der)
    hc1 = issue_dcc(vaccination(), key, kid, T0, T0 + timedelta(days=365), issuer=DCC_ISSUER)
    issuer = new_issuer()
    trust = folder / "trust"
    (trust / "dcc-certs").mkdir(parents=True)
    (trust / "dcc-certs" / "signer.der").write_bytes(der)
    info = {"issuerInfo": [{"issuer": {"iss": issuer.iss, "name": "Test issuer"},
                            "keys": [issuer.jwk]}]}
    (trust / "shc-issuers.json").write_text(json.dumps(info))
    return Credentials(hc1, kid.hex(), issuer, trust)


def shc_texts(jws: str) -> list[str]:
    """The `shc:/` QR texts of a JWS (several chunks when it is long)."""
    return jws_to_qr_texts(jws)


def chunked(jws: str, count: int) -> list[str]:
    """The JWS split into exactly `count` `shc:/C/N/` chunks (the spec's balanced split)."""
    size = -(-len(jws) // count)
    parts = [jws[i:i + size] for i in range(0, len(jws), size)]
    assert len(parts) == count
    return [f"shc:/{i}/{count}/{jws_to_numeric(p)}" for i, p in enumerate(parts, 1)]


def shuffled(items: list[str], seed: int = 7) -> list[str]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def qr_image(text: str, kind: str = "png", transparent: bool = False) -> bytes:
    """A QR code image of `text`: PNG, RGBA PNG whose light modules are transparent black
    (as some apps export it), or JPEG."""
    buffer = io.BytesIO()
    segno.make(text, error="l", micro=False).save(buffer, kind="png", scale=4, border=4)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    out = io.BytesIO()
    if transparent:
        dark = np.asarray(image.convert("L")) < 128
        rgba = np.zeros(dark.shape + (4,), dtype=np.uint8)  # light modules: transparent black
        rgba[dark, 3] = 255  # dark modules: opaque black
        Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    elif kind == "jpeg":
        image.save(out, format="JPEG", quality=90)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def pdf_pages(*pages: bytes | None, size: tuple[int, int] = (600, 800)) -> bytes:
    """A PDF (rendered by Pillow) with one page per image (None: a blank page)."""
    rendered: list[Any] = []
    for image in pages:
        page = Image.new("RGB", size, "white")
        if image is not None:
            code = Image.open(io.BytesIO(image)).convert("RGB")
            page.paste(code, (50, 50))
        rendered.append(page)
    out = io.BytesIO()
    rendered[0].save(out, format="PDF", save_all=True, append_images=rendered[1:], resolution=72)
    return out.getvalue()


def smart_health_card_file(jws_list: list[Any]) -> str:
    return json.dumps({"verifiableCredential": jws_list})


def fhir_parameters(jws_list: list[Any]) -> str:
    """A `$health-cards-issue` response: verifiableCredential parameters and a resourceLink."""
    parameters: list[dict[str, Any]] = [{"name": "verifiableCredential", "valueString": jws}
                                        for jws in jws_list]
    parameters.append({"name": "resourceLink", "part": [
        {"name": "vcIndex", "valueInteger": 0},
        {"name": "bundledResource", "valueUri": "resource:0"},
        {"name": "hostedResource", "valueUri": "https://fhir.example.org/Immunization/123"}]})
    return json.dumps({"resourceType": "Parameters", "parameter": parameters})


def at_iso(at: datetime = AT) -> str:
    return at.isoformat()
