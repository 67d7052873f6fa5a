"""TFLite model wrapper: one interpreter per model, loaded once, with int8 (de)quantisation."""
from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from firmware.protocol.decoded import Decoded


# The TFLite runtime's C++ side prints this to fd 2 on every interpreter it creates; in the demo
# and `healthgate run` it reads like a problem. Only this line is dropped: anything else the
# runtime writes there while loading is passed on.
DELEGATE_BANNER = re.compile(rb"^INFO: Created TensorFlow Lite .*delegate for CPU\.?\s*$")


@contextmanager
def _without_delegate_banner() -> Iterator[None]:
    """Run the block with fd 2 going into a pipe (never a file: nothing of a model load touches
    the disk), then write back every line but the delegate banner. A thread drains the pipe, so
    a chatty runtime cannot block on a full one."""
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, name="stderr-filter", daemon=True)
    reader.start()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        os.dup2(saved, 2)  # the pipe's last writer closes here: the reader sees its end
        os.close(saved)
        reader.join()
        os.close(read_end)
        kept = [line for line in b"".join(chunks).splitlines(keepends=True)
                if not DELEGATE_BANNER.match(line)]
        if kept:
            os.write(2, b"".join(kept))


class ModelLoadError(RuntimeError):
    """A model file is missing, unreadable or not a usable TFLite flatbuffer."""


def _interpreter_class() -> Callable[..., Any]:  # Any: LiteRT ships no types
    """Return the first available Interpreter class.

    LiteRT (ai-edge-litert) is preferred; tflite-runtime is the fallback for older Pi OS images;
    full TensorFlow is last, only so that the build venv (which has TF but not LiteRT) can run
    the same code.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore[import-not-found]

        return tf.lite.Interpreter  # type: ignore[no-any-return]
    except ImportError as exc:
        raise ModelLoadError(
            "no TFLite interpreter: install ai-edge-litert (or tflite-runtime on armv7)"
        ) from exc


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and affine quantisation (scale, zero point) of one model tensor."""

    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantised(self) -> bool:
        return self.dtype in (np.dtype(np.int8), np.dtype(np.uint8)) and self.scale > 0


class TFLiteModel:
    """A loaded TFLite model that takes one float input and returns float outputs.

    Quantisation is handled here so that callers always see float32 arrays: inputs are
    quantised with the input tensor's (scale, zero point), outputs are dequantised. The
    interpreter is not thread-safe, so calls are serialised with a lock.
    """

    def __init__(self, path: str | Path, num_threads: int = 2) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        try:
            model_bytes = self.path.read_bytes()
            interpreter_cls = _interpreter_class()
            # model_content keeps the interpreter independent of the file after load.
            with _without_delegate_banner():
                self._interpreter = interpreter_cls(
                    model_content=model_bytes, num_threads=max(1, int(num_threads))
                )
                self._interpreter.allocate_tensors()
        except ModelLoadError:
            raise
        except Exception as exc:  # the interpreters raise ValueError/RuntimeError variously
            raise ModelLoadError(f"cannot load TFLite model {self.path.name}: {exc}") from exc
        self.inputs = [self._spec(d) for d in self._interpreter.get_input_details()]
        self.outputs = [self._spec(d) for d in self._interpreter.get_output_details()]
        if len(self.inputs) != 1:
            raise ModelLoadError(f"{self.path.name}: expected one input, got {len(self.inputs)}")
        self._lock = threading.Lock()
        # Pixels 0..255 reach an int8 input with scale 1 and zero point -128 as pixel - 128, which
        # is the pixel byte with its top bit flipped: one XOR instead of a float round trip
        # (0.3 ms per 150x150 chip on the dev box, more than a detector pass's decode).
        spec = self.inputs[0]
        self._pixels_by_xor = (
            spec.dtype == np.dtype(np.int8) and spec.scale == 1.0 and spec.zero_point == -128
        )
        self._pixel_buffer = np.empty(spec.shape, dtype=spec.dtype)

    @staticmethod
    def _spec(detail: dict[str, Decoded]) -> TensorSpec:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return TensorSpec(
            index=int(detail["index"]),
            shape=tuple(int(s) for s in detail["shape"]),
            dtype=np.dtype(detail["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs[0].shape

    @property
    def is_int8(self) -> bool:
        return self.inputs[0].quantised

    def _quantise(self, values: np.ndarray, spec: TensorSpec) -> np.ndarray:
        if not spec.quantised:
            return values.astype(spec.dtype, copy=False)
        info = np.iinfo(spec.dtype)
        q = np.round(values / spec.scale) + spec.zero_point
        return np.clip(q, info.min, info.max).astype(spec.dtype)

    @staticmethod
    def _dequantise(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
        if not spec.quantised:
            return values.astype(np.float32, copy=False)
        return ((values.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one inference on a float batch shaped like the input; return float outputs."""
        spec = self.inputs[0]
        if tuple(batch.shape) != spec.shape:
            raise ValueError(f"{self.path.name}: input shape {batch.shape} != {spec.shape}")
        return self._invoke(self._quantise(batch, spec))

    def run_pixels(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Run one inference on uint8 pixels (0..255) shaped like the input, with or without the
        leading batch axis of 1; same result as `run(pixels.astype(float32))`, but cheaper."""
        spec = self.inputs[0]
        if pixels.dtype != np.uint8:
            raise ValueError(f"{self.path.name}: run_pixels needs uint8 pixels, got {pixels.dtype}")
        if tuple(pixels.shape) != spec.shape and (1,) + tuple(pixels.shape) != spec.shape:
            raise ValueError(f"{self.path.name}: input shape {pixels.shape} != {spec.shape}")
        if not self._pixels_by_xor:
            return self.run(pixels.reshape(spec.shape).astype(np.float32))
        with self._lock:  # the buffer is shared, so it is filled under the lock too
            np.bitwise_xor(pixels.reshape(spec.shape), 0x80, out=self._pixel_buffer.view(np.uint8))
            return self._invoke_locked(self._pixel_buffer)

    def _invoke(self, quantised: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            return self._invoke_locked(quantised)

    def _invoke_locked(self, quantised: np.ndarray) -> list[np.ndarray]:
        self._interpreter.set_tensor(self.inputs[0].index, quantised)
        self._interpreter.invoke()
        # get_tensor returns a copy, so the outputs survive the next invoke.
        return [self._dequantise(self._interpreter.get_tensor(o.index), o) for o in self.outputs]
