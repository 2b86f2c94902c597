"""Baseline 3 of the serving benchmark: plain FastAPI + uvicorn calling ``predict``.

    python bench/servers/fastapi_predict.py --model_dir DIR --model_name NAME --http_port P

The V2 subset the benchmark uses (ready, infer with one tensor), no validation beyond numpy's:
what a hand-written service typically is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

LOOPBACK = "127.0.0.1"


def build_app(model, name: str) -> FastAPI:
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {"ready": True}

    @app.post(f"/v2/models/{name}/infer")
    async def infer(request: Request) -> JSONResponse:
        tensor = (await request.json())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        y = model.predict(x)
        return JSONResponse({"model_name": name, "outputs": [
            {"name": "predict", "datatype": "FP64", "shape": list(y.shape), "data": y.tolist()}]})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--http_port", type=int, required=True)
    args = parser.parse_args()
    model = joblib.load(next(args.model_dir.glob("*.joblib")))
    uvicorn.run(build_app(model, args.model_name), host=LOOPBACK, port=args.http_port, log_level="warning")


if __name__ == "__main__":
    main()
