"""`make perf`: Triton's perf_analyzer against this server, over HTTP (binary and JSON) and gRPC.

    .venv/bin/python bench/perf.py                 # concurrency 1, 4, 16; 3 s windows
    .venv/bin/python bench/perf.py --concurrency 1,16 --window-ms 2000

perf_analyzer is the field's standard V2 load tool. Its binary ships inside the tritonclient
2.41.0 wheel (the last with a self-contained build); it links Debian's libb64 (libb64-0d) and
CUDA's libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12; no GPU is used). Both wheels are
downloaded with pip into the git-ignored .tools/perf/ once. The model is the serving
benchmark's (100-tree forest on diabetes, built by the project's pipeline steps). The server runs
pinned to core 0 and perf_analyzer to core 1, as in bench/serving_bench.py; answers are checked
against scikit-learn's before any load. perf_analyzer reads the model configuration
(GET /v2/models/{m}/config, gRPC ModelConfig) to learn the input, then sends 1-row requests
of real diabetes rows (--input-data) at each concurrency. The table goes to bench/results/perf.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servebench import common, loadtools, models, processes, report, servers  # noqa: E402  (the serving bench's parts)

REPO = common.REPO
TOOL_DIR = REPO / ".tools" / "perf"  # git-ignored
PERF_ANALYZER = TOOL_DIR / "perf_analyzer"
LIBCUDART = TOOL_DIR / "lib" / "libcudart.so.12"
WHEELS = {  # wheel -> (file inside it, where it goes)
    "tritonclient==2.41.0": ("tritonclient-2.41.0.data/data/bin/perf_analyzer", PERF_ANALYZER),
    "nvidia-cuda-runtime-cu12==12.9.79": ("nvidia/cuda_runtime/lib/libcudart.so.12", LIBCUDART),
}
LIBB64 = "libb64-0d"
RESULTS = REPO / "bench" / "results" / "perf.md"
MODES = {  # label -> perf_analyzer protocol arguments
    "HTTP binary": ["-i", "http"],
    "HTTP JSON": ["-i", "http", "--input-tensor-format=json", "--output-tensor-format=json"],
    "gRPC": ["-i", "grpc"],
}
CONCURRENCY = (1, 4, 16)
WINDOW_MS = 3000
RUN_TIMEOUT_S = 180


def install() -> None:
    """perf_analyzer and libcudart from their wheels (pip download), libb64 from Debian."""
    for requirement, (member, dest) in WHEELS.items():
        if dest.exists():
            continue
        wheels = TOOL_DIR / "wheels"
        common.say(f"==> pip download {requirement} into {wheels.relative_to(REPO)}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels),
                        requirement], check=True)
        name = requirement.split("==")[0].replace("-", "_")
        wheel = next(p for p in wheels.glob("*.whl") if p.name.lower().startswith(name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            dest.write_bytes(archive.read(member))
        dest.chmod(0o755)
    if subprocess.run(["dpkg", "-s", LIBB64], capture_output=True).returncode != 0:
        if os.geteuid() != 0:
            raise SystemExit(f"perf_analyzer needs Debian's {LIBB64}: sudo apt-get install -y {LIBB64}")
        common.say(f"==> apt-get install {LIBB64}")
        subprocess.run("apt-get update -qq && apt-get install -y -qq " + LIBB64, shell=True, check=True,
                       stdout=subprocess.DEVNULL)


def input_data(folder: Path) -> Path:
    """perf_analyzer's --input-data: real diabetes rows, one 1-row request each, in turn."""
    from sklearn.datasets import load_diabetes

    rows = load_diabetes().data[:64]
    path = folder / "perf-input.json"
    path.write_text(json.dumps({"data": [{"input-0": {"content": row.tolist(), "shape": [len(row)]}}
                                         for row in rows]}))
    return path


def run_perf(mode: str, url: str, data: Path, concurrency: int, window_ms: int, out: Path) -> dict[str, float]:
    argv = loadtools.pinned(common.LOAD_CORE, [
        str(PERF_ANALYZER), "-m", common.MODEL_NAME, "-u", url, *MODES[mode], "--input-data", str(data),
        "--concurrency-range", f"{concurrency}:{concurrency}", "-p", str(window_ms), "-f", str(out),
    ])
    env = {**os.environ, "LD_LIBRARY_PATH": str(LIBCUDART.parent)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"perf_analyzer {mode} c={concurrency} failed: {(result.stdout + result.stderr)[-800:]}")
    with out.open() as handle:
        row = next(csv.DictReader(handle))
    return {"rps": float(row["Inferences/Second"]), **{
        key: float(row[f"{key} latency"]) / 1000 for key in ("p50", "p90", "p99")}}


def render(rows: list[tuple[str, int, dict]], started: dt.datetime, load_avg: tuple, window_ms: int) -> str:
    lines = [
        "# perf_analyzer against this server", "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {report.machine()}; load average at start: "
        + ", ".join(f"{v:.2f}" for v in load_avg),
        "- model: RandomForestRegressor(100 trees) on sklearn:diabetes (the serving benchmark's), default server settings",
        f"- method: perf_analyzer 2.41.0 (tritonclient wheel) pinned to core 1, server to core 0, loopback; 1-row "
        f"requests of real rows; one {window_ms} ms window per point after perf_analyzer's own warm-up; answers "
        "checked against scikit-learn first", "",
        "| protocol | concurrency | infer/s | p50 ms | p90 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {mode} | {c} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} |"
              for mode, c, r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated (default %(default)s)")
    parser.add_argument("--window-ms", type=int, default=WINDOW_MS, help="measurement window (default %(default)s)")
    parser.add_argument("--out", default=str(RESULTS), help="markdown table (default %(default)s)")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin server and load to separate cores")
    install()
    started, load_avg = dt.datetime.now(dt.timezone.utc), os.getloadavg()
    common.WORK.mkdir(parents=True, exist_ok=True)
    model_dir = models.build_model_folder(common.WORK / "model")
    bodies, data = models.write_bodies(common.WORK), input_data(common.WORK)
    ports = processes.free_ports()
    rows = []
    with processes.running(servers.ours_command(ports, model_dir), ports, {}, common.WORK / "logs" / "perf-server.log"):
        problem = models.answer_problem(f"http://127.0.0.1:{ports.http}/v2/models/{common.MODEL_NAME}/infer", bodies,
                                    models.expected_answers(model_dir))
        if problem:
            raise SystemExit(f"the server's answers are wrong, no load run: {problem}")
        for mode in MODES:
            url = f"127.0.0.1:{ports.grpc if mode == 'gRPC' else ports.http}"
            for concurrency in map(int, args.concurrency.split(",")):
                result = run_perf(mode, url, data, concurrency, args.window_ms, common.WORK / "perf.csv")
                common.say(f"    {mode:<11} c={concurrency:<3} {result['rps']:8.0f} infer/s  p50 {result['p50']:.2f} ms  "
                       f"p99 {result['p99']:.2f} ms")
                rows.append((mode, concurrency, result))
    table = render(rows, started, load_avg, args.window_ms)
    print(table)
    Path(args.out).write_text(table)
    common.say(f"saved {Path(args.out).relative_to(REPO) if Path(args.out).is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
