"""state_to_bytes / state_from_bytes: npz + JSON, exact, and never pickle."""

from __future__ import annotations

import io

import numpy as np
import pytest

from engine import state_from_bytes, state_to_bytes


def test_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    state = {
        "params": {"W1": rng.standard_normal((3, 4)).astype(np.float32), "b1": np.zeros(4)},
        "perm": rng.permutation(10),
        "lr": 0.1 + 0.2,  # a float with a long repr
        "big": 2**100 + 1,  # PCG64 states are 128-bit integers
        "name": "adam",
        "none": None,
        "flag": True,
        "np_scalar": np.float64(1.5),
        "empty": {},
        "rng": np.random.default_rng(5).bit_generator.state,
    }
    back = state_from_bytes(state_to_bytes(state))
    assert back["lr"] == 0.1 + 0.2 and back["big"] == 2**100 + 1 and back["np_scalar"] == 1.5
    assert back["name"] == "adam" and back["none"] is None and back["flag"] is True
    assert back["empty"] == {} and back["rng"] == state["rng"]
    for key in ("W1", "b1"):
        assert back["params"][key].dtype == state["params"][key].dtype
        np.testing.assert_array_equal(back["params"][key], state["params"][key])
    np.testing.assert_array_equal(back["perm"], state["perm"])


def test_object_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="pickle"):
        state_to_bytes({"x": np.array([{"a": 1}], dtype=object)})


def test_garbage_and_pickled_blobs_are_refused() -> None:
    with pytest.raises(ValueError, match="not a pandamode state"):
        state_from_bytes(b"definitely not a zip")
    buffer = io.BytesIO()
    np.savez(
        buffer, x=np.array([{"evil": 1}], dtype=object), __meta__=np.frombuffer(b"{}", np.uint8)
    )
    with pytest.raises(ValueError, match="not a pandamode state"):
        state_from_bytes(buffer.getvalue())
