"""Build-time: read TensorFlow.js weight manifests (model.json / *-weights_manifest.json + shards)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def read_weights(manifest: list[dict], folder: Path) -> dict[str, np.ndarray]:
    """Decode every weight of a TF.js weights manifest into float/int numpy arrays.

    TF.js stores each weight group as concatenated shards; a weight may be affine-quantised
    to uint8/uint16 (value = q * scale + min) or stored as float16.
    """
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(s) for s in spec["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant:
                qdtype = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}[
                    quant["dtype"]
                ]
                raw = np.frombuffer(blob, dtype=qdtype, count=count, offset=offset)
                offset += raw.nbytes
                if quant["dtype"] == "float16":
                    values = raw.astype(np.float32)
                else:
                    values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(
                        quant["min"]
                    )
                values = values.astype(_DTYPES[spec["dtype"]])
            else:
                dtype = _DTYPES[spec["dtype"]]
                values = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
                offset += values.nbytes
            weights[spec["name"]] = values.reshape(shape).copy()
        if offset != len(blob):
            raise ValueError(f"weights manifest does not cover its shards ({offset} != {len(blob)})")
    return weights


def load_graph_model(model_json: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Return (graph nodes, weights) of a TF.js graph model."""
    spec = json.loads(model_json.read_text())
    if spec.get("format") != "graph-model":
        raise ValueError(f"{model_json.name} is not a TF.js graph model")
    return spec["modelTopology"]["node"], read_weights(spec["weightsManifest"], model_json.parent)


def load_layers_weights(manifest_json: Path) -> dict[str, np.ndarray]:
    """Return the weights of a bare weights manifest (face-api's *-weights_manifest.json)."""
    return read_weights(json.loads(manifest_json.read_text()), manifest_json.parent)
