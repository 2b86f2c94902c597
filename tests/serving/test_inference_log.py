"""The inference log's writer (serving.inference_log) against an in-memory store that can fail or stall."""

from __future__ import annotations

import asyncio
import gzip
import json
import pickle
import re
import threading
import time

import numpy as np
import orjson
import pytest

from serving.inference_log import InferenceLog, InferenceLogConfigError, InferenceLogSettings
from serving.model import SklearnModel

CREDENTIALS = {"MINIO_ENDPOINT": "127.0.0.1:1", "MINIO_ACCESS_KEY": "local-only", "MINIO_SECRET_KEY": "local-only"}
KEY = re.compile(r"^traffic/model=(?P<model>[^/]+)/date=(?P<date>\d{4}-\d\d-\d\d)/"
                 r"(?P<host>[^/]+)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})-(?P<seq>\d{6})\.jsonl\.gz$")
DAY1 = 1_796_169_600.0  # 2026-12-02T00:00:00Z
DAY2 = DAY1 + 86_400


class MemoryStore:
    """put_bytes into a dict; ``fail`` raises like a store that is down, ``gate`` holds every write until set."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "") -> str:
        self.calls += 1
        self.gate.wait()
        if self.fail:
            raise ConnectionError("cannot reach the object store at http://127.0.0.1:1")
        assert (bucket, key) not in self.objects, f"{key} written twice"
        self.objects[(bucket, key)] = data
        return "etag"

    def rows(self) -> list[dict]:
        return [json.loads(line) for data in self.objects.values() for line in gzip.decompress(data).splitlines()]


def settings(**env: str) -> InferenceLogSettings:
    values = InferenceLogSettings.from_env({"SERVING_INFERENCE_LOG": "s3://logs/traffic/", **CREDENTIALS, **env})
    assert values is not None
    return values


def writer(store: MemoryStore, clock=time.time, rand=lambda: 0.0, **env: str) -> InferenceLog:
    return InferenceLog(settings(**env), store=lambda: store, clock=clock, rand=rand)


def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def rows(n: int, start: float = 0.0) -> np.ndarray:
    return np.arange(start, start + n * 3).reshape(n, 3)


# -- settings --------------------------------------------------------------------------------

def test_off_unless_the_uri_is_set() -> None:
    assert InferenceLogSettings.from_env({}) is None
    assert InferenceLogSettings.from_env({"SERVING_INFERENCE_LOG": " ", "SERVING_INFERENCE_LOG_SAMPLE": "0.5"}) is None


def test_settings_read_with_defaults_and_the_download_credentials() -> None:
    values = InferenceLogSettings.from_env({
        "SERVING_INFERENCE_LOG": "s3://logs/a/b", "SERVING_INFERENCE_LOG_SAMPLE": "0.25",
        "AWS_ENDPOINT_URL": "https://store.example:9000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "local-only-sekret",
        "AWS_DEFAULT_REGION": "eu-west-1"})
    assert (values.bucket, values.prefix, values.sample, values.uri) == ("logs", "a/b/", 0.25, "s3://logs/a/b/")
    assert (values.batch_rows, values.flush_s, values.max_rows, values.close_timeout_s) == (1000, 10.0, 20000, 5.0)
    assert (values.store.endpoint, values.store.secure, values.store.region) == ("store.example:9000", True, "eu-west-1")
    assert "local-only-sekret" not in repr(values)
    assert InferenceLogSettings.from_env({"SERVING_INFERENCE_LOG": "s3://logs", **CREDENTIALS}).prefix == ""


@pytest.mark.parametrize("name, value, expected", [
    ("SERVING_INFERENCE_LOG", "/tmp/logs", "expected s3://bucket/prefix/"),
    ("SERVING_INFERENCE_LOG", "s3://Bad_Bucket/x", "bucket 'Bad_Bucket' is not an S3 bucket name"),
    ("SERVING_INFERENCE_LOG_SAMPLE", "1.5", "expected a share of requests in [0, 1]"),
    ("SERVING_INFERENCE_LOG_SAMPLE", "half", "expected a share of requests in [0, 1]"),
    ("SERVING_INFERENCE_LOG_SAMPLE", "nan", "expected a share of requests in [0, 1]"),
    ("SERVING_INFERENCE_LOG_BATCH_ROWS", "0", "expected an integer >= 1"),
    ("SERVING_INFERENCE_LOG_MAX_ROWS", "2.5", "expected an integer >= 1"),
    ("SERVING_INFERENCE_LOG_FLUSH_S", "-1", "expected seconds in [0.01, 3600]"),
    ("SERVING_INFERENCE_LOG_CLOSE_TIMEOUT_S", "forever", "expected seconds in [0, 600]"),
])
def test_a_bad_setting_names_the_variable_the_value_and_what_it_accepts(name, value, expected) -> None:
    env = {"SERVING_INFERENCE_LOG": "s3://logs/traffic/", **CREDENTIALS, name: value}
    with pytest.raises(InferenceLogConfigError) as error:
        InferenceLogSettings.from_env(env)
    assert f"{name}={value!r}" in str(error.value) and expected in str(error.value)


def test_buffer_smaller_than_a_batch_and_missing_credentials_are_refused() -> None:
    with pytest.raises(InferenceLogConfigError, match="MAX_ROWS=10 is below SERVING_INFERENCE_LOG_BATCH_ROWS=100"):
        settings(SERVING_INFERENCE_LOG_BATCH_ROWS="100", SERVING_INFERENCE_LOG_MAX_ROWS="10")
    with pytest.raises(InferenceLogConfigError, match="needs the object store: no credentials"):
        InferenceLogSettings.from_env({"SERVING_INFERENCE_LOG": "s3://logs/"})


# -- writing ---------------------------------------------------------------------------------

def test_rows_are_written_in_batches_as_json_lines_in_model_and_date_partitions() -> None:
    store = MemoryStore()
    log = writer(store, clock=lambda: DAY1 + 5.25, SERVING_INFERENCE_LOG_BATCH_ROWS="4",
                 SERVING_INFERENCE_LOG_FLUSH_S="60")
    log.record("diabetes-rf", "3", rows(2), {"predict": np.array([1.5, 2.5])})
    time.sleep(0.1)
    assert store.objects == {}  # 2 rows wait for the batch of 4 (or 60 s)
    log.record("diabetes-rf", "3", rows(2, 6), {"predict": np.array([3.5, 4.5])})
    until(lambda: len(store.objects) == 1)
    (bucket, key), = store.objects
    match = KEY.match(key)
    assert bucket == "logs" and match and match["model"] == "diabetes-rf" and match["date"] == "2026-12-02", key
    assert store.rows() == [
        {"ts": "2026-12-02T00:00:05.250000Z", "model": "diabetes-rf", "version": "3",
         "inputs": [float(3 * i), float(3 * i + 1), float(3 * i + 2)], "outputs": {"predict": i + 1.5}}
        for i in range(4)]
    assert log.metrics.counts == {"sampled": 4, "written": 4}
    log.close()


def test_each_object_holds_one_model_and_one_date() -> None:
    store, now = MemoryStore(), [DAY1 + 86_399.5]
    log = writer(store, clock=lambda: now[0], SERVING_INFERENCE_LOG_FLUSH_S="60")
    log.record("a", "1", rows(1), {"predict": np.array([0])})
    log.record("b", "7", rows(2), {"predict": np.array([1, 1])})
    now[0] = DAY2 + 1
    log.record("a", "1", rows(3), {"predict": np.array([2, 2, 2])})
    log.close()
    partitions = sorted((KEY.match(k)["model"], KEY.match(k)["date"], len(gzip.decompress(d).splitlines()))
                        for (_, k), d in store.objects.items())
    assert partitions == [("a", "2026-12-02", 1), ("a", "2026-12-03", 3), ("b", "2026-12-02", 2)]
    assert len({KEY.match(k)["seq"] for _, k in store.objects}) == 3


def test_classifier_outputs_per_row_keep_labels_and_probabilities() -> None:
    store = MemoryStore()
    log = writer(store)
    log.record("bc", "2", rows(2), {"predict": np.array(["no", "yes"]),
                                    "predict_proba": np.array([[0.75, 0.25], [0.125, 0.875]])})
    log.close()
    assert [r["outputs"] for r in store.rows()] == [
        {"predict": "no", "predict_proba": [0.75, 0.25]}, {"predict": "yes", "predict_proba": [0.125, 0.875]}]


def test_sampling_keeps_whole_requests_at_the_given_rate() -> None:
    store, draws = MemoryStore(), iter([0.1, 0.9, 0.49, 0.5, 0.0])
    log = writer(store, rand=lambda: next(draws), SERVING_INFERENCE_LOG_SAMPLE="0.5")
    for i in range(5):
        log.record("m", "1", rows(2, 100 * i), {"predict": np.array([i, i])})
    log.close()
    assert sorted({r["outputs"]["predict"] for r in store.rows()}) == [0, 2, 4]
    assert log.metrics.counts == {"sampled": 6, "written": 6}


def test_sample_zero_logs_nothing_and_starts_no_thread() -> None:
    store = MemoryStore()
    log = writer(store, rand=lambda: 0.0, SERVING_INFERENCE_LOG_SAMPLE="0")
    log.record("m", "1", rows(1), {"predict": np.array([1])})
    assert log._thread is None and log.metrics.counts == {}
    log.close()
    assert store.calls == 0


def test_a_full_buffer_drops_and_counts_while_the_store_stalls() -> None:
    store = MemoryStore()
    store.gate.clear()  # the store does not answer
    log = writer(store, SERVING_INFERENCE_LOG_BATCH_ROWS="2", SERVING_INFERENCE_LOG_MAX_ROWS="6")
    started = time.perf_counter()
    for i in range(10):
        log.record("m", "1", rows(1, i), {"predict": np.array([i])})
        time.sleep(0.01)
    assert time.perf_counter() - started < 1.0  # record never waited for the store
    assert log.metrics.counts["dropped_buffer_full"] == 4  # 6 held (2 in the stalled write, 4 waiting)
    store.gate.set()
    log.close()
    assert log.metrics.counts == {"sampled": 10, "written": 6, "dropped_buffer_full": 4}
    assert sorted(r["outputs"]["predict"] for r in store.rows()) == [0, 1, 2, 3, 4, 5]


def test_a_store_error_drops_that_batch_counts_it_and_the_next_one_is_written(caplog) -> None:
    store = MemoryStore()
    store.fail = True
    log = writer(store, SERVING_INFERENCE_LOG_BATCH_ROWS="2")
    for i in range(4):
        log.record("m", "1", rows(1, i), {"predict": np.array([i])})
    until(lambda: log.metrics.counts["dropped_store_error"] == 4)
    store.fail = False
    log.record("m", "1", rows(2), {"predict": np.array([7, 8])})
    until(lambda: log.metrics.counts["written"] == 2)
    log.close()
    assert log.metrics.counts == {"sampled": 6, "dropped_store_error": 4, "written": 2}
    failures = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failures) == 1 and "cannot reach the object store" in failures[0].error  # one line per outage


def test_close_flushes_what_is_buffered() -> None:
    store = MemoryStore()
    log = writer(store, SERVING_INFERENCE_LOG_FLUSH_S="3600")
    log.record("m", "1", rows(3), {"predict": np.zeros(3)})
    time.sleep(0.05)
    assert store.objects == {}
    log.close()
    assert len(store.rows()) == 3 and log.metrics.counts == {"sampled": 3, "written": 3}
    log.record("m", "1", rows(1), {"predict": np.zeros(1)})  # after close: counted, never buffered
    assert log.metrics.counts["dropped_shutdown"] == 1


def test_close_gives_up_after_its_timeout_and_counts_what_was_left() -> None:
    store = MemoryStore()
    store.gate.clear()
    log = writer(store, SERVING_INFERENCE_LOG_BATCH_ROWS="1")
    log.record("m", "1", rows(1), {"predict": np.zeros(1)})
    until(lambda: store.calls == 1)  # that write hangs
    log.record("m", "1", rows(2), {"predict": np.zeros(2)})
    started = time.perf_counter()
    log.close(timeout_s=0.2)
    assert time.perf_counter() - started < 1.0
    assert log.metrics.counts["dropped_shutdown"] == 2
    store.gate.set()


def test_no_writer_thread_drops_samples_and_never_raises(monkeypatch) -> None:
    def refuse(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    log = writer(MemoryStore())
    for _ in range(2):
        log.record("m", "1", rows(1), {"predict": np.zeros(1)})
    log.close()
    assert log.metrics.counts == {"sampled": 2, "dropped_shutdown": 2}


def test_the_periodic_flush_writes_a_partial_batch() -> None:
    store = MemoryStore()
    log = writer(store, SERVING_INFERENCE_LOG_FLUSH_S="0.1")
    log.record("m", "1", rows(1), {"predict": np.zeros(1)})
    until(lambda: len(store.objects) == 1, timeout=2.0)
    log.close()


def test_each_process_copy_writes_its_own_keys() -> None:
    """--workers N: every worker unpickles the model (and its log); no two write the same key."""
    store = MemoryStore()
    original = InferenceLog(settings())  # the real defaults: what kserve pickles into each worker
    copies = [pickle.loads(pickle.dumps(original)) for _ in range(3)]
    for copy in copies:
        copy._store_factory = lambda: store
        copy.record("m", "1", rows(1), {"predict": np.zeros(1)})
        copy.close()
    tokens = {KEY.match(key)["token"] for _, key in store.objects}
    assert len(store.objects) == 3 and len(tokens) == 3


# -- the model's hook ------------------------------------------------------------------------

def logging_model(folder, name: str) -> tuple[SklearnModel, InferenceLog, MemoryStore]:
    store = MemoryStore()
    log = writer(store)
    model = SklearnModel(name, folder, inference_log=log)
    assert model.load()
    return model, log, store


def test_every_v2_and_v1_answer_is_recorded_with_its_version(classifier_dir, diabetes) -> None:
    x = diabetes[0][:3]
    model, log, store = logging_model(classifier_dir, "bc")
    body = orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [3, 10], "data": x.tolist()}],
                         "outputs": [{"name": "predict"}, {"name": "predict_proba"}]})
    answer = orjson.loads(asyncio.run(model.infer_json(body))[0])
    asyncio.run(model.infer_v1(orjson.dumps({"instances": x[:1].tolist()})))
    log.close()
    logged = store.rows()
    assert len(logged) == 4 and {r["version"] for r in logged} == {"1"}
    assert [r["inputs"] for r in logged] == [*x.tolist(), x[0].tolist()]
    proba = answer["outputs"][1]["data"]
    assert [r["outputs"]["predict_proba"] for r in logged[:3]] == [proba[0:2], proba[2:4], proba[4:6]]
    assert logged[3]["outputs"] == {"predict": answer["outputs"][0]["data"][0]}


def test_grpc_and_kserve_route_answers_are_recorded_too(regressor_dir, diabetes) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.infer_type import InferInput, InferRequest

    x = diabetes[0][:2]
    model, log, store = logging_model(regressor_dir, "diabetes-rf")
    message = pb.ModelInferRequest(model_name="diabetes-rf", raw_input_contents=[x.tobytes()])
    message.inputs.add(name="input-0", datatype="FP64", shape=[2, 10])
    grpc_answer = asyncio.run(model.infer_grpc(message))
    (thread_answer,) = model.infer_grpc_together([message])  # what gRPC's threads call for small requests
    kserve_answer = asyncio.run(model.predict(InferRequest("diabetes-rf", [
        InferInput("input-0", [2, 10], "FP64", x.ravel().tolist())])))
    log.close()
    logged = store.rows()
    predicted = np.frombuffer(grpc_answer.raw_output_contents[0], dtype=np.float64).tolist()
    assert np.frombuffer(thread_answer.raw_output_contents[0], dtype=np.float64).tolist() == predicted
    assert [r["inputs"] for r in logged] == [*x.tolist(), *x.tolist(), *x.tolist()]
    assert [r["outputs"]["predict"] for r in logged] == [*predicted, *predicted, *kserve_answer.outputs[0].data]
    assert {r["version"] for r in logged} == {"3"}


@pytest.mark.integration  # spawns the offload pool's process: a few seconds
def test_offloaded_requests_are_sampled_and_logged_like_the_others(regressor_dir, diabetes) -> None:
    from serving.offload import Offloader

    x = diabetes[0]
    store, draws = MemoryStore(), iter([0.0, 0.9, 0.0, 0.0])  # sampled, not sampled, sampled, sampled
    log = InferenceLog(settings(SERVING_INFERENCE_LOG_SAMPLE="0.5", SERVING_INFERENCE_LOG_BATCH_ROWS="400",
                                SERVING_INFERENCE_LOG_MAX_ROWS="400"),
                       store=lambda: store, rand=lambda: next(draws))
    model = SklearnModel("diabetes-rf", regressor_dir, inference_log=log)
    assert model.load()
    offload = Offloader(min_bytes=1, processes=1)

    def v2_body(rows: np.ndarray) -> bytes:
        return orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                                         "data": rows.tolist()}]})

    async def run() -> tuple[dict, list]:
        v2 = orjson.loads((await offload.infer_json(model, v2_body(x[:3]), None))[0])
        await offload.infer_json(model, v2_body(x[3:5]), None)  # not sampled: never reaches the log
        v1 = orjson.loads(await offload.infer_v1(model, orjson.dumps({"instances": x[5:6].tolist()})))
        await offload.infer_json(model, v2_body(x[:442]), None)  # sampled, but more rows than the buffer holds (400)
        return v2, v1["predictions"]

    try:
        v2, v1 = asyncio.run(run())
    finally:
        offload.shutdown()
        # The spawn context started multiprocessing's resource tracker for this test process; a
        # server stops with it, a test must stop it itself (a private call, in 3.11 and 3.12 alike).
        from multiprocessing import resource_tracker
        resource_tracker._resource_tracker._stop()
    log.close()
    logged = store.rows()
    assert [r["inputs"] for r in logged] == x[[0, 1, 2, 5]].tolist()
    assert [r["outputs"]["predict"] for r in logged] == [*v2["outputs"][0]["data"], *v1]
    assert {r["version"] for r in logged} == {"3"} and {r["model"] for r in logged} == {"diabetes-rf"}
    assert log.metrics.counts == {"sampled": 4 + 442, "written": 4, "dropped_buffer_full": 442}
