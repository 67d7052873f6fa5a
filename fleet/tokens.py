"""One-time tokens: random, URL-safe, and never starting with '-' (a shell command line would
read such a token as an option: `register --token -x...` fails, 1 token in 64)."""
from __future__ import annotations

import secrets


def new_token(nbytes: int = 24) -> str:
    """`secrets.token_urlsafe(nbytes)` drawn again until it does not start with '-'."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token
