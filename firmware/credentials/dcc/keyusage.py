"""Key usage: which DCC types (test / vaccination / recovery) a signing certificate may sign."""
from __future__ import annotations

# Both spellings are in real certificates: the specified one and one with an extra ".0" arc.
TYPE_OIDS: dict[str, frozenset[str]] = {
    "t": frozenset({"1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"}),
    "v": frozenset({"1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"}),
    "r": frozenset({"1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"}),
}
ALL_DCC_OIDS = frozenset().union(*TYPE_OIDS.values())
TYPE_NAMES = {"t": "test", "v": "vaccination", "r": "recovery"}


def problem(eku_oids: frozenset[str], entry_type: str | None) -> str | None:
    """None when a certificate with these EKU OIDs may sign a DCC of `entry_type`; else why.

    A certificate with none of the DCC OIDs may sign any type (hcert spec, annex A.4).
    """
    if entry_type not in TYPE_OIDS:
        return "the DCC does not hold exactly one kind of entry"
    relevant = eku_oids & ALL_DCC_OIDS
    if not relevant:
        return None
    if relevant & TYPE_OIDS[entry_type]:
        return None
    return f"signing certificate is not allowed to sign {TYPE_NAMES[entry_type]} certificates"
