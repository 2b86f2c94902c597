"""A sampled copy of the endpoint's traffic, written to the object store in batches, off the request path.

Off unless ``SERVING_INFERENCE_LOG=s3://bucket/prefix/`` is set. Then each answered request is
sampled with probability ``SERVING_INFERENCE_LOG_SAMPLE``; a sampled request's rows, outputs,
model version and timestamp are kept in memory and a background thread (one per serving process)
writes them as gzip-compressed JSON lines:

    s3://<bucket>/<prefix>model=<name>/date=<YYYY-MM-DD>/<host>-<pid>-<token>-<seq>.jsonl.gz

one line per input row, schema order, the UTC date of ``ts`` (an object holds one model and one date):

    {"ts": "2026-12-02T20:31:05.123456Z", "model": "diabetes-rf", "version": "3",
     "inputs": [0.03, 0.05, ...], "outputs": {"predict": 151.2, "predict_proba": [0.1, 0.9]}}

``outputs`` holds what the request asked for (``predict`` a number or class label, ``predict_proba``
a list in ``classes_`` order). ``<token>`` is random per process start, so ``--workers N`` processes
and a restarted container (pid 1 again) never write the same key; objects are never rewritten.

Inference never waits for the store and never fails because of it: ``record`` (on the event loop)
only appends references to a bounded buffer; serialising, compressing and the PUT happen in the
writer thread. A full buffer (the store is slow or down) and a failed write drop rows, counted in
/metrics (``serving_inference_log_*``). Shutdown flushes what is buffered, for at most
``SERVING_INFERENCE_LOG_CLOSE_TIMEOUT_S``. Requests big enough to be offloaded to the helper process
(``SERVING_OFFLOAD_BYTES``) are sampled alike before they go (``sample``); the helper hands a sampled
one's rows and outputs back with its answer when the buffer has room for them (``keep``), else only
their number, counted as dropped (``dropped``).

The store is reached with the model download's settings: ``AWS_ENDPOINT_URL`` / ``AWS_ACCESS_KEY_ID``
/ ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``, or the project's ``MINIO_*`` ones, which win.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
from itertools import chain, repeat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import orjson

from contract.errors import ObjectStoreConfigError
from contract.store import StoreSettings, minio_client
from serving.metrics import InferenceLogMetrics
from serving.settings import ServingSettings, SettingsError

log = logging.getLogger(__name__)

LOG_ENV = "SERVING_INFERENCE_LOG"
SAMPLE_ENV = "SERVING_INFERENCE_LOG_SAMPLE"
BATCH_ROWS_ENV = "SERVING_INFERENCE_LOG_BATCH_ROWS"
FLUSH_S_ENV = "SERVING_INFERENCE_LOG_FLUSH_S"
MAX_ROWS_ENV = "SERVING_INFERENCE_LOG_MAX_ROWS"
CLOSE_TIMEOUT_ENV = "SERVING_INFERENCE_LOG_CLOSE_TIMEOUT_S"

CONTENT_TYPE = "application/x-ndjson"
CHUNK_ROWS = 512  # rows encoded between two GIL hand-offs to the event loop (about 0.3 ms of work)
WRITE_TIMEOUT_S = 30.0  # one batch PUT; the pipeline client allows 120 s for model files
GZIP_LEVEL = 1  # 1-row lines shrink about 2.9x at level 1, 3x at 5 for three times the CPU
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class InferenceLogConfigError(ValueError):
    """An inference-log setting has a value outside what it accepts."""


class Store(Protocol):
    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = ...) -> Any: ...


@dataclass(frozen=True)
class InferenceLogSettings:
    bucket: str
    prefix: str  # "" or ends with "/"
    store: StoreSettings
    sample: float = 1.0
    batch_rows: int = 1000  # a write starts once this many rows wait ...
    flush_s: float = 10.0  # ... or this long after the last one
    max_rows: int = 20000  # rows held (waiting or being written); beyond it samples are dropped
    close_timeout_s: float = 5.0  # the final flush on shutdown; within the grace period (SERVING_GRACE_S)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> InferenceLogSettings | None:
        """The settings from the environment (serving.settings reads them), or None when logging is off."""
        try:
            return cls.from_settings(ServingSettings.from_env(environ), environ)
        except SettingsError as exc:
            raise InferenceLogConfigError(str(exc)) from None

    @classmethod
    def from_settings(cls, settings: ServingSettings,
                      environ: Mapping[str, str] = os.environ) -> InferenceLogSettings | None:
        """The inference log's part of the server's settings, checked, with the store's credentials.

        Args:
            settings: what python -m serving read at start.
            environ: where the object store's MINIO_* / AWS_* settings are read.

        Returns:
            The settings, or None when SERVING_INFERENCE_LOG is unset or empty (logging off);
            InferenceLogConfigError for a bad URI, a buffer smaller than a batch or no credentials.
        """
        raw_uri = settings.inference_log
        if not raw_uri:
            return None
        bucket, prefix = _split_uri(raw_uri)
        values = {"sample": settings.inference_log_sample, "batch_rows": settings.inference_log_batch_rows,
                  "flush_s": settings.inference_log_flush_s, "max_rows": settings.inference_log_max_rows,
                  "close_timeout_s": settings.inference_log_close_timeout_s}
        if values["max_rows"] < values["batch_rows"]:
            raise InferenceLogConfigError(
                f"{MAX_ROWS_ENV}={values['max_rows']} is below {BATCH_ROWS_ENV}={values['batch_rows']}: "
                "the buffer must hold at least one batch")
        try:
            store = store_settings(environ)
        except ObjectStoreConfigError as exc:
            raise InferenceLogConfigError(f"{LOG_ENV}={raw_uri!r} needs the object store: {exc}") from None
        return cls(bucket, prefix, store, **values)

def _split_uri(raw: str) -> tuple[str, str]:
    if not raw.startswith("s3://"):
        raise InferenceLogConfigError(f"{LOG_ENV}={raw!r} is invalid: expected s3://bucket/prefix/")
    bucket, _, prefix = raw[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket):
        raise InferenceLogConfigError(
            f"{LOG_ENV}={raw!r} is invalid: bucket {bucket!r} is not an S3 bucket name "
            "(3-63 lowercase letters, digits, dots, hyphens); expected s3://bucket/prefix/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class _ObjectWriter:
    """Writes objects through the contract's S3 client (serving/ does not import the pipeline's ObjectStore).

    A shorter read timeout than the pipeline's: a stalled store must not hold the writer thread long;
    a failure raises, and the writer thread counts the batch as dropped.
    """

    def __init__(self, settings: StoreSettings) -> None:
        self._client = minio_client(settings, read_timeout_s=WRITE_TIMEOUT_S)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


def store_settings(environ: Mapping[str, str]) -> StoreSettings:
    """The model download's store settings: MINIO_* (the project's), else the AWS_* kserve_storage reads."""
    env = dict(environ)
    if not env.get("MINIO_REGION") and env.get("AWS_DEFAULT_REGION"):
        env["MINIO_REGION"] = env["AWS_DEFAULT_REGION"]
    return StoreSettings.from_env(env.get("MINIO_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None, env=env)


# One sampled request as the event loop hands it over, references only, nothing converted:
# (ts, model, version, x, outputs). A plain tuple: a dataclass or NamedTuple costs 0.3-0.5 µs more per request.
_Entry = tuple[float, str, "str | None", np.ndarray, Mapping[str, np.ndarray]]


class InferenceLog:
    """One per model and serving process: ``record`` from the event loop, a writer thread for the store."""

    def __init__(self, settings: InferenceLogSettings, store: Callable[[], Store] | None = None,
                 rand: Callable[[], float] = random.random, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._store_factory = store
        self._rand = rand
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        # Per process: a worker (--workers N) unpickles the settings and starts its own buffer and thread.
        self.metrics = InferenceLogMetrics()
        self._cond = threading.Condition(threading.Lock())  # not re-entered; half the cost of the default RLock
        self._pending: list[_Entry] = []
        self._queued = 0  # rows in _pending
        self._held = 0  # rows in _pending plus the batch being written: what max_rows bounds
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._token = secrets.token_hex(4)
        self._seq = 0
        self._host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
        self._store: Store | None = None
        self._failing = False

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "_store_factory": self._store_factory,
                "_rand": self._rand, "_clock": self._clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # -- on the event loop ---------------------------------------------------------------

    def record(self, model: str, version: str | None, x: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        """Keep a sampled request's rows and outputs for the writer; never raises, never blocks on I/O.

        Args:
            model: the model's name (the ``model=`` partition).
            version: the version that answered, or None.
            x: the request's rows in schema order (kept by reference: the caller must not change them).
            outputs: each requested output, one value or row per input row.

        Returns:
            None; a request not sampled, or one the full buffer cannot take, is only counted.
        """
        if self._rand() < self.settings.sample:
            self.keep(model, version, x, outputs)

    def sample(self) -> int | None:
        """Draw whether a request answered elsewhere (the offload pool) is logged, before it is computed.

        Returns:
            None when it is not sampled; else how many rows the buffer can still take (maybe 0): the
            pool hands back a sampled request's rows when they fit, else only their number for ``dropped``.
        """
        if self._rand() >= self.settings.sample:
            return None
        return max(self.settings.max_rows - self._held, 0)  # read without the lock: keep() checks again

    def keep(self, model: str, version: str | None, x: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        """``record`` for a request already sampled (by ``record`` or ``sample``).

        Args:
            model: the model's name.
            version: the version that answered, or None.
            x: the request's rows in schema order (kept by reference).
            outputs: each requested output, one value or row per input row.

        Returns:
            None; when the buffer cannot take the rows they are counted as dropped.
        """
        rows = len(x)
        with self._cond:
            counts = self.metrics.counts
            counts["sampled"] += rows
            if self._closing:
                counts["dropped_shutdown"] += rows
                return
            if self._held + rows > self.settings.max_rows:
                counts["dropped_buffer_full"] += rows
                return
            self._pending.append((self._clock(), model, version, x, outputs))
            self._queued += rows
            self._held += rows
            self.metrics.buffered = self._held
            if self._thread is None:
                self._start()
            elif self._queued >= self.settings.batch_rows:
                self._cond.notify()

    def dropped(self, rows: int) -> None:
        """A sampled request whose rows never reached the buffer: more than it could take (``sample``'s room).

        Args:
            rows: how many rows the request had.

        Returns:
            None; the rows count as sampled and dropped (buffer_full).
        """
        with self._cond:
            self.metrics.counts["sampled"] += rows
            self.metrics.counts["dropped_buffer_full"] += rows

    # -- lifecycle -------------------------------------------------------------------------

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": the request must not fail for the log
            log.warning("inference log: no writer thread, samples dropped", extra={"error": str(exc)})
            self._closing = True  # later samples are counted as dropped, the request still answered
            return
        self._thread = thread
        _OPEN.append(self)

    def close(self, timeout_s: float | None = None) -> None:
        """Write what is buffered, waiting at most ``timeout_s``; rows still waiting then are dropped."""
        timeout_s = self.settings.close_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._cond:
            self._closed = True
            if self._pending:  # the store did not take them in time (a write may still be in flight)
                self.metrics.counts["dropped_shutdown"] += self._queued
                log.warning("inference log: rows not written at shutdown", extra={
                    "rows": self._queued, "uri": self.settings.uri, "timeout_s": timeout_s})
                self._held -= self._queued
                self._pending, self._queued = [], 0
                self.metrics.buffered = self._held

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.settings.flush_s
                while not self._closing and self._queued < self.settings.batch_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, rows, closing = self._pending, self._queued, self._closing
                self._pending, self._queued = [], 0
            if batch:
                try:
                    self._write(batch)
                finally:
                    with self._cond:
                        self._held -= rows
                        self.metrics.buffered = self._held
            if closing:
                return

    def _write(self, batch: list[_Entry]) -> None:
        for (model, date), chunks in _partitions(batch).items():
            data = b"".join(chunks)
            rows = data.count(b"\n")  # one line per row; JSON text escapes every newline inside it
            self._seq += 1
            key = (f"{self.settings.prefix}model={model}/date={date}/"
                   f"{self._host}-{os.getpid()}-{self._token}-{self._seq:06d}.jsonl.gz")
            try:
                if self._store is None:
                    self._store = self._store_factory() if self._store_factory else _ObjectWriter(self.settings.store)
                self._store.put_bytes(self.settings.bucket, key, gzip.compress(data, GZIP_LEVEL),
                                      content_type=CONTENT_TYPE)
            except Exception as exc:  # the store is down, slow or refusing: drop, count, keep serving
                with self._cond:
                    self.metrics.counts["dropped_store_error"] += rows
                if not self._failing:  # one line per outage, not one per batch
                    log.warning("inference log: write failed, rows dropped until the store answers", extra={
                        "uri": f"s3://{self.settings.bucket}/{key}", "rows": rows,
                        "error": f"{type(exc).__name__}: {exc}"})
                self._failing = True
                continue
            if self._failing:
                log.warning("inference log: writing again", extra={"uri": self.settings.uri})
            self._failing = False
            with self._cond:
                self.metrics.counts["written"] += rows
                self.metrics.last_flush = self._clock()


def _partitions(batch: list[_Entry]) -> dict[tuple[str, str], list[bytes]]:
    """(model, UTC date) -> its rows as JSON lines, in chunks of whole lines (one chunk per run of alike entries).

    Encoding is batched: consecutive entries of one model, version, date and set of outputs are
    stacked into one array per field and each array goes through a single orjson call; only the
    joining of a line's pieces is per row. Per-row dicts and ``tolist`` objects cost about twice the
    writer CPU, all of it under the GIL the event loop needs.
    """
    groups: dict[tuple[str, str], list[bytes]] = {}
    second, date, prefix = None, "", b""
    run: list[_Entry] = []
    stamps: list[bytes] = []
    run_key: tuple = ()
    run_rows = 0
    for entry in batch:
        ts, model, version, x, outputs = entry
        if int(ts) != second:  # formatting a time costs microseconds; most entries share a second
            second = int(ts)
            moment = datetime.fromtimestamp(second, timezone.utc)
            date, prefix = moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m-%dT%H:%M:%S.").encode()
        key = (model, version, date, tuple(outputs))
        if key != run_key or run_rows >= CHUNK_ROWS:
            if run:
                groups.setdefault((run_key[0], run_key[2]), []).append(_encode_run(run, stamps))
                time.sleep(0)  # let the event loop have the GIL now, not after the 5 ms switch interval
            run, stamps, run_key, run_rows = [], [], key, 0
        run.append(entry)
        stamps.append(prefix + b"%06dZ" % min(int((ts - second) * 1e6), 999_999))
        run_rows += len(x)
    if run:
        groups.setdefault((run_key[0], run_key[2]), []).append(_encode_run(run, stamps))
    return groups


def _encode_run(run: list[_Entry], stamps: list[bytes]) -> bytes:
    """Entries of one model, version, date and set of outputs -> their JSON lines, one per row, joined.

    Args:
        run: the entries, in the order they were recorded.
        stamps: each entry's ``ts`` as ISO 8601 UTC text.

    Returns:
        The lines, each ending in a newline.
    """
    _, model, version, _, first_outputs = run[0]
    if any(len(x) != 1 for _, _, _, x, _ in run):  # one stamp per row
        stamps = [stamp for (_, _, _, x, _), stamp in zip(run, stamps) for stamp in [stamp] * len(x)]
    names = list(first_outputs)
    columns: list[Iterable[bytes]] = [
        repeat(b'{"ts":"'), stamps,
        repeat(b'","model":' + orjson.dumps(model) + b',"version":' + orjson.dumps(version) + b',"inputs":'),
        _values_json([x for _, _, _, x, _ in run])]
    for i, name in enumerate(names):
        columns += [repeat((b',"outputs":{' if i == 0 else b",") + orjson.dumps(name) + b":"),
                    _values_json([outputs[name] for _, _, _, _, outputs in run])]
    columns.append(repeat(b"}}\n" if names else b',"outputs":{}}\n'))
    # zip stops at the shortest column, the stamps (one per row); the joining runs in C, not per row in Python.
    return b"".join(chain.from_iterable(zip(*columns)))


def _values_json(arrays: list[np.ndarray]) -> list[bytes]:
    """Arrays of one field -> the JSON of each element of their first axis (a number, a label or a list).

    One orjson call for them all when they share a numeric dtype (the usual case: one model version);
    else one per array, so that ints next to floats stay ints as they were answered.
    """
    first = arrays[0]
    if len(arrays) > 1 and not all(a.dtype == first.dtype and a.shape[1:] == first.shape[1:] for a in arrays):
        return [text for array in arrays for text in _values_json([array])]
    stacked = first if len(arrays) == 1 else np.concatenate(arrays)
    if stacked.dtype.kind in "biuf" and stacked.ndim in (1, 2) and stacked.size:
        try:
            text = orjson.dumps(np.ascontiguousarray(stacked, stacked.dtype.newbyteorder("=")),
                                option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:  # a dtype orjson does not take (float16, say): the slow way below
            pass
        else:
            if stacked.ndim == 1:
                return text[1:-1].split(b",")
            return [b"[" + row + b"]" for row in text[2:-2].split(b"],[")]
    return [orjson.dumps(value) for value in stacked.tolist()]  # labels as text, objects, other shapes


_OPEN: list[InferenceLog] = []  # logs whose writer runs in this process


def close_all(timeout_s: float | None = None) -> None:
    """Flush and stop every log of this process (the server calls it once it has stopped serving)."""
    while _OPEN:
        _OPEN.pop().close(timeout_s)
