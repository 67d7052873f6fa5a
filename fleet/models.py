"""Request and response shapes of the fleet API (they also generate the OpenAPI document)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from firmware.protocol.decoded import Decoded

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9+/]{43}=$"  # base64 of exactly 32 bytes
TRUST_NAME_API_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


class ErrorResponse(BaseModel):
    error: str = Field(description="Stable reason code, e.g. AUTH_FAILED")
    detail: str = Field(description="Human-readable explanation")


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(pattern=TOKEN_PATTERN, description="One-time enrolment token")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    public_key: str = Field(pattern=PUBLIC_KEY_PATTERN,
                            description="Base64 of the raw 32-byte Ed25519 public key")


class RegisterResponse(BaseModel):
    device_id: str


class WireEvent(BaseModel):
    """One signed event (see docs/fleet-api.md); only documents the shape, the server parses
    the raw body itself because the request signature covers its exact bytes."""
    device_id: str
    seq: int = Field(ge=0, lt=2**53)
    ts: str
    kind: str
    body: dict[str, Decoded]
    prev_hash: str = Field(description="hex SHA-256 of the previous event, 64 zeros first")
    hash: str
    sig: str = Field(description="base64 Ed25519 signature over the canonical content")


class EventBatch(BaseModel):
    events: list[WireEvent] = Field(max_length=1000)


class Rejection(BaseModel):
    seq: int
    reason: str = Field(description="EVENT_BAD_SIGNATURE, EVENT_HASH_MISMATCH, EVENT_FORK, "
                                    "EVENT_CHAIN_BROKEN, EVENT_SEQ_GAP, EVENT_WRONG_DEVICE, "
                                    "EVENT_BAD_SEQ, or the event schema's (firmware/protocol/"
                                    "events.py): EVENT_UNKNOWN_KIND, EVENT_BAD_FIELD, "
                                    "EVENT_NOT_FINITE, EVENT_TOO_DEEP, EVENT_TOO_LARGE, "
                                    "EVENT_PERSONAL_DATA, EVENT_BAD_TIME")


class IngestResponse(BaseModel):
    acked: list[int] = Field(description="Every seq of the batch now durably stored, "
                                         "duplicates included")
    duplicates: int
    rejected: list[Rejection]


class TimeResponse(BaseModel):
    now: str = Field(description="Server time, RFC 3339 UTC with milliseconds")


class HealthResponse(BaseModel):
    status: str
    schema_version: int
    database: str


class TrustEnvelope(BaseModel):
    name: str
    version: int
    issued_at: str
    key_id: str = Field(description="First 16 hex chars of SHA-256 of the raw fleet public key")
    content: Decoded
    sig: str = Field(description="Base64 Ed25519 over canonical JSON of the other fields")
