"""Batch scoring benchmark: rows/s against scikit-learn's own predict on the same chunks, and peak RSS.

    python bench/batch_bench.py [--rows 2000000] [--small 250000] [--chunk-rows 50000] [--repeat 3]

1. Throughput, one process: a diabetes-shaped CSV is scored end to end (read, the server's row
   checks, the engine, write) and, on the same chunks, scikit-learn's own ``predict`` is timed
   alone. The ratio printed is batch rows/s over sklearn-predict rows/s.
2. Memory: the scorer runs in a fresh process on a small and a large file (same chunk size) and
   reports its peak RSS (ru_maxrss); a flat peak means memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_model(folder: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    from tests.batch.conftest import write_model_folder

    frame = load_diabetes(as_frame=True).frame
    x = frame.drop(columns="target")
    model = RandomForestRegressor(n_estimators=100, random_state=42).fit(x, frame["target"])
    write_model_folder(folder, model, x, "regression")


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    from sklearn.datasets import load_diabetes

    x = load_diabetes(as_frame=True).frame.drop(columns="target")
    rng = np.random.default_rng(seed)
    with path.open("w") as handle:
        handle.write(",".join(x.columns) + "\n")
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            block = x.to_numpy()[rng.integers(0, len(x), n)] + rng.normal(0, 0.005, (n, x.shape[1]))
            np.savetxt(handle, block, delimiter=",", fmt="%.6f")


def child(model_dir: str, csv: str, chunk_rows: int) -> None:
    """Score one file in this process and print its peak RSS (MB) and rows/s as JSON."""
    from scoring import batch, load_model

    predictor = load_model(model_dir)
    started = time.perf_counter()
    (result,) = batch.score(predictor, csv, options=batch.BatchOptions(chunk_rows=chunk_rows))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": result.rows, "seconds": seconds, "peak_mb": peak_mb}))


def throughput(model_dir: Path, csv: Path, chunk_rows: int, repeat: int) -> dict:
    """Best of ``repeat`` alternating passes of each side: on a shared machine the best pass is the
    one least disturbed by other work, and alternating keeps a slow spell from hitting one side only."""
    import joblib

    from scoring import batch, load_model

    predictor = load_model(model_dir)
    sklearn_model = joblib.load(model_dir / "model.joblib")
    chunks = [chunk[list(predictor.feature_names)] for chunk in pd.read_csv(csv, chunksize=chunk_rows)]
    rows = sum(len(chunk) for chunk in chunks)
    for x in chunks:
        np.testing.assert_array_equal(predictor.predict(x), sklearn_model.predict(x))  # same numbers, every chunk
    sklearn_best = batch_best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for x in chunks:
            sklearn_model.predict(x)
        sklearn_best = min(sklearn_best, time.perf_counter() - started)
        started = time.perf_counter()
        batch.score(predictor, str(csv), options=batch.BatchOptions(chunk_rows=chunk_rows))
        batch_best = min(batch_best, time.perf_counter() - started)
    return {"rows": rows, "batch_rps": rows / batch_best, "sklearn_rps": rows / sklearn_best}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the large file")
    parser.add_argument("--small", type=int, default=250_000, help="rows of the small file (and the throughput run)")
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating passes of each side (best counts)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.chunk_rows)
        return 0
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as work:
        work_dir = Path(work)
        make_model(work_dir / "model")
        sizes = {}
        for rows in (args.small, args.rows):
            make_csv(work_dir / f"rows-{rows}.csv", rows)
        t = throughput(work_dir / "model", work_dir / f"rows-{args.small}.csv", args.chunk_rows, args.repeat)
        print(f"throughput, {t['rows']:,} rows, chunks of {args.chunk_rows:,}, one process, best of {args.repeat}:")
        print(f"  batch scoring (read+check+engine+write): {t['batch_rps']:,.0f} rows/s")
        print(f"  scikit-learn predict alone, same chunks: {t['sklearn_rps']:,.0f} rows/s")
        print(f"  ratio batch / sklearn predict: {t['batch_rps'] / t['sklearn_rps']:.2f}x")
        for rows in (args.small, args.rows):
            out = subprocess.run([sys.executable, __file__, "--chunk-rows", str(args.chunk_rows), "--child",
                                  str(work_dir / "model"), str(work_dir / f"rows-{rows}.csv")],
                                 check=True, capture_output=True, text=True).stdout
            sizes[rows] = json.loads(out.strip().splitlines()[-1])
        print("peak RSS, a fresh process per file:")
        for rows, m in sizes.items():
            print(f"  {rows:>10,} rows: peak {m['peak_mb']:,.0f} MB, {m['rows'] / m['seconds']:,.0f} rows/s")
        small, large = sizes[args.small], sizes[args.rows]
        print(f"  ratio peak large / small: {large['peak_mb'] / small['peak_mb']:.2f} "
              f"for {args.rows / args.small:.0f}x the rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
