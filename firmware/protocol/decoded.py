"""The one name for values whose shape the type checker cannot know.

`Decoded` is a value decoded from outside input (JSON, CBOR: trust files, envelopes, credentials,
claims, CertLogic rules and the data they run on, with the values an evaluation computes from
them), or a JSON value built to be encoded (event bodies, signed statements). Its shape is
checked with isinstance where it is used; nothing may assume it. Every other annotation in firmware/credentials,
firmware/protocol and firmware/setup names a precise type, so each remaining `Any` is auditable
by searching for `Decoded`.
"""
from __future__ import annotations

from typing import Any

Decoded = Any  # a value decoded from outside input (JSON, CBOR): its shape is checked with isinstance where it is used
