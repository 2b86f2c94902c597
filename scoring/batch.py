"""Batch scoring (the precompute pattern): a CSV or Parquet file, or every one under a prefix, in, predictions out.

    score(predictor, "s3://data/users.csv")  ->  s3://data/users.predictions.csv  (+ users.rejects.csv)

The input is read, checked and scored in chunks of ``chunk_rows``, so memory stays flat whatever
its size (bench/batch_bench.py measures it). Every row gets the server's checks
(``Predictor.check_frame``); a refused row fails the job (``on_bad_row="fail"``, the default)
or goes to the rejects file with its row number and reason (``"reject"``). The header is
checked against the schema before the first row: a mismatch is one error, nothing scored.

Output columns: the input's key columns (or ``row``, the 0-based data row number), ``predict``,
``predict_proba_<class>`` per class for a classifier, then ``model_name``, ``model_version``
and ``model_sha256``. The format is the input's; rejects are always CSV (reasons are text).

Nothing partial is ever visible: every output is written to a temporary name first (a local
temp file, uploaded under a temporary key), and only when every file of the job is complete
are they moved into place (a server-side copy; locally a rename). A failure anywhere removes
the temporaries and leaves earlier outputs as they were; a re-run replaces each output whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from components.errors import ObjectStoreError
from components.objectstore import ObjectStore
from scoring.errors import BadRow, InputError, SchemaMismatch, ScoringError
from scoring.library import PREDICT, PREDICT_PROBA, S3_SCHEME, Predictor, split_s3
from scoring.progress import Progress

log = logging.getLogger(__name__)

CSV, PARQUET = "csv", "parquet"
FORMATS = {".csv": CSV, ".parquet": PARQUET, ".pq": PARQUET}
OUTPUT_MARK = ".predictions"
REJECTS_MARK = ".rejects"
REJECTS_SUFFIX = ".csv"
TEMP_MARK = ".tmp-"
ROW_COLUMN = "row"
REASON_COLUMN = "reason"
MODEL_COLUMNS = ("model_name", "model_version", "model_sha256")
ON_BAD_ROW = ("fail", "reject")
# Rows per chunk: large enough that per-chunk overhead (pandas, the engine's setup) is noise,
# small enough that a chunk of a wide table stays a few tens of MB.
DEFAULT_CHUNK_ROWS = 50_000
MAX_CHUNK_ROWS = 5_000_000
CONTENT_TYPES = {CSV: "text/csv", PARQUET: "application/vnd.apache.parquet"}

ProgressFactory = Callable[[str], Progress]


@dataclass(frozen=True)
class BatchOptions:
    key_columns: tuple[str, ...] = ()
    on_bad_row: str = "fail"
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def __post_init__(self) -> None:
        if self.on_bad_row not in ON_BAD_ROW:
            raise ScoringError(f"on_bad_row is {self.on_bad_row!r}; expected one of {', '.join(ON_BAD_ROW)}")
        if isinstance(self.chunk_rows, bool) or not isinstance(self.chunk_rows, int) \
                or not 1 <= self.chunk_rows <= MAX_CHUNK_ROWS:
            raise ScoringError(f"chunk_rows is {self.chunk_rows!r}; expected an integer in 1..{MAX_CHUNK_ROWS}")
        keys = tuple(self.key_columns)
        reserved = {ROW_COLUMN, REASON_COLUMN, PREDICT, *MODEL_COLUMNS}
        clash = [k for k in keys if k in reserved or k.startswith(PREDICT_PROBA)]
        if clash or len(set(keys)) != len(keys) or any(not k for k in keys):
            raise ScoringError(f"key_columns {list(keys)!r} must be distinct, non-empty and not output names "
                               f"({', '.join(sorted(reserved))}, {PREDICT_PROBA}_*)")
        object.__setattr__(self, "key_columns", keys)

    @classmethod
    def from_params(cls, key_columns: str, on_bad_row: str, chunk_rows: int) -> "BatchOptions":
        """From pipeline parameters: key_columns is a comma-separated list ("" = row numbers).

        Args:
            key_columns: comma-separated input columns copied to the output ("": row numbers).
            on_bad_row: fail or reject.
            chunk_rows: rows read and scored at a time.

        Returns:
            The BatchOptions.
        """
        return cls(tuple(k.strip() for k in key_columns.split(",") if k.strip()), on_bad_row.strip(), chunk_rows)


@dataclass(frozen=True)
class FileResult:
    input: str
    output: str
    rejects: str | None  # None when on_bad_row=fail
    rows: int
    scored: int
    rejected: int
    seconds: float


@dataclass(frozen=True)
class Counts:
    rows: int = 0
    scored: int = 0
    rejected: int = 0


def input_format(name: str) -> str:
    """The reader a file name calls for, by its suffix.

    Args:
        name: a file name or key.

    Returns:
        The format (csv or parquet); InputError for another suffix.
    """
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{name}: unknown file type {suffix or '(none)'!r}; expected {', '.join(FORMATS)}")
    return FORMATS[suffix]


def is_scorable(name: str) -> bool:
    """A CSV/Parquet file that is not this module's own output or temporary.

    Args:
        name: a file name or key.

    Returns:
        True for an input this module would score.
    """
    base = PurePosixPath(name).name
    return (PurePosixPath(name).suffix.lower() in FORMATS and not base.startswith(".")
            and OUTPUT_MARK not in base and REJECTS_MARK not in base)


def _split_name(location: str) -> tuple[str, str]:
    """'s3://b/dir/users.csv' -> ('s3://b/dir/', 'users.csv'); string-wise, as a path would fold '//'."""
    cut = location.rfind("/") + 1
    return location[:cut], location[cut:]


def output_names(input_name: str) -> tuple[str, str]:
    """'dir/users.csv' -> ('dir/users.predictions.csv', 'dir/users.rejects.csv').

    Args:
        input_name: the input's name or key.

    Returns:
        (predictions name, rejects name), beside the input.
    """
    folder, base = _split_name(input_name)
    path = PurePosixPath(base)
    return folder + path.stem + OUTPUT_MARK + path.suffix, folder + path.stem + REJECTS_MARK + REJECTS_SUFFIX


# -- reading ---------------------------------------------------------------------------------

@dataclass
class _Chunks:
    """An input file's header (names, dtypes as far as known) and its chunks."""

    columns: list[str]
    dtypes: dict[str, Any]
    chunks: Callable[[], Iterator[tuple[pd.DataFrame, float | None]]]  # (chunk, fraction of the file done)


def _open_csv(path: Path, wanted: list[str], text: list[str], chunk_rows: int) -> _Chunks:
    try:
        header = pd.read_csv(path, nrows=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name} is not a readable CSV file: {exc}") from None
    columns = [str(c) for c in header.columns]
    size = max(path.stat().st_size, 1)

    def chunks() -> Iterator[tuple[pd.DataFrame, float | None]]:
        with path.open("rb") as handle:
            reader = pd.read_csv(handle, chunksize=chunk_rows, usecols=wanted, dtype={name: str for name in text})
            try:
                for chunk in reader:
                    yield chunk, min(handle.tell() / size, 1.0)
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise InputError(f"{path.name} is not a readable CSV file: {exc}") from None

    return _Chunks(columns, {}, chunks)


def _open_parquet(path: Path, wanted: list[str], text: list[str], chunk_rows: int) -> _Chunks:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path.name} is not a readable Parquet file: {exc}") from None
    schema = parquet.schema_arrow
    dtypes: dict[str, Any] = {}
    for item in schema:
        try:
            dtypes[item.name] = np.dtype(item.type.to_pandas_dtype())
        except (NotImplementedError, TypeError):
            dtypes[item.name] = np.dtype(object)
    total = max(parquet.metadata.num_rows, 1)

    def chunks() -> Iterator[tuple[pd.DataFrame, float | None]]:
        done = 0
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
            frame = batch.to_pandas()
            done += len(frame)
            yield frame, done / total

    return _Chunks(list(schema.names), dtypes, chunks)


def _open(path: Path, fmt: str, wanted: list[str], text: list[str], chunk_rows: int) -> _Chunks:
    """text: columns read as text from CSV (the keys: an id like 007 must come back as 007)."""
    return (_open_csv if fmt == CSV else _open_parquet)(path, wanted, text, chunk_rows)


# -- writing ---------------------------------------------------------------------------------

class _TableWriter:
    """Appends DataFrames to one CSV or Parquet file; the first chunk fixes a Parquet file's schema.

    CSV goes through pyarrow's writer: 3-4x faster than DataFrame.to_csv on these frames (measured
    on 200,000 rows), floats in their shortest round-trip form as well, every string value quoted
    (any CSV reader takes it). Each chunk is converted on its own, so a rejects file may hold a
    column that is text in one chunk and numbers in the next.
    """

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._csv = None
        self._parquet = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        if self.fmt == CSV:
            first = self._csv is None
            if first:
                self._csv = self.path.open("wb")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pa_csv.write_csv(table, self._csv, pa_csv.WriteOptions(include_header=first))
        elif self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        else:
            self._parquet.write_table(pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False))

    def close(self) -> None:
        for writer in (self._csv, self._parquet):
            if writer is not None:
                writer.close()


# -- one file --------------------------------------------------------------------------------

def _output_frame(predictor: Predictor, keys: pd.DataFrame, results: dict[str, np.ndarray]) -> pd.DataFrame:
    columns: dict[str, Any] = {name: keys[name].to_numpy() for name in keys.columns}
    columns[PREDICT] = results[PREDICT]
    if PREDICT_PROBA in results:
        proba = results[PREDICT_PROBA].reshape(len(keys), -1)
        for i, label in enumerate(predictor.classes):
            columns[f"{PREDICT_PROBA}_{label}"] = proba[:, i]
    n = len(keys)
    columns[MODEL_COLUMNS[0]] = np.repeat(predictor.name, n)
    columns[MODEL_COLUMNS[1]] = np.repeat(np.int64(predictor.version), n)
    columns[MODEL_COLUMNS[2]] = np.repeat(predictor.sha256, n)
    return pd.DataFrame(columns)


def score_file(predictor: Predictor, input_path: Path, output_path: Path, rejects_path: Path | None,
               options: BatchOptions, where: str, progress: Progress | None = None) -> Counts:
    """Score one local file into output_path (and rejects_path with on_bad_row=reject), chunk by chunk.

    where: how messages name the input (its URI). The caller owns both paths: on an exception
    they hold part of the output and must be deleted.

    Args:
        predictor: the loaded model.
        input_path: the local input file.
        output_path: where the predictions go.
        rejects_path: where refused rows go (on_bad_row=reject), else None.
        options: key columns, bad-row policy, chunk size.
        where: how messages name the input (its URI).
        progress: where progress is reported, or None.

    Returns:
        The row counts (read, scored, rejected).
    """
    fmt = input_format(input_path.name)
    features = list(predictor.feature_names)
    keys = list(options.key_columns)
    wanted = list(dict.fromkeys(keys + features))
    source = _open(input_path, fmt, wanted, [k for k in keys if k not in features], options.chunk_rows)
    missing_keys = [k for k in keys if k not in source.columns]
    if missing_keys:
        raise SchemaMismatch(f"{where} lacks key column(s) {', '.join(missing_keys)} "
                             f"(found: {', '.join(source.columns)})")
    predictor.check_columns(source.columns, source.dtypes, where)
    return _score_chunks(predictor, source, fmt, output_path, rejects_path, options, where, progress)


def _score_chunks(predictor: Predictor, source: _Chunks, fmt: str, output_path: Path, rejects_path: Path | None,
                  options: BatchOptions, where: str, progress: Progress | None) -> Counts:
    keys = list(options.key_columns)
    output, rejects = _TableWriter(output_path, fmt), _TableWriter(rejects_path, CSV) if rejects_path else None
    counts = Counts()
    try:
        for chunk, fraction in source.chunks():
            first_row = counts.rows
            checked = predictor.check_frame(chunk, where, first_row)
            bad = np.flatnonzero(~checked.ok)
            if bad.size and rejects is None:
                position = int(bad[0])
                raise BadRow(f"{where} row {first_row + position}: {checked.reasons[position]}; nothing was written "
                             "(on_bad_row=reject sends such rows to a rejects file instead)", first_row + position)
            row_numbers = np.arange(first_row, first_row + len(chunk), dtype=np.int64)
            key_frame = chunk[keys].reset_index(drop=True) if keys else pd.DataFrame({ROW_COLUMN: row_numbers})
            good = np.flatnonzero(checked.ok)
            results = predictor.predict_checked(checked.x[good])
            output.write(_output_frame(predictor, key_frame.iloc[good].reset_index(drop=True), results))
            if rejects is not None and (bad.size or counts.rows == 0):
                refused = {ROW_COLUMN: row_numbers[bad]}
                refused.update({k: chunk[k].to_numpy()[bad] for k in keys if k != ROW_COLUMN})
                refused.update({f: chunk[f].to_numpy()[bad] for f in predictor.feature_names if f not in keys})
                refused[REASON_COLUMN] = [checked.reasons[int(i)] for i in bad]
                rejects.write(pd.DataFrame(refused))
            counts = Counts(counts.rows + len(chunk), counts.scored + good.size, counts.rejected + bad.size)
            if progress is not None:
                progress.update(counts.rows, fraction)
        if counts.rows == 0:  # an empty input still gets an output with its header
            empty = predictor.check_frame(pd.DataFrame({f: pd.Series(dtype=float) for f in predictor.feature_names}),
                                          where)
            key_frame = pd.DataFrame({k: pd.Series(dtype=object) for k in keys}) if keys \
                else pd.DataFrame({ROW_COLUMN: pd.Series(dtype=np.int64)})
            output.write(_output_frame(predictor, key_frame, predictor.predict_checked(empty.x)))
            if rejects is not None:
                rejects.write(pd.DataFrame(columns=[ROW_COLUMN, *keys, *predictor.feature_names, REASON_COLUMN]))
    finally:
        output.close()
        if rejects is not None:
            rejects.close()
    return counts


# -- locations -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    """One input file and where its outputs go."""

    input: str  # URI or path, as given
    output: str
    rejects: str | None


def plan(input_location: str, output_location: str | None, options: BatchOptions,
         store: ObjectStore | None = None) -> list[_Job]:
    """The files a job scores and where each output goes; InputError when there is nothing to score.

    input_location: a file, or a prefix / folder (every CSV and Parquet file under it, this module's
    outputs excepted). output_location: None for "beside the input"; a file name for a single
    input; a folder (ending in '/' or without a file suffix) to collect the outputs.

    Args:
        input_location: a file, or a prefix / folder (every CSV and Parquet file under it, this module's outputs
            excepted).
        output_location: None for "beside the input"; a file name for a single input; a folder (ending in '/' or
            without a file suffix) to collect the outputs.
        options: the batch options.
        store: the object store for s3:// locations.

    Returns:
        One job per input file.
    """
    is_s3 = input_location.startswith(S3_SCHEME)
    if output_location and output_location.startswith(S3_SCHEME) != is_s3:
        raise InputError(f"input {input_location} and output {output_location} must both be s3:// or both local")
    inputs = _list_inputs(input_location, store) if is_s3 else _list_local(input_location)
    if not inputs:
        raise InputError(f"no CSV or Parquet file ({', '.join(FORMATS)}) at {input_location}")
    single = len(inputs) == 1 and inputs[0] == input_location
    jobs = []
    for name in inputs:
        output, rejects = output_names(name)
        if output_location:
            out = output_location
            folder = out.endswith("/") or PurePosixPath(out).suffix.lower() not in FORMATS
            if not folder and not single:
                raise InputError(f"output {out} is one file but {input_location} holds {len(inputs)}: "
                                 "give a folder (ending in '/')")
            if folder:
                output, rejects = (out.rstrip("/") + "/" + _split_name(p)[1] for p in output_names(name))
            else:
                if input_format(out) != input_format(name):
                    raise InputError(f"output {out} must have the input's format ({PurePosixPath(name).suffix})")
                output = out
                rejects = output_names(out)[1].replace(OUTPUT_MARK, "")
        jobs.append(_Job(name, output, rejects if options.on_bad_row == "reject" else None))
    return jobs


def _list_inputs(uri: str, store: ObjectStore | None) -> list[str]:
    bucket, key = split_s3(uri)
    store = store or ObjectStore.from_env()
    if key and not key.endswith("/") and PurePosixPath(key).suffix.lower() in FORMATS:
        if not store.exists(bucket, key):
            raise InputError(f"{uri} does not exist")
        return [uri]
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    return [f"{S3_SCHEME}{bucket}/{k}" for k in store.list_keys(bucket, prefix) if is_scorable(k)]


def _list_local(location: str) -> list[str]:
    path = Path(location)
    if path.is_file():
        input_format(path.name)
        return [location]
    if not path.is_dir():
        raise InputError(f"{location} does not exist")
    return sorted(str(p) for p in path.rglob("*") if p.is_file() and is_scorable(str(p.relative_to(path))))


# -- the job ---------------------------------------------------------------------------------

@dataclass
class _Staged:
    """Outputs written under temporary names, waiting to be moved into place."""

    store: ObjectStore | None
    moves: list[tuple[str, str]] = field(default_factory=list)  # (temporary, final)

    def discard(self) -> None:
        for temporary, _ in self.moves:
            with contextlib.suppress(OSError, ObjectStoreError):
                _remove(self.store, temporary)


def _temporary_name(final: str) -> str:
    folder, base = _split_name(final)
    return f"{folder}.{base}{TEMP_MARK}{uuid.uuid4().hex[:12]}"


def _remove(store: ObjectStore | None, location: str) -> None:
    if location.startswith(S3_SCHEME):
        store.remove(*split_s3(location))
    else:
        Path(location).unlink(missing_ok=True)


def _put(store: ObjectStore | None, local: Path, location: str, fmt: str) -> None:
    """The finished local file under its temporary name (an upload, or a rename on the same disk)."""
    if location.startswith(S3_SCHEME):
        bucket, key = split_s3(location)
        store.upload_file(bucket, key, local, CONTENT_TYPES[fmt])
    else:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(local, location)  # beside the final name: the last step is then a same-disk rename


def _move(store: ObjectStore | None, temporary: str, final: str) -> None:
    """Into place in one step: S3 server-side copy (the object appears whole) then delete; locally a rename."""
    if final.startswith(S3_SCHEME):
        bucket, temp_key = split_s3(temporary)
        store.copy(bucket, temp_key, split_s3(final)[1])
        store.remove(bucket, temp_key)
    else:
        os.replace(temporary, final)


def score(predictor: Predictor, input_location: str, output_location: str | None = None,
          options: BatchOptions = BatchOptions(), store: ObjectStore | None = None,
          progress: ProgressFactory | None = None) -> list[FileResult]:
    """Score every file of input_location with predictor; outputs appear only when all are complete.

    Args:
        predictor: the loaded model.
        input_location: as for plan.
        output_location: as for plan.
        options: the batch options.
        store: the object store (default: from MINIO_* settings for s3://).
        progress: makes a progress reporter per file, or None.

    Returns:
        One FileResult per input file.
    """
    if input_location.startswith(S3_SCHEME) and store is None:
        store = ObjectStore.from_env()
    jobs = plan(input_location, output_location, options, store)
    staged = _Staged(store)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="batch-") as work:
            for number, job in enumerate(jobs):
                results.append(_stage(predictor, job, Path(work) / str(number), options, staged, progress))
        moved: list[str] = []
        for temporary, final in staged.moves:
            try:
                _move(store, temporary, final)
            except (OSError, ObjectStoreError) as exc:
                raise ScoringError(f"moving the output into {final} failed: {exc}; already in place: "
                                   f"{', '.join(moved) or 'none'}") from exc
            moved.append(final)
    except BaseException:
        staged.discard()
        raise
    return results


def _stage(predictor: Predictor, job: _Job, work: Path, options: BatchOptions, staged: _Staged,
           progress: ProgressFactory | None) -> FileResult:
    work.mkdir()
    started = time.monotonic()
    fmt = input_format(job.input)
    name = PurePosixPath(job.input).name
    if job.input.startswith(S3_SCHEME):
        local_input = work / name
        try:
            staged.store.download_file(*split_s3(job.input), local_input)
        except ObjectStoreError as exc:
            raise InputError(f"cannot read {job.input}: {exc}") from exc
    else:
        local_input = Path(job.input)
    output, rejects = work / f"out-{name}", work / "rejects.csv" if job.rejects else None
    bar = progress(name) if progress else None
    counts = score_file(predictor, local_input, output, rejects, options, job.input, bar)
    if bar is not None:
        bar.close()
    # Rejects go before the output: the output moving last is what marks the job done.
    for local, final, kind in ((rejects, job.rejects, CSV), (output, job.output, fmt)):
        if local is None:
            continue
        temporary = _temporary_name(final)
        staged.moves.append((temporary, final))
        _put(staged.store, local, temporary, kind)
    seconds = time.monotonic() - started
    log.info("%s: %d rows, %d scored, %d rejected -> %s", job.input, counts.rows, counts.scored, counts.rejected,
             job.output)
    return FileResult(job.input, job.output, job.rejects, counts.rows, counts.scored, counts.rejected, seconds)


def model_uri(bucket: str, model_name: str, version: str = "production") -> str:
    """s3://bucket/name/production/ or s3://bucket/name/v<N>/ ("3" and "v3" both name v3).

    Args:
        bucket: the bucket.
        model_name: the model's folder.
        version: production, or N / vN.

    Returns:
        The model folder's s3:// URI.
    """
    from components.registry import PRODUCTION, check_location

    check_location(bucket, model_name)
    text = str(version).strip().lower()
    if text in ("", PRODUCTION):
        return f"{S3_SCHEME}{bucket}/{model_name}/{PRODUCTION}/"
    number = text.removeprefix("v")
    if not number.isdigit() or int(number) < 1:
        raise ScoringError(f"model_version {version!r} is invalid: expected 'production' or v<N> (e.g. v3)")
    return f"{S3_SCHEME}{bucket}/{model_name}/v{int(number)}/"
