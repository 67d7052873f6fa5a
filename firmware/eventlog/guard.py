"""Privacy and shape guard for event bodies (no names, birth dates, raw credential ids); encoding."""
from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from firmware.eventlog.codec import canonical_json

# Keys are compared after lower-casing and dropping "_", "-" and spaces, so "credential_id",
# "credentialId" and "Credential-ID" all match. These are the personal fields of the credential
# formats we read (DCC nam/fn/gn/fnt/gnt/dob, ci/uvci; SHC name/birthDate; NZCP givenName,
# familyName, dob; JWT/CWT jti) and their plain-English spellings.
FORBIDDEN_KEYS = frozenset({
    "nam", "name", "fn", "gn", "fnt", "gnt", "givenname", "familyname", "surname", "forename",
    "dob", "birth", "birthdate", "dateofbirth",
    "ci", "uvci", "credentialid", "certificateid", "jti", "cti",
})
# Any key containing these fragments is refused too ("first_name", "holder_birth_year").
FORBIDDEN_FRAGMENTS = ("name", "birth")
# String values that are, or carry, a raw credential or its identifier.
FORBIDDEN_VALUE = re.compile(r"(URN:UVCI:|^HC1:|^shc:/|^NZCP:/)", re.IGNORECASE)

MAX_BODY_BYTES = 8 * 1024  # characters of canonical JSON
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
MAX_DEPTH = 8


class BodyRejected(ValueError):
    """The body may not be logged; `code` is a stable reason, the message names the key path."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_DROP = str.maketrans("", "", " \t\n_-")


@functools.lru_cache(maxsize=1024)  # bodies reuse a handful of keys; this runs per append
def _forbidden_key(key: str) -> bool:
    normal = key.translate(_DROP).lower()
    return normal in FORBIDDEN_KEYS or any(part in normal for part in FORBIDDEN_FRAGMENTS)


def check_kind(kind: object) -> None:
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        raise BodyRejected("EVENTLOG_BAD_KIND",
                           "event kind must be 1-64 chars of a-z, 0-9, '_' or '.', starting a-z")


def is_plainly_clean(body: object, depth: int = 0) -> bool:
    """True when check_body() would surely accept `body`: the fast path of every append.

    It applies the same rules without building key paths for messages, and answers False (let
    check_body decide, and word the refusal) whenever it is unsure: a key that is not exactly a
    str, a value whose type is not exactly a JSON type (subclasses, tuples), anything refused.
    So it can only ever send more bodies through the careful check, never fewer.
    """
    if depth > MAX_DEPTH:
        return False
    values: Collection[object]
    if type(body) is dict:
        for key in body:
            if type(key) is not str or _forbidden_key(key):
                return False
        values = body.values()
    elif type(body) is list:
        values = body
    else:
        return _plain_scalar(body)
    if not values:
        return True
    if depth + 1 > MAX_DEPTH:  # check_body refuses any value below the deepest level
        return False
    for value in values:
        kind = type(value)
        if kind is dict or kind is list:
            if not is_plainly_clean(value, depth + 1):
                return False
        elif not _plain_scalar(value):
            return False
    return True


def _plain_scalar(value: object) -> bool:
    if type(value) is str:
        return FORBIDDEN_VALUE.search(value) is None
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int or type(value) is bool or value is None


def check_body(body: object, path: str = "body", depth: int = 0) -> None:
    """Raise BodyRejected for a forbidden key or value, or for values JSON cannot carry exactly.

    Messages name where the problem is, never the offending value (it may be personal data).
    """
    if depth > MAX_DEPTH:
        raise BodyRejected("EVENTLOG_BAD_BODY", f"{path}: nested deeper than {MAX_DEPTH}")
    if isinstance(body, dict):
        for key, value in body.items():
            if not isinstance(key, str):
                raise BodyRejected("EVENTLOG_BAD_BODY", f"{path}: keys must be strings")
            if _forbidden_key(key):
                raise BodyRejected("EVENTLOG_FORBIDDEN_FIELD",
                                   f"{path}.{key}: personal data may not be logged")
            check_body(value, f"{path}.{key}", depth + 1)
    elif isinstance(body, (list, tuple)):
        for index, value in enumerate(body):
            check_body(value, f"{path}[{index}]", depth + 1)
    elif isinstance(body, str):
        if FORBIDDEN_VALUE.search(body):
            raise BodyRejected("EVENTLOG_FORBIDDEN_FIELD",
                               f"{path}: looks like a raw credential or its identifier")
    elif isinstance(body, float):
        if not math.isfinite(body):  # NaN/Infinity are not JSON; the server could not parse them
            raise BodyRejected("EVENTLOG_BAD_BODY", f"{path}: non-finite number")
    elif body is not None and not isinstance(body, (bool, int)):
        raise BodyRejected("EVENTLOG_BAD_BODY", f"{path}: {type(body).__name__} is not JSON")


@dataclass(frozen=True)
class Prepared:
    """A body that may be logged, ready to sign and store once its seq is known."""

    kind: str
    body: dict[str, Any]  # parsed back from `text`: exactly what is signed and returned
    text: str  # canonical JSON of the body


def prepare(kind: object, body: object) -> Prepared:
    """Check kind and body and encode the body: all of an append that needs no lock.
    Raises BodyRejected with the reason code."""
    check_kind(kind)
    if not isinstance(body, dict):
        raise BodyRejected("EVENTLOG_BAD_BODY", "body must be a JSON object")
    if not is_plainly_clean(body):
        check_body(body)  # the careful walk: refuses naming the key path, or accepts
    text = canonical_json(body).decode()
    if len(text) > MAX_BODY_BYTES:
        raise BodyRejected("EVENTLOG_BAD_BODY", f"body larger than {MAX_BODY_BYTES} bytes")
    # What is stored is exactly what is signed and returned (tuples become lists etc.).
    return Prepared(kind, json.loads(text), text)  # type: ignore[arg-type]
