"""Baselines 1 and 4 of the serving benchmark: a plain ``kserve.Model`` on kserve's stock server.

    python bench/servers/kserve_predict.py --model_dir DIR --model_name NAME --http_port P [--noop]

What KServe's sklearn runtime does: joblib-load the one model file in the folder, decode the V2
request with kserve's own helpers, call ``predict``, encode with kserve's helpers. ``--noop``
answers zeros of the right length without calling the model: the framework's own floor.
Loopback only (kserve itself binds 0.0.0.0 with no option); gRPC off (the bench uses REST).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
import uvicorn
from kserve import Model, ModelServer, model_server  # parses sys.argv for kserve's flags on import
from kserve.utils.utils import get_predict_input, get_predict_response

LOOPBACK = "127.0.0.1"
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


class _LoopbackConfig(uvicorn.Config):
    """kserve hard-codes host 0.0.0.0 when it builds its uvicorn config."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["host"] = LOOPBACK
        super().__init__(*args, **kwargs)


class PredictModel(Model):
    def __init__(self, name: str, model_dir: Path, noop: bool) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.noop = noop

    def load(self) -> bool:
        files = [p for p in self.model_dir.iterdir() if p.suffix in MODEL_SUFFIXES]
        if len(files) != 1:
            raise RuntimeError(f"{self.model_dir} holds {len(files)} model files; expected exactly one")
        self._model = joblib.load(files[0])
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        if self.noop:
            result = np.zeros(len(instances))
        else:
            result = self._model.predict(instances)
        return get_predict_response(payload, result, self.name)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--noop", action="store_true", help="skip predict: measure the framework alone")
    args, _ = parser.parse_known_args()
    uvicorn.Config = _LoopbackConfig
    model = PredictModel(args.model_name, args.model_dir, args.noop)
    model.load()
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
