"""The one name for values whose shape the type checker cannot know.

`Decoded` is a value decoded from outside input (JSON, CBOR, TOML: trust files, envelopes,
credentials, claims, CertLogic rules and the data they run on, configuration), or a JSON value
built to be encoded (event bodies, signed statements, status snapshots). Its shape is checked with
isinstance where it is used; nothing may assume it.

Every other annotation in firmware/, fleet/ and provisioning/ names a precise type. The few `Any`
that a third-party type forces (pyserial, picamera2, LiteRT, the database drivers' values, Jinja's
context, stdlib signatures) say why in a `# Any:` comment on their line; tests/test_typing_any.py
enforces that.
"""
from __future__ import annotations

from typing import Any

Decoded = Any  # Any: a value decoded from outside input (JSON, CBOR): its shape is checked with isinstance where it is used
