"""Tokens a technician types never start with '-', which a command line reads as an option."""
from __future__ import annotations

from typing import Any

import pytest

import fleet.tokens
from fleet.tokens import new_token


def test_a_token_that_would_start_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(["-starts-with-a-dash", "--two", "fine-token"])
    monkeypatch.setattr(fleet.tokens.secrets, "token_urlsafe", lambda nbytes: next(drawn))
    assert new_token() == "fine-token"


def test_tokens_are_url_safe_and_long(monkeypatch: Any) -> None:
    tokens = {new_token() for _ in range(2000)}  # about 31 would start with '-' unchecked
    assert len(tokens) == 2000
    assert all(not token.startswith("-") and len(token) == 32 for token in tokens)
