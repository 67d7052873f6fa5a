"""EU DCC business rules: parse the gateway rule JSON, select the rules that apply, run them.

A rule is the gateway's JSON object (Identifier, Type, Country, Region, Version, SchemaVersion,
Engine, EngineVersion, CertificateType, Description, ValidFrom, ValidTo, AffectedFields, Logic).
Rules run against `{"payload": <DCC JSON>, "external": <parameters>}` (see `external.py`) and
give PASS, FAIL or OPEN; an evaluation error is OPEN, as in the reference verifier apps. The
validation clock is always an argument: nothing here reads the system time.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from firmware.credentials.certlogic.datetimes import from_datetime, parse_date_time
from firmware.credentials.certlogic.engine import evaluate
from firmware.credentials.certlogic.validation import validate
from firmware.credentials.certlogic.values import CertLogicError, DateTime, described
from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.finite_json import within_budget

log = logging.getLogger(__name__)

ENGINE = "CERTLOGIC"
# The CertLogic specification version this engine implements. A rule runs when its
# EngineVersion is not newer (as the reference verifiers do; see docs/certlogic.md): published
# rules declare 0.7.5 (certlogic-js's version before the spec had its own), 1.0.0, 1.3.0 ...
ENGINE_VERSION = "1.3.3"
# The payload the rules walk (`var`, `in`, `reduce`): a DCC has well under 200 values; from the
# HC1 pipeline it is already within dcc.codec.MAX_JSON_NODES.
MAX_DATA_NODES = 1024
MAX_DATA_DEPTH = 16
RULE_TYPES: tuple[str, ...] = ("Acceptance", "Invalidation")
CERTIFICATE_TYPES: tuple[str, ...] = ("General", "Test", "Vaccination", "Recovery")

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)", re.ASCII)


class Outcome(str, enum.Enum):
    """A rule's result: PASS (true), FAIL (false), OPEN (could not be decided)."""

    PASS = "PASS"
    FAIL = "FAIL"
    OPEN = "OPEN"


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a semantic version such as "1.0.0" or "1.2.3-beta"."""
    match = _VERSION.match(text) if isinstance(text, str) else None
    if match is None:
        raise CertLogicError(f"not a semantic version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


@dataclass(frozen=True)
class Rule:
    """One business rule, parsed from the gateway format."""

    identifier: str
    type: str
    country: str
    region: str
    version: str
    schema_version: str
    engine: str
    engine_version: str
    certificate_type: str
    descriptions: Mapping[str, str]
    valid_from: DateTime
    valid_to: DateTime
    affected_fields: tuple[str, ...]
    logic: Decoded
    # Problems the validator found in `logic` (the rule then always gives OPEN).
    logic_problems: tuple[str, ...] = ()
    # Set by `select_rules` when this engine cannot run the rule (it then gives OPEN).
    open_reason: str | None = None

    def __hash__(self) -> int:
        # Logic and descriptions are dicts: hash the identity of the rule version instead.
        return hash((self.identifier, self.type, self.country, self.region, self.version))

    @property
    def version_key(self) -> tuple[int, int, int]:
        return parse_version(self.version)

    def description(self, lang: str = "en") -> str:
        """The description in `lang`, else English, else any, else the identifier."""
        return (self.descriptions.get(lang) or self.descriptions.get("en")
                or next(iter(self.descriptions.values()), self.identifier))

    def is_valid_at(self, at: DateTime) -> bool:
        """ValidFrom <= at < ValidTo."""
        return self.valid_from <= at < self.valid_to

    def engine_problem(self, engine_version: str = ENGINE_VERSION) -> str | None:
        """Why an engine of `engine_version` cannot run this rule, or None when it can."""
        if self.engine.upper() != ENGINE:
            return f"rule engine {self.engine!r} is not {ENGINE}"
        # Only a newer engine version is refused, whatever the major: 0.x rules are the same
        # language (0.x was certlogic-js's release number, not a spec version), and the
        # reference verifiers (dgc-certlogic-android, CovPass) run them.
        ours, theirs = parse_version(engine_version), parse_version(self.engine_version)
        if theirs > ours:
            return (f"rule needs CertLogic engine {self.engine_version}; "
                    f"this engine is {engine_version}")
        return None

    def schema_problem(self, payload: Decoded) -> str | None:
        """Why this rule cannot judge a DCC of the payload's schema version (`ver`), or None.

        As the reference verifier engine: the certificate's schema must have the rule's major
        version and be at least the rule's SchemaVersion (a rule written for fields of schema
        1.3.0 cannot judge a 1.0.0 certificate). A certificate without a readable `ver`, or a
        rule without SchemaVersion (the gateway requires one), cannot be matched: OPEN.
        """
        if not self.schema_version:
            return "rule declares no SchemaVersion"
        version = payload.get("ver") if isinstance(payload, Mapping) else None
        try:
            theirs = parse_version(version) if isinstance(version, str) else None
        except CertLogicError:
            theirs = None
        if theirs is None:
            return "certificate has no schema version (ver)"
        ours = parse_version(self.schema_version)
        if theirs[0] != ours[0] or theirs < ours:
            return f"rule needs DCC schema {self.schema_version}; certificate has {version}"
        return None


class RuleFormatError(CertLogicError):
    """A rule (set) that is not in the gateway's rule format."""


def parse_rules(source: str | bytes | Sequence[Decoded] | Mapping[str, Decoded]) -> list[Rule]:
    """Parse one rule, a list of rules, or `{"rules": [...]}` (JSON text or decoded JSON).

    Raises `RuleFormatError` naming the rule and field when metadata needed to select a rule
    is missing or malformed: dropping such a rule silently could make the kiosk accept what
    the rule would have refused. A `Logic` that is not valid CertLogic is kept, with its
    problems in `logic_problems`, and runs as OPEN.
    """
    return [_parse_rule(item, index) for index, item in enumerate(rule_items(source))]


def rule_items(source: Decoded) -> Sequence[Decoded]:
    """The unparsed rule objects of a rule set: JSON text (strict, finite_json) or decoded JSON,
    one rule, a list of rules or the fleet server's `{"rules": [...]}`; RuleFormatError when it
    is none of these."""
    if isinstance(source, (str, bytes, bytearray)):
        try:
            source = finite_json.loads(source)
        except ValueError as exc:
            raise RuleFormatError(f"rule set is not JSON: {exc}") from None
    if isinstance(source, Mapping) and "Identifier" not in source \
            and isinstance(source.get("rules"), list):
        source = source["rules"]   # the fleet server's `{"rules": [...]}` wrapper
    items = [source] if isinstance(source, Mapping) else source
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise RuleFormatError("a rule set is a JSON object or an array of them")
    return items


def parse_rule(item: Decoded, index: int = 0) -> Rule:
    """One rule object (`index` names it in errors); raises RuleFormatError as parse_rules."""
    return _parse_rule(item, index)


def _parse_rule(item: Decoded, index: int) -> Rule:
    if not isinstance(item, Mapping):
        raise RuleFormatError(f"rule #{index}: not a JSON object")
    label = f"rule #{index} ({item.get('Identifier', '?')})"

    def text(field: str, default: str | None = None) -> str:
        value = item.get(field)
        if value is None and default is not None:
            value = default
        if not isinstance(value, str) or (default is None and not value):
            raise RuleFormatError(f"{label}: {field} must be a non-empty string")
        return value

    def one_of(field: str, allowed: tuple[str, ...]) -> str:
        value = text(field)
        if value not in allowed:
            raise RuleFormatError(f"{label}: {field} must be one of {', '.join(allowed)}")
        return value

    def moment(field: str) -> DateTime:
        try:
            return parse_date_time(text(field))
        except CertLogicError as exc:
            raise RuleFormatError(f"{label}: {field} is not a date-time ({exc})") from None

    def version(field: str) -> str:
        value = text(field)
        try:
            parse_version(value)
        except CertLogicError as exc:
            raise RuleFormatError(f"{label}: {field}: {exc}") from None
        return value

    logic = item.get("Logic")
    if isinstance(logic, str):  # some distributions carry the expression as a JSON string
        try:
            logic = finite_json.loads(logic)
        except ValueError:
            raise RuleFormatError(f"{label}: Logic is a string but not JSON") from None
    if "Logic" not in item:
        raise RuleFormatError(f"{label}: Logic is missing")
    fields = item.get("AffectedFields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise RuleFormatError(f"{label}: AffectedFields must be an array of strings")
    return Rule(
        identifier=text("Identifier"),
        type=one_of("Type", RULE_TYPES),
        country=text("Country").upper(),
        region=text("Region", "").strip().upper(),
        version=version("Version"),
        schema_version=version("SchemaVersion") if item.get("SchemaVersion") else "",
        engine=text("Engine"),
        engine_version=version("EngineVersion"),
        certificate_type=one_of("CertificateType", CERTIFICATE_TYPES),
        descriptions=_descriptions(item.get("Description", []), label),
        valid_from=moment("ValidFrom"),
        valid_to=moment("ValidTo"),
        affected_fields=tuple(fields),
        logic=logic,
        logic_problems=tuple(validate(logic)),
    )


def _descriptions(value: Decoded, label: str) -> dict[str, str]:
    if not isinstance(value, list):
        raise RuleFormatError(f"{label}: Description must be an array")
    result: dict[str, str] = {}
    for entry in value:
        if not (isinstance(entry, Mapping) and isinstance(entry.get("lang"), str)
                and isinstance(entry.get("desc"), str)):
            raise RuleFormatError(f"{label}: each Description needs string lang and desc")
        result.setdefault(entry["lang"], entry["desc"])
    return result


def _instant(at: datetime | DateTime | str) -> DateTime:
    if isinstance(at, DateTime):
        return at
    if isinstance(at, datetime):
        return from_datetime(at)
    if isinstance(at, str):
        return parse_date_time(at)
    raise CertLogicError(f"validation clock must be a datetime, got a {type(at).__name__}")


_SECTIONS = {"v": "Vaccination", "t": "Test", "r": "Recovery"}


def certificate_type_of(payload: Decoded) -> str | None:
    """"Vaccination", "Test" or "Recovery" for a DCC payload with exactly one non-empty
    `v` / `t` / `r` array; None otherwise (no event, or several kinds: not a valid DCC)."""
    if not isinstance(payload, Mapping):
        return None
    kinds = [kind for key, kind in _SECTIONS.items()
             if isinstance(payload.get(key), list) and payload[key]]
    return kinds[0] if len(kinds) == 1 else None


def _certificate_type(cert_type: str) -> str:
    for known in CERTIFICATE_TYPES:
        if isinstance(cert_type, str) and cert_type.lower() == known.lower():
            return known
    raise CertLogicError(f"unknown certificate type {cert_type!r}: "
                         f"expected one of {', '.join(CERTIFICATE_TYPES)}")


def select_rules(rules: Iterable[Rule], country: str, cert_type: str,
                 at: datetime | DateTime | str, engine_version: str = ENGINE_VERSION, *,
                 issuer_country: str | None = None, region: str | None = None) -> list[Rule]:
    """The rules that apply to a certificate of `cert_type` checked in `country` at `at`.

    - Acceptance rules of `country`, plus Invalidation rules of `issuer_country` when given;
    - CertificateType "General" or `cert_type` ("Test", "Vaccination", "Recovery");
    - valid at the injected clock `at` (ValidFrom <= at < ValidTo; a timezone-aware datetime);
    - rules without a Region, plus those of `region` when given;
    - of each (Identifier, Type, Region), only the highest Version.
    A selected rule that an engine of `engine_version` cannot run is kept, not dropped (that
    would loosen the rule set), with `open_reason` set so that `run_rules` reports it OPEN.
    Sorted by Type then Identifier.
    """
    moment = _instant(at)
    wanted_type = _certificate_type(cert_type)
    country = country.upper()
    issuer = issuer_country.upper() if issuer_country else None
    wanted_region = (region or "").strip().upper()
    best: dict[tuple[str, str, str], Rule] = {}
    for rule in rules:
        if rule.type == "Acceptance":
            if rule.country != country:
                continue
        elif issuer is None or rule.country != issuer:
            continue
        if rule.certificate_type not in ("General", wanted_type):
            continue
        if rule.region not in ("", wanted_region) or not rule.is_valid_at(moment):
            continue
        key = (rule.identifier, rule.type, rule.region)
        current = best.get(key)
        if current is None or (rule.version_key, rule.valid_from) > (
                current.version_key, current.valid_from):
            best[key] = rule
    selected = []
    for key in sorted(best):
        rule = best[key]
        problem = rule.engine_problem(engine_version)
        selected.append(dataclasses.replace(rule, open_reason=problem) if problem else rule)
    return sorted(selected, key=lambda r: (r.type, r.identifier, r.region))


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule; `reason` says why it is OPEN (no certificate data in it)."""

    rule: Rule
    outcome: Outcome
    reason: str | None = None

    @property
    def identifier(self) -> str:
        return self.rule.identifier


def run_rules(rules: Iterable[Rule], payload: Decoded, external: Mapping[str, Decoded], *,
              engine_version: str = ENGINE_VERSION,
              reduce_with_data: bool = False) -> list[RuleResult]:
    """Evaluate each rule on `{"payload": payload, "external": external}`; never raises.

    true -> PASS, false -> FAIL; a CertLogic error, a non-boolean result, invalid logic, an
    incompatible engine or DCC schema version (`Rule.schema_problem`) -> OPEN with a reason. `payload` must be JSON-shaped (dicts, lists,
    strings, numbers), e.g. the DCC's hcert claim as decoded from CBOR.
    """
    data = {"payload": payload, "external": dict(external)}
    if not within_budget(payload, MAX_DATA_NODES, MAX_DATA_DEPTH):
        # Every rule walks the data; refuse to decide rather than walk a document this large.
        reason = f"payload has more than {MAX_DATA_NODES} values or nests past {MAX_DATA_DEPTH}"
        return [RuleResult(rule, Outcome.OPEN, reason) for rule in rules]
    results = []
    for rule in rules:
        results.append(_run_one(rule, data, engine_version, reduce_with_data))
    return results


def _run_one(rule: Rule, data: dict[str, Decoded], engine_version: str,
             reduce_with_data: bool) -> RuleResult:
    try:
        reason = rule.open_reason or rule.engine_problem(engine_version)
    except CertLogicError as exc:
        reason = str(exc)
    if reason is None:
        reason = rule.schema_problem(data["payload"])
    if reason is None and rule.logic_problems:
        reason = f"invalid CertLogic: {rule.logic_problems[0]}"
    if reason is not None:
        return RuleResult(rule, Outcome.OPEN, reason)
    try:
        value = evaluate(rule.logic, data, reduce_with_data=reduce_with_data)
    except CertLogicError as exc:
        return RuleResult(rule, Outcome.OPEN, f"evaluation error: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug must not crash the kiosk: OPEN, logged
        log.error("CertLogic internal error in rule %s: %s", rule.identifier, type(exc).__name__)
        return RuleResult(rule, Outcome.OPEN, f"internal error ({type(exc).__name__})")
    if value is True:
        return RuleResult(rule, Outcome.PASS)
    if value is False:
        return RuleResult(rule, Outcome.FAIL)
    return RuleResult(rule, Outcome.OPEN, f"rule evaluated to {described(value)}, not a boolean")


def overall(results: Iterable[RuleResult]) -> Outcome:
    """FAIL if any rule failed, else OPEN if any is open, else PASS (also for no rules: the
    caller decides whether an empty selection is acceptable)."""
    outcomes = {result.outcome for result in results}
    if Outcome.FAIL in outcomes:
        return Outcome.FAIL
    if Outcome.OPEN in outcomes:
        return Outcome.OPEN
    return Outcome.PASS
