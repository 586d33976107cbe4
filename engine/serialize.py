"""State dict <-> bytes: an .npz whose arrays are the state's arrays plus one JSON document.

No pickle anywhere, so a checkpoint from an untrusted database row cannot run code when loaded.
Nested dicts are flattened with '/' in keys; every array goes into the npz bit for bit, every
other value (ints of any size, floats, strings, bools, None, lists) into the JSON document, which
round-trips Python floats exactly.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

__all__ = ["state_from_bytes", "state_to_bytes"]

_META = "__meta__"
_SEP = "/"


def _flatten(
    tree: dict[str, Any], prefix: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    for key, value in tree.items():
        if _SEP in key:
            raise ValueError(f"state key {key!r} may not contain {_SEP!r}")
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, path + _SEP, arrays, meta)
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                raise ValueError(f"state entry {path!r} is an object array; it would need pickle")
            arrays[path] = value
        elif isinstance(value, np.generic):
            meta[path] = value.item()
        else:
            meta[path] = value


def _insert(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(_SEP)
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """Serialize a (nested) state dict of arrays and JSON-able values."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    _flatten(state, "", arrays, meta)
    doc = json.dumps(meta, allow_nan=True, sort_keys=True).encode()
    arrays[_META] = np.frombuffer(doc, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def state_from_bytes(blob: bytes) -> dict[str, Any]:
    """Inverse of state_to_bytes. Raises ValueError on anything that is not such a blob."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"not a pandamode state blob: {exc}") from None
    if _META not in arrays:
        raise ValueError("not a pandamode state blob: no metadata")
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    state: dict[str, Any] = {}
    for path, value in meta.items():
        _insert(state, path, value)
    for path, array in arrays.items():
        _insert(state, path, array)
    return state
