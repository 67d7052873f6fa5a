"""Face pipeline: BlazeFace detection, five-point alignment, int8 embedding, cosine matching."""
from __future__ import annotations

from typing import TYPE_CHECKING

from firmware.vision.types import Face

if TYPE_CHECKING:
    from firmware.vision.pipeline import FacePipeline

__all__ = ["Face", "FacePipeline"]


def __getattr__(name: str) -> object:
    # Lazy: importing the package must not pull in OpenCV/LiteRT until a pipeline is wanted.
    if name == "FacePipeline":
        from firmware.vision.pipeline import FacePipeline

        return FacePipeline
    raise AttributeError(name)
