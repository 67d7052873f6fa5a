"""DCC payload checks: JSON Schema (shipped copy of eu-dcc-schema 1.3.3), one entry type, value sets."""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources

import jsonschema

from firmware.protocol.decoded import Decoded
from firmware.protocol.finite_json import within_budget

SCHEMA_FILE = "DCC.combined-schema.json"
# The validators walk the whole document; the DCC from the pipeline is already within the JSON
# conversion budget (codec.MAX_JSON_NODES), this keeps any other caller's input bounded too.
MAX_SCHEMA_NODES = 1024
MAX_SCHEMA_DEPTH = 16
ENTRY_TYPES = ("v", "t", "r")

# field of an entry -> value-set id whose keys are the allowed codes
VALUESET_FIELDS: dict[str, dict[str, str]] = {
    "v": {"tg": "disease-agent-targeted", "vp": "sct-vaccines-covid-19",
          "mp": "vaccines-covid-19-names", "ma": "vaccines-covid-19-auth-holders",
          "co": "country-2-codes"},
    "t": {"tg": "disease-agent-targeted", "tt": "covid-19-lab-test-type",
          "ma": "covid-19-lab-test-manufacturer-and-name", "tr": "covid-19-lab-result",
          "co": "country-2-codes"},
    "r": {"tg": "disease-agent-targeted", "co": "country-2-codes"},
}


@lru_cache(maxsize=1)
def _schema() -> dict[str, Decoded]:
    text = resources.files(__package__).joinpath("schema_data", SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    """The reference validator (pure Python), built once on first use: explains failures."""
    schema = _schema()
    return jsonschema.validators.validator_for(schema)(schema)


@lru_cache(maxsize=1)
def _fast_is_valid() -> Callable[[Decoded], bool] | None:
    """jsonschema-rs (Rust, ~100x faster) for the yes/no answer when it is installed."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs.validator_for(_schema()).is_valid


def entry_type(dcc: Decoded) -> str | None:
    """"v", "t" or "r" when the DCC holds exactly one kind of entry with exactly one item."""
    if not isinstance(dcc, dict):
        return None
    present = [key for key in ENTRY_TYPES if key in dcc]
    if len(present) != 1:
        return None
    return present[0]


def schema_problem(dcc: Decoded) -> str | None:
    """None when the DCC is valid against the schema and holds one certificate; else why.

    The reason names the failing place in the document, never its value (it may be personal).
    """
    if not isinstance(dcc, dict):
        return "payload is not a JSON object"
    if not within_budget(dcc, MAX_SCHEMA_NODES, MAX_SCHEMA_DEPTH):
        return f"more than {MAX_SCHEMA_NODES} values or deeper than {MAX_SCHEMA_DEPTH}"
    fast = _fast_is_valid()
    if fast is None or not fast(dcc):
        error = jsonschema.exceptions.best_match(_validator().iter_errors(dcc))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(document)"
            return f"schema: {where}: {error.validator} check failed"
        if fast is not None:  # the two validators disagree: refuse, never accept on doubt
            return "schema: rejected by the fast validator"
    kind = entry_type(dcc)
    if kind is None:
        return "holds more than one kind of certificate"
    if len(dcc[kind]) != 1:
        return "holds more than one certificate entry"
    return None


def valueset_problem(dcc: dict[str, Decoded], valuesets: dict[str, Decoded]) -> str | None:
    """None when every coded field of the entry is a known code of its value set; else which."""
    kind = entry_type(dcc)
    if kind is None:
        return "no single entry to check"
    entry = dcc[kind][0]
    for field_name, set_id in VALUESET_FIELDS[kind].items():
        if field_name not in entry or set_id not in valuesets:
            continue  # optional field, or value set not cached: the schema already checked form
        values = valuesets[set_id]
        codes = values.get("valueSetValues", values) if isinstance(values, dict) else {}
        if entry[field_name] not in codes:
            return f"{kind}/0/{field_name}: code not in value set {set_id}"
    return None
