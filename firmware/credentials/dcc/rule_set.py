"""A synced DCC rule set read rule by rule: a malformed rule fails closed only where it applies."""
from __future__ import annotations

from collections.abc import Mapping

from firmware.credentials.certlogic.rules import RULE_TYPES, Rule, parse_rule, rule_items
from firmware.credentials.certlogic.values import CertLogicError
from firmware.protocol.decoded import Decoded

# Stands for "any" in a refused (Type, Country) pair: a rule whose Country cannot be read may
# be an acceptance rule of the kiosk's country or an invalidation rule of any issuer.
ANY = "*"
RefusedRules = dict[tuple[str, str], str]  # (Type or ANY, COUNTRY or ANY) -> why


def load_rule_set(content: Decoded) -> tuple[list[Rule], RefusedRules]:
    """The usable rules of a rule-set document, and where the unusable ones applied.

    Dropping a malformed rule silently could loosen the set (an acceptance rule gone, or an
    older version of it run instead), so each refused rule is kept as a (Type, Country) pair
    that the rules stage denies with DCC_RULES_UNAVAILABLE; every other country's rules, and
    so every other issuer's holders, are unaffected.
    """
    try:
        items = rule_items(content)  # the same unwrapping (and strict JSON) as parse_rules
    except CertLogicError as exc:
        return [], {(ANY, ANY): str(exc)}
    rules: list[Rule] = []
    refused: RefusedRules = {}
    for index, item in enumerate(items):
        try:
            rules.append(parse_rule(item, index))
        except CertLogicError as exc:
            refused.setdefault(_applies_to(item), str(exc))
    return rules, refused


def _applies_to(item: Decoded) -> tuple[str, str]:
    """(Type, Country) of a rule that could not be parsed, ANY where a field is unreadable."""
    if not isinstance(item, Mapping):
        return ANY, ANY
    kind, country = item.get("Type"), item.get("Country")
    return (kind if kind in RULE_TYPES else ANY,
            country.strip().upper() if isinstance(country, str) and country.strip() else ANY)


def refusal_for(refused: RefusedRules, country: str, issuer: str | None) -> str | None:
    """Why the rules for a DCC of `issuer` checked in `country` cannot be trusted, or None."""
    country, issuer_code = country.upper(), (issuer or "").upper()
    for (kind, where), why in refused.items():
        if where == ANY:
            return f"a rule of unknown country was refused: {why}"
        if where == country and kind in ("Acceptance", ANY):
            return f"a rule of {where} was refused: {why}"
        if where == issuer_code and kind in ("Invalidation", ANY):
            return f"an invalidation rule of {where} was refused: {why}"
    return None
