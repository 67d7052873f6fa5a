"""The `external` parameters a DCC business rule sees, built from injected values only.

`{"payload": <DCC>, "external": {validationClock, valueSets, countryCode, exp, iat,
issuerCountryCode, kid, region}}` is the data context of the EU reference verifier apps.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from firmware.credentials.certlogic.datetimes import format_validation_clock
from firmware.credentials.certlogic.values import CertLogicError
from firmware.protocol.decoded import Decoded


def _timestamp(value: datetime | int | float | None) -> str | None:
    """A CWT time (seconds since the epoch) or an aware datetime as an ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_validation_clock(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_validation_clock(datetime.fromtimestamp(value, tz=timezone.utc))
    raise CertLogicError(f"a timestamp must be a datetime or epoch seconds, not {type(value).__name__}")


def build_external(validation_clock: datetime, value_sets: Mapping[str, list[str]],
                   country_code: str, *, exp: datetime | int | None = None,
                   iat: datetime | int | None = None, issuer_country_code: str = "",
                   kid: bytes | str = "", region: str = "") -> dict[str, Decoded]:
    """The `external` object for `run_rules`.

    `validation_clock` is the injected, timezone-aware time of the check (never read here from
    the system); `value_sets` maps a value-set id to its codes (see `compress_value_sets`);
    `exp`/`iat` are the CWT claims (epoch seconds or datetimes); `kid` the COSE key id.
    """
    return {
        "validationClock": format_validation_clock(validation_clock),
        "valueSets": {key: list(codes) for key, codes in value_sets.items()},
        "countryCode": country_code.upper(),
        "exp": _timestamp(exp),
        "iat": _timestamp(iat),
        "issuerCountryCode": issuer_country_code.upper(),
        "kid": base64.b64encode(kid).decode("ascii") if isinstance(kid, (bytes, bytearray)) else kid,
        "region": region,
    }


def compress_value_sets(documents: Iterable[Mapping[str, Decoded]]) -> dict[str, list[str]]:
    """EU value-set documents (`{valueSetId, valueSetValues: {code: {...}}}`) in the
    "compressed" form rules use: value-set id -> its codes, in document order (rules may
    index into them, e.g. `external.valueSets.covid-19-lab-result.0`)."""
    compressed: dict[str, list[str]] = {}
    for document in documents:
        set_id, values = document.get("valueSetId"), document.get("valueSetValues")
        if not isinstance(set_id, str) or not isinstance(values, Mapping):
            raise CertLogicError("not an EU value-set document (valueSetId, valueSetValues)")
        compressed[set_id] = list(values)
    return compressed


def load_value_sets(directory: Path) -> dict[str, list[str]]:
    """Compressed value sets from every value-set JSON file in `directory`."""
    documents = []
    for path in sorted(Path(directory).glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and "valueSetId" in document:
            documents.append(document)
    return compress_value_sets(documents)
