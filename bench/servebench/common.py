"""What the serving benchmark's modules share: paths, the model's name, the load's shape, ``say``."""

from __future__ import annotations

import sys
from pathlib import Path

from components.artifacts import DEFAULT_MODEL_NAME

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".data" / "bench"  # git-ignored: model folder, bodies, MLServer venv and configs
OUT = REPO / "bench" / "out"  # git-ignored: where a run's table goes unless --out says otherwise
RESULTS = REPO / "bench" / "results" / "serving.md"  # the committed table: written only with --update-results
REPORT_FILE = "serving.md"
SERVERS_DIR = REPO / "bench" / "servers"
PYTHON = sys.executable

MODEL_NAME = DEFAULT_MODEL_NAME
DATA_SOURCE = "sklearn:diabetes"
N_TREES = 100
SERVER_CORE, LOAD_CORE = "0", "1"
ROWS = (1, 32)
CONCURRENCY = (1, 16)
SECONDS, QUICK_SECONDS = 5, 2
WARMUP_REQUESTS = 300
READY_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 10  # hey -t / ab -s: one request
TOOL_GRACE_S = 60  # a load run may take this much longer than asked before it is killed
START_REPEATS = 3
GRPC_INFER_PATH = "inference.GRPCInferenceService/ModelInfer"
LOAD_DEFAULTS = {"url": "http://127.0.0.1:8080", "requests": 2000, "concurrency": 16}

MLSERVER_VENV = WORK / "mlserver-venv"
# uvloop 0.23 leaves MLServer 1.7.1's inference worker without its model (SeldonIO/MLServer#2286).
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", "scikit-learn==1.9.1",
                 "joblib==1.6.0", "numpy==2.4.6")


def say(message: str) -> None:
    """Progress for the person running the bench, on stderr (stdout carries the table).

    Args:
        message: one line of progress.

    Returns:
        None.
    """
    print(message, file=sys.stderr, flush=True)


def ms(value: float) -> str:
    """Milliseconds, or n/a when the tool gave none (the row's note says why)."""
    return "n/a" if value != value else (f"{value:.2f}" if value < 10 else f"{value:.1f}")


def rss_text(rss: list[tuple[str, float]]) -> str:
    return ", ".join(f"{role} {mib:.0f}" for role, mib in rss)
