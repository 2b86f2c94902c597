"""The servers the bench compares: this project's in its configurations, KServe, FastAPI, MLServer (its
venv built once) and the grpcio ceiling; and another commit's serving code for a REST baseline."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import MLSERVER_PINS, MLSERVER_VENV, MODEL_NAME, PYTHON, REPO, SERVERS_DIR, WORK, say
from .processes import Ports

@dataclass(frozen=True)
class Server:
    key: str
    label: str
    command: Callable[[Ports, Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    grpc: bool = False  # also measured over gRPC ModelInfer (h2load), beside its REST rows
    cwd: Path = REPO  # where it starts: a REST baseline runs another commit's serving/ from its folder


def ours_missing() -> str | None:
    if not (REPO / "serving" / "__main__.py").exists():
        return "serving/__main__.py does not exist yet (the V2 server is being written)"
    return None


def ours_command(ports: Ports, model_dir: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "serving", "--model_dir", str(model_dir), "--model_name", MODEL_NAME,
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc), "--host", "127.0.0.1", *extra]


def _kserve(ports: Ports, model_dir: Path, *extra: str) -> list[str]:
    return [PYTHON, str(SERVERS_DIR / "kserve_predict.py"), "--model_dir", str(model_dir),
            "--model_name", MODEL_NAME, "--http_port", str(ports.http), *extra]


def _fastapi(ports: Ports, model_dir: Path) -> list[str]:
    return [PYTHON, str(SERVERS_DIR / "fastapi_predict.py"), "--model_dir", str(model_dir),
            "--model_name", MODEL_NAME, "--http_port", str(ports.http)]


def _mlserver_missing() -> str | None:
    return None if (MLSERVER_VENV / ".installed").exists() else "its venv could not be built (see above)"


def _mlserver(parallel_workers: int | None, batch: bool) -> Callable[[Ports, Path], list[str]]:
    """Write an MLServer repository for this variant, return the command that serves it."""

    def command(ports: Ports, model_dir: Path) -> list[str]:
        variant = WORK / "mlserver" / f"pw{parallel_workers}-batch{int(batch)}"
        model_folder = variant / MODEL_NAME
        model_folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "model.joblib", model_folder / "model.joblib")
        settings = {"host": "127.0.0.1", "http_port": ports.http, "grpc_port": ports.grpc,
                    "metrics_port": ports.metrics}
        if parallel_workers is not None:
            settings["parallel_workers"] = parallel_workers
        model_settings = {"name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
                          "parameters": {"uri": "./model.joblib"}}
        if batch:
            model_settings.update(max_batch_size=32, max_batch_time=0.005)
        (variant / "settings.json").write_text(json.dumps(settings, indent=2))
        (model_folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        return [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(variant)]

    return command


BASELINE = "kserve-predict"
OURS = "ours"
KSERVE_ROUTE = "ours-kserve-route"  # same engine and batcher behind kserve's own REST handler
REST_BASELINE = "ours-at-"  # + a git ref (--rest-baseline): this server's REST as that commit had it
SERVERS = [
    Server(BASELINE, "1. kserve.Model + predict (KServe sklearn runtime)", _kserve),
    Server("mlserver-default", "2a. MLServer 1.7.1, default settings", _mlserver(None, False),
           missing=_mlserver_missing),
    Server("mlserver-pw0", "2b. MLServer, parallel_workers=0", _mlserver(0, False), missing=_mlserver_missing),
    Server("mlserver-batch", "2c. MLServer, adaptive batching 32 / 5 ms", _mlserver(None, True),
           missing=_mlserver_missing),
    Server("mlserver-batch-pw0", "2d. MLServer, batching 32 / 5 ms, parallel_workers=0", _mlserver(0, True),
           missing=_mlserver_missing),
    Server("fastapi", "3. FastAPI + uvicorn + predict", _fastapi),
    Server("kserve-noop", "4. kserve.Model, no predict (framework floor)", lambda p, m: _kserve(p, m, "--noop")),
    Server("ours-plain", "5a. this server, engine, route and batching off", ours_command,
           env={"SERVING_FAST_PATH": "0", "SERVING_FAST_ROUTE": "0", "SERVING_BATCHING": "0"}, missing=ours_missing),
    Server("ours-no-batching", "5b. this server, batching off", ours_command, env={"SERVING_BATCHING": "0"},
           missing=ours_missing),
    Server(KSERVE_ROUTE, "5c. this server, fast route off (kserve's V2 REST handler)", ours_command,
           env={"SERVING_FAST_ROUTE": "0"}, missing=ours_missing),
    Server(OURS, "5. this server, default configuration", ours_command, missing=ours_missing, grpc=True),
]


GRPC_CEILING = Server("grpc-ceiling", "6. grpcio threaded server answering a constant (gRPC ceiling)",
                      lambda p, m: [PYTHON, str(SERVERS_DIR / "grpc_constant.py"), "--http_port", str(p.http),
                                    "--grpc_port", str(p.grpc)], grpc=True)
EXTRAS = ("start", "workers", "engine", GRPC_CEILING.key)  # --only keys beside the servers'


def export_baseline(ref: str) -> Path:
    """The serving code at git ``ref`` (and the packages it imports), in a folder to start it from."""
    sha = subprocess.run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    folder = WORK / f"baseline-{sha}"
    if not (folder / "serving" / "__main__.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        tree = subprocess.run(["git", "ls-tree", "--name-only", sha], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.split()
        packages = [name for name in ("serving", "components", "pipelines", "scoring") if name in tree]
        archive = subprocess.run(["git", "archive", sha, *packages], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def ensure_mlserver_venv() -> None:
    stamp = MLSERVER_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(MLSERVER_PINS):
        return
    log = MLSERVER_VENV.with_name("mlserver-install.log")  # pip's output: named only when it fails
    say(f"==> building MLServer's venv in {MLSERVER_VENV.relative_to(REPO)} (about a minute, once; "
        f"log: {log.relative_to(REPO)})")
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            subprocess.run([PYTHON, "-m", "venv", "--clear", str(MLSERVER_VENV)], check=True, stdout=out,
                           stderr=subprocess.STDOUT)
            subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "--progress-bar", "off", *MLSERVER_PINS],
                           check=True, stdout=out, stderr=subprocess.STDOUT)
    except (subprocess.CalledProcessError, OSError) as exc:
        last = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        say(f"    MLServer venv failed ({exc}; see {log}: {' | '.join(last)}); the MLServer rows are skipped")
        return
    stamp.write_text(" ".join(MLSERVER_PINS))
