"""A model's arrays as plain, named NumPy arrays: what ``weights.npz`` downloads hold.

A checkpoint (engine/checkpoint.py) holds everything needed to go on training, under the
model's internal names (W1, gamma1, running_mean1...). This is the part needed to predict, named
by layer so a reader needs no pandamode: ``layer0`` is the first hidden layer, the last one is
the output layer. docs/api.md has the dozen lines of NumPy that predict with it (tested).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from engine.data import Dataset

__all__ = ["weights_arrays", "weights_npz"]


def weights_arrays(state: dict[str, Any], data: Dataset | None = None) -> dict[str, np.ndarray]:
    """``layer{k}.W`` (in, out), ``layer{k}.b``, and for a BN layer ``layer{k}.bn_gamma``,
    ``.bn_beta``, ``.bn_mean``, ``.bn_var`` (running statistics); ``config`` (the run config
    as a JSON string: activation, bn_position, bn_eps). With the run's ``data`` also
    ``input.mean`` / ``input.std`` (inputs are standardized with them) and ``classes`` (the
    original label of each output index)."""
    params, running = state["params"], state.get("running") or {}
    out: dict[str, np.ndarray] = {}
    i = 1
    while f"W{i}" in params:
        k = f"layer{i - 1}"
        out[f"{k}.W"] = np.ascontiguousarray(params[f"W{i}"])
        out[f"{k}.b"] = np.ascontiguousarray(params[f"b{i}"])
        if f"gamma{i}" in params:
            out[f"{k}.bn_gamma"] = np.ascontiguousarray(params[f"gamma{i}"])
            out[f"{k}.bn_beta"] = np.ascontiguousarray(params[f"beta{i}"])
            out[f"{k}.bn_mean"] = np.ascontiguousarray(running[f"running_mean{i}"])
            out[f"{k}.bn_var"] = np.ascontiguousarray(running[f"running_var{i}"])
        i += 1
    out["config"] = np.array(json.dumps(state["config"], sort_keys=True))
    if data is not None:
        out["input.mean"], out["input.std"] = data.mean.copy(), data.std.copy()
        classes = np.array(list(data.classes))
        out["classes"] = classes.astype(str) if classes.dtype == object else classes
    return out


def weights_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as an uncompressed .npz (no object arrays: ``np.load`` needs no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
