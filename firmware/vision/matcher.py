"""Face template matching: 1:1 against an enrolled template and 1:N over an in-memory gallery."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

# Reason codes of a refused comparison (stable: the kiosk logs and displays them).
INVALID_TEMPLATE = "INVALID_TEMPLATE"
DIMENSION_MISMATCH = "DIMENSION_MISMATCH"


class TemplateError(ValueError):
    """A template is not a finite, non-zero 1-D vector of the expected length."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalise_template(template: object, dim: int | None = None) -> np.ndarray:
    """Return `template` as a float32 unit vector; raise TemplateError if it cannot be one."""
    try:
        vec = np.asarray(template, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TemplateError(INVALID_TEMPLATE, f"template is not numeric: {exc}") from None
    if vec.ndim != 1 or vec.size == 0:
        raise TemplateError(INVALID_TEMPLATE, f"template must be a 1-D vector, got shape {vec.shape}")
    if dim is not None and vec.size != dim:
        raise TemplateError(DIMENSION_MISMATCH, f"template has {vec.size} values, expected {dim}")
    if not np.all(np.isfinite(vec)):
        raise TemplateError(INVALID_TEMPLATE, "template contains NaN or infinity")
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    if norm < 1e-6:
        raise TemplateError(INVALID_TEMPLATE, "template has zero length")
    return (vec / np.float32(norm)).astype(np.float32)


def cosine_similarity(a: object, b: object) -> float:
    """Cosine similarity of two templates in [-1, 1]; raises TemplateError on bad input."""
    va = normalise_template(a)
    vb = normalise_template(b, dim=va.size)
    return float(np.clip(np.dot(va.astype(np.float64), vb.astype(np.float64)), -1.0, 1.0))


@dataclass(frozen=True)
class MatchResult:
    """Outcome of a 1:1 comparison. `match` is False whenever `reason` is set."""

    match: bool
    score: float
    threshold: float
    reason: str | None = None


def match_1to1(template: object, enrolled: object, threshold: float) -> MatchResult:
    """Compare a live template with an enrolled one: a match when cosine >= threshold.

    Never raises on bad templates: a refused comparison is a non-match with a reason code,
    so a corrupt record can never turn into an accept.
    """
    if not np.isfinite(threshold):
        return MatchResult(False, float("nan"), float(threshold), INVALID_TEMPLATE)
    try:
        score = cosine_similarity(template, enrolled)
    except TemplateError as exc:
        return MatchResult(False, float("nan"), float(threshold), exc.reason)
    return MatchResult(score >= threshold, score, float(threshold))


class Gallery:
    """Opted-in members' templates as one float32 matrix of unit rows, searched by one product.

    Identification over N templates is a single (N, d) x (d,) matrix-vector product followed by a
    partial sort, so 100,000 templates take a few milliseconds on a Pi-class CPU. Rows are kept
    in a pre-allocated buffer that doubles when full, so adding one member is amortised O(d).
    """

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._matrix = np.zeros((max(capacity, 1), dim), dtype=np.float32)
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._row_of

    @property
    def member_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def matrix(self) -> np.ndarray:
        """Read-only view of the live rows (N, dim)."""
        view = self._matrix[: len(self._ids)]
        view.flags.writeable = False
        return view

    def template(self, member_id: str) -> np.ndarray:
        """A copy of one member's stored unit template."""
        return self._matrix[self._row_of[member_id]].copy()

    def add(self, member_id: str, template: object) -> None:
        """Insert or replace a member's template (normalised on the way in)."""
        if not isinstance(member_id, str) or not member_id:
            raise ValueError("member_id must be a non-empty string")
        vec = normalise_template(template, dim=self.dim)
        row = self._row_of.get(member_id)
        if row is None:
            row = len(self._ids)
            if row == self._matrix.shape[0]:
                grown = np.zeros((2 * row, self.dim), dtype=np.float32)
                grown[:row] = self._matrix[:row]
                self._matrix = grown
            self._ids.append(member_id)
            self._row_of[member_id] = row
        self._matrix[row] = vec

    def add_many(self, items: Iterable[tuple[str, object]]) -> None:
        """Insert or replace many members at once (vectorised: 100,000 rows in well under a second).

        All-or-nothing: one bad template or id raises before the gallery changes.
        """
        ids: list[str] = []
        rows: list[np.ndarray] = []
        for member_id, template in items:
            if not isinstance(member_id, str) or not member_id:
                raise ValueError("member_id must be a non-empty string")
            ids.append(member_id)
            rows.append(np.asarray(template, dtype=np.float32))
        if not ids:
            return
        try:
            block = np.stack(rows)
        except ValueError:
            raise TemplateError(DIMENSION_MISMATCH, "templates differ in length") from None
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise TemplateError(DIMENSION_MISMATCH, f"templates must have {self.dim} values")
        if not np.all(np.isfinite(block)):
            raise TemplateError(INVALID_TEMPLATE, "a template contains NaN or infinity")
        norms = np.linalg.norm(block.astype(np.float64), axis=1)
        if np.any(norms < 1e-6):
            raise TemplateError(INVALID_TEMPLATE, "a template has zero length")
        block = (block / norms[:, None]).astype(np.float32)
        # later duplicates win, as with repeated add()
        last_row_of = {member_id: i for i, member_id in enumerate(ids)}
        new_ids = [m for m, i in last_row_of.items() if m not in self._row_of]
        needed = len(self._ids) + len(new_ids)
        if needed > self._matrix.shape[0]:
            grown = np.zeros((max(needed, 2 * self._matrix.shape[0]), self.dim), dtype=np.float32)
            grown[: len(self._ids)] = self._matrix[: len(self._ids)]
            self._matrix = grown
        for member_id in new_ids:
            self._row_of[member_id] = len(self._ids)
            self._ids.append(member_id)
        targets = np.fromiter((self._row_of[m] for m in last_row_of), dtype=np.int64, count=len(last_row_of))
        sources = np.fromiter(last_row_of.values(), dtype=np.int64, count=len(last_row_of))
        self._matrix[targets] = block[sources]

    def remove(self, member_id: str) -> bool:
        """Erase a member from memory (the row is overwritten); returns whether it was present."""
        row = self._row_of.pop(member_id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:  # move the last row into the hole to keep the matrix dense
            moved_id = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved_id
            self._row_of[moved_id] = row
        self._matrix[last] = 0.0  # do not leave the erased template in the buffer
        self._ids.pop()
        return True

    def scores(self, template: object) -> np.ndarray:
        """Cosine similarity of `template` with every member, in row order."""
        vec = normalise_template(template, dim=self.dim)
        return self._matrix[: len(self._ids)] @ vec

    def identify(self, template: object, top_k: int = 1) -> list[tuple[str, float]]:
        """The `top_k` most similar members as (member_id, score), best first.

        Raises TemplateError on a bad template; an empty gallery gives an empty list.
        """
        n = len(self._ids)
        if n == 0 or top_k <= 0:
            normalise_template(template, dim=self.dim)  # still reject bad input loudly
            return []
        sims = self.scores(template)
        k = min(top_k, n)
        if k < n:
            candidates = np.argpartition(-sims, k - 1)[:k]
        else:
            candidates = np.arange(n)
        order = candidates[np.argsort(-sims[candidates], kind="stable")]
        return [(self._ids[i], float(sims[i])) for i in order]

    def best_match(self, template: object, threshold: float) -> tuple[str, float] | None:
        """The single best member if its score reaches `threshold`, else None."""
        top = self.identify(template, top_k=1)
        if top and top[0][1] >= threshold:
            return top[0]
        return None
