"""/regions, /confusion and /checkpoints/{step}/weights.npz, fed by a real worker; the
prediction example of docs/api.md run as written."""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import create_run, finished_run
from fastapi.testclient import TestClient

from app import crud
from app.crud.pictures import get_pictures
from app.db import Database
from app.regions_image import encode_png
from app.worker.loop import Worker
from engine import RunConfig, Trainer, state_from_bytes
from engine.data import load_dataset

pytestmark = pytest.mark.timeout(90)

Wait = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[2]


def _png_size(body: bytes) -> tuple[int, int]:
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert body[12:16] == b"IHDR"
    width, height = struct.unpack(">II", body[16:24])
    return width, height


def test_encode_png_round_trips_the_pixels() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    body = encode_png(rgb)
    assert _png_size(body) == (3, 2)
    idat = body.index(b"IDAT")
    (length,) = struct.unpack(">I", body[idat - 4 : idat])
    raw = np.frombuffer(zlib.decompress(body[idat + 4 : idat + 4 + length]), dtype=np.uint8)
    np.testing.assert_array_equal(raw.reshape(2, 10)[:, 1:].reshape(2, 3, 3), rgb)


def test_spirals_regions_and_confusion(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any], db: Database
) -> None:
    rid = create_run(client, {**tiny, "max_steps": 200})
    assert client.get(f"/api/runs/{rid}/confusion").status_code == 404  # not evaluated yet
    finished_run(client, rid)
    response = client.get(f"/api/runs/{rid}/regions")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert _png_size(response.content) == (360, 360)
    assert response.headers["x-step"] == "200"  # the last step always gets a picture
    confusion = client.get(f"/api/runs/{rid}/confusion").json()
    assert confusion["step"] == 200 and confusion["labels"] == [0, 1, 2]
    matrix = np.array(confusion["matrix"])
    data = load_dataset(RunConfig(**{**tiny, "max_steps": 200}))
    assert matrix.shape == (3, 3) and matrix.sum() == data.y_val.shape[0]
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(data.y_val))
    # The diagonal is the stored validation accuracy of that evaluation.
    metrics = client.get(f"/api/runs/{rid}/metrics").json()
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["val_acc"][-1])
    with db.read() as s:
        pictures = get_pictures(s, rid)
    assert pictures is not None and pictures.regions is not None
    assert pictures.regions.classes.shape == (100, 100)
    assert len(pictures.regions.points) == data.x_train.shape[0]


def test_digits_confusion_and_no_regions(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any]
) -> None:
    rid = create_run(client, {**tiny, "dataset": "digits", "max_steps": 40})
    refused = client.get(f"/api/runs/{rid}/regions")
    assert refused.status_code == 409 and "2-D" in refused.json()["detail"]
    finished_run(client, rid)
    assert client.get(f"/api/runs/{rid}/regions").status_code == 409
    confusion = client.get(f"/api/runs/{rid}/confusion").json()
    assert confusion["labels"] == list(range(10)) and confusion["step"] == 40
    data = load_dataset(RunConfig(dataset="digits"))
    assert np.array(confusion["matrix"]).sum() == data.y_val.shape[0]


def test_missing_run_and_checkpoint_404(client: TestClient) -> None:
    for path in ("regions", "confusion", "checkpoints/0/weights.npz"):
        response = client.get(f"/api/runs/999/{path}")
        assert response.status_code == 404 and "999" in response.json()["detail"]


def _documented_example() -> str:
    """The Python block of docs/api.md that follows the weights.npz heading."""
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("weights.npz") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "arch",
    [
        {},
        {"bn_position": "after", "activation": "tanh"},
        {"batchnorm": False},
    ],
    ids=["bn-before-relu", "bn-after-tanh", "no-bn"],
)
def test_weights_npz_predicts_like_the_engine_with_the_documented_code(
    client: TestClient,
    worker: Worker,
    wait: Wait,
    tiny: dict[str, Any],
    db: Database,
    tmp_path: Path,
    arch: dict[str, Any],
) -> None:
    config = {**tiny, "dataset": "digits", "hidden": [32, 16], "max_steps": 60, "dropout": 0.2}
    config.update(arch)
    rid = create_run(client, config)
    finished_run(client, rid)
    steps = [c["step"] for c in client.get(f"/api/runs/{rid}/checkpoints").json()]
    assert 60 in steps
    assert client.get(f"/api/runs/{rid}/checkpoints/59/weights.npz").status_code == 404
    response = client.get(f"/api/runs/{rid}/checkpoints/60/weights.npz")
    assert response.status_code == 200
    assert "weights.npz" in response.headers["content-disposition"]
    with np.load(io.BytesIO(response.content), allow_pickle=False) as f:
        names = set(f.files)
    assert {"layer0.W", "layer0.b", "layer2.W", "input.mean", "classes", "config"} <= names
    bn = {"layer0.bn_gamma", "layer0.bn_beta", "layer0.bn_mean", "layer0.bn_var"}
    assert bn <= names if config.get("batchnorm", True) else not bn & names
    assert "layer2.bn_gamma" not in names  # the output layer has no BN
    (tmp_path / "weights.npz").write_bytes(response.content)

    # The engine's own predictions of the same checkpoint, on raw digits.
    with db.read() as s:
        ckpt = crud.latest_checkpoint(s, rid, at_or_before=60)
        assert ckpt is not None
        state = state_from_bytes(ckpt.state)
    trainer = Trainer(RunConfig(**state["config"]))
    trainer.load_state_dict(state)
    from sklearn.datasets import load_digits

    x_raw = load_digits().data[:300]
    x_std = ((x_raw - trainer.data.mean) / trainer.data.std).astype(np.float32)
    logits, _ = trainer.model.forward(x_std, train=False)

    namespace: dict[str, Any] = {"x": x_raw}
    code = _documented_example().replace('"weights.npz"', repr(str(tmp_path / "weights.npz")))
    exec(compile(code, "docs/api.md", "exec"), namespace)
    np.testing.assert_array_equal(namespace["labels"], np.array(trainer.classes)[logits.argmax(1)])
    np.testing.assert_allclose(namespace["logits"], logits, rtol=1e-4, atol=1e-4)


def test_a_csv_with_two_features_gets_regions_and_three_get_409(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any], settings: Any
) -> None:
    rng = np.random.default_rng(0)
    ids = []
    for width in (2, 3):
        x = rng.standard_normal((120, width))
        y = (x[:, 0] > 0).astype(int)
        path = settings.data_dir / f"plane{width}.csv"
        rows = zip(x, y, strict=True)
        lines = [",".join(f"{v:.5f}" for v in row) + f",{label}" for row, label in rows]
        path.write_text("\n".join(lines) + "\n")
        config = {**tiny, "dataset": path.name, "max_steps": 40, "batch_size": 16}
        rid = create_run(client, config)
        assert client.get(f"/api/runs/{rid}/regions").status_code == 404  # not evaluated yet
        ids.append(rid)
    for rid in ids:
        finished_run(client, rid)
    two, three = (client.get(f"/api/runs/{rid}/regions") for rid in ids)
    assert two.status_code == 200 and two.content[:4] == b"\x89PNG"
    assert three.status_code == 409 and "2-D" in three.json()["detail"]
    assert client.get(f"/api/runs/{ids[1]}/confusion").json()["labels"] == [0, 1]


def test_a_database_without_the_pictures_table_gets_it_and_keeps_its_runs(
    tmp_path: Path, tiny: dict[str, Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_all()
    with old.write() as s:
        rid = crud.create_run(s, config=tiny, name="made before the pictures").id
    with old.engine.begin() as conn:  # as today's main left it: no run_pictures table
        conn.exec_driver_sql("DROP TABLE run_pictures")
    old.dispose()
    db = Database(url)
    db.create_all()
    with db.read() as s:
        run = crud.get_run(s, rid)
        assert run is not None and run.name == "made before the pictures"
        assert get_pictures(s, rid) is None
    db.dispose()
