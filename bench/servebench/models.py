"""The bench's model (built by the project's own steps), its request bodies and gRPC frames, and the
answer checks against scikit-learn's predict. Heavy modules are imported inside the functions."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .common import DATA_SOURCE, MODEL_NAME, N_TREES, REQUEST_TIMEOUT_S, ROWS

def v2_body(name: str, rows: list[list[float]]) -> str:
    flat = [value for row in rows for value in row]
    return json.dumps({"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])],
                                   "datatype": "FP64", "data": flat}]})


def build_model_folder(dest: Path) -> Path:
    """The bench model, made by the project's own pipeline steps (no object store needed)."""
    from components import evaluate, ingest, push, train
    from components.artifacts import METADATA_FILE, MODEL_FILE, SKOPS_FILE, TRAINING_FILE, read_json, write_json

    steps = dest.parent / "steps"
    shutil.rmtree(dest, ignore_errors=True)
    steps.mkdir(parents=True, exist_ok=True)
    config = ingest.IngestConfig()
    schema, train_set, test_set = steps / "schema.json", steps / "train.csv", steps / "test.csv"
    ingest.run(source=DATA_SOURCE, config=config, train_path=train_set, test_path=test_set, schema_path=schema)
    train.run(train_path=train_set, schema_path=schema, model_dir=dest, estimator="random_forest",
              hyperparameters={"n_estimators": N_TREES}, seed=config.seed)
    evaluation = evaluate.run(test_path=test_set, schema_path=schema, model_dir=dest, threshold=0.0,
                              model_name=MODEL_NAME, bucket="models", store=None, data_source=DATA_SOURCE,
                              seed=config.seed, test_fraction=config.test_fraction,
                              evaluation_path=steps / "evaluation.json", report_path=steps / "report.md")
    training = read_json(dest / TRAINING_FILE, "training record")
    skops = push.skops_bytes(dest)  # what this project's server loads (it never unpickles)
    (dest / SKOPS_FILE).write_bytes(skops)
    metadata = push.build_metadata(MODEL_NAME, 1, (dest / MODEL_FILE).read_bytes(), training,
                                   read_json(schema, "schema"), evaluation, "serving-bench",
                                   dt.datetime.now(dt.timezone.utc), skops=skops)
    write_json(dest / METADATA_FILE, metadata)
    (dest / TRAINING_FILE).unlink()  # the served folder: model.joblib, model.skops, metadata.json
    return dest


def write_bodies(folder: Path) -> dict[int, Path]:
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data
    bodies = {}
    for rows in ROWS:
        path = folder / f"body-{rows}-rows.json"
        path.write_text(v2_body(MODEL_NAME, x[:rows].tolist()))
        bodies[rows] = path
    return bodies


def grpc_request(rows: int):
    """A ModelInferRequest of the first ``rows`` diabetes rows as raw contents (tritonclient's default)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data[:rows]
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(x.shape))
    return pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor], raw_input_contents=[x.astype("<f8").tobytes()])


def write_grpc_frames(folder: Path) -> dict[int, Path]:
    """Each request as one gRPC length-prefixed message (flag 0 = uncompressed, 4-byte big-endian size)."""
    frames = {}
    for rows in ROWS:
        message = grpc_request(rows).SerializeToString()
        path = folder / f"frame-{rows}-rows.grpc"
        path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
        frames[rows] = path
    return frames


def grpc_answer_problem(port: int, expected: dict[int, list[float]]) -> str | None:
    """None when gRPC ModelInfer answers raw contents equal to scikit-learn's (1e-9 relative), else what differs."""
    import grpc
    import numpy as np
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        for rows, want in expected.items():
            try:
                response = stub.ModelInfer(grpc_request(rows), timeout=REQUEST_TIMEOUT_S)
            except grpc.RpcError as exc:
                return f"{rows}-row gRPC request failed: {exc.code().name} {exc.details()}"
            if not response.raw_output_contents:
                return f"{rows}-row gRPC answer has no raw_output_contents (the request was raw)"
            got = np.frombuffer(response.raw_output_contents[0], "<f8").tolist()
            if len(got) != len(want) or any(abs(g - w) > 1e-9 * abs(w) for g, w in zip(got, want)):
                return f"{rows}-row gRPC answer {got[:3]}… differs from scikit-learn's {want[:3]}…"
    return None


def expected_answers(model_dir: Path) -> dict[int, list[float]]:
    """scikit-learn's own predictions for the rows in each body."""
    import joblib
    from sklearn.datasets import load_diabetes

    model, x = joblib.load(model_dir / "model.joblib"), load_diabetes().data
    return {rows: model.predict(x[:rows]).tolist() for rows in ROWS}


def answer_problem(url: str, bodies: dict[int, Path], expected: dict[int, list[float]]) -> str | None:
    """None when the server's V2 answers equal scikit-learn's to 1e-9 relative, else what differs."""
    for rows, body in bodies.items():
        request = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                got = json.load(response)["outputs"][0]["data"]
        except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
            return f"{rows}-row request failed: {exc}"
        want = expected[rows]
        if len(got) != len(want) or any(abs(g - w) > 1e-9 * abs(w) for g, w in zip(got, want)):
            return f"{rows}-row answer {got[:3]}… differs from scikit-learn's {want[:3]}…"
    return None
