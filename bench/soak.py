"""Soak: 60 s of hey at c=32 against `python -m serving` on loopback; RSS and p99 every 10 s.

    .venv/bin/python bench/soak.py                  # 6 windows of 10 s, c=32, 1-row bodies
    .venv/bin/python bench/soak.py --windows 3 --concurrency 16

The server runs on a free loopback port with the project's bench model (built by the pipeline's
own steps). Each 10 s window is one hey run (keep-alive connections); between windows the
server's resident memory (parent and every child, the offload pool's process included, shared
libraries counted in each) is read from /proc. Printed: requests sent and
failed, RSS at the start and the end and its growth, p99 per window and its drift (last window
over the first). Exit 1 when a request failed or a bound is exceeded: RSS growth above
--max_rss_growth_mib, p99 drift above --max_p99_drift.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servebench import common, loadtools, models, processes  # noqa: E402  (the serving bench's parts)

ROOT = Path(__file__).resolve().parent.parent


def wait_for_line(path: Path, text: str, timeout: float = 120) -> None:
    """The offload pool starts in the background after readiness; RSS is measured once it is up."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"{text!r} not logged within {timeout:.0f} s; see {path}")
        time.sleep(0.2)


def rss_mib(pid: int) -> float:
    return sum(mib for _, mib in processes.rss_by_process(pid))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=6, help="10 s windows (default: %(default)s, 60 s)")
    parser.add_argument("--window_s", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rows", type=int, default=1, choices=common.ROWS, help="rows per request")
    parser.add_argument("--max_rss_growth_mib", type=float, default=50.0)
    parser.add_argument("--max_p99_drift", type=float, default=3.0,
                        help="last window's p99 over the first's; loopback on a shared machine is noisy")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        model_dir = models.build_model_folder(folder / "model")
        bodies = models.write_bodies(folder)
        ports = processes.free_ports()
        url = f"http://127.0.0.1:{ports.http}"
        log_path = folder / "server.log"
        argv = [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", common.MODEL_NAME,
                "--host", "127.0.0.1", "--http_port", str(ports.http), "--grpc_port", str(ports.grpc)]
        try:
            with processes.running(argv, ports, env={}, log_path=log_path, core=None, cwd=ROOT) as (server, _):
                if os.environ.get("SERVING_OFFLOAD_BYTES", "").strip() != "0":
                    wait_for_line(log_path, "offload pool started")
                infer = f"{url}/v2/models/{common.MODEL_NAME}/infer"
                loadtools.run_hey(infer, bodies[args.rows], args.rows, 4, requests=common.WARMUP_REQUESTS, core=None)
                start_rss = rss_mib(server.pid)
                print(f"soak: {args.windows} x {args.window_s:.0f} s, hey -c {args.concurrency}, {args.rows}-row V2 "
                      f"bodies, loopback; server RSS after warm-up {start_rss:.1f} MiB")
                print(f"{'window':>6} {'requests':>9} {'failed':>7} {'req/s':>8} {'p99 ms':>8} {'RSS MiB':>8}")
                windows = []
                for index in range(args.windows):
                    load = loadtools.run_hey(infer, bodies[args.rows], args.rows, args.concurrency,
                                      seconds=args.window_s, core=None)
                    rss = rss_mib(server.pid)
                    windows.append((load, rss))
                    print(f"{index + 1:>6} {load.requests:>9} {load.errors:>7} {load.rps:>8.0f} {load.p99:>8.2f} "
                          f"{rss:>8.1f}")
                alive = server.poll() is None
        except processes.ServerFailed as exc:
            raise SystemExit(f"the server did not start: {exc}") from None

    sent = sum(load.requests for load, _ in windows)
    failed = sum(load.errors for load, _ in windows)
    growth = windows[-1][1] - start_rss
    drift = windows[-1][0].p99 / windows[0][0].p99
    print(f"requests sent {sent}, failed {failed}; RSS {start_rss:.1f} -> {windows[-1][1]:.1f} MiB "
          f"(growth {growth:+.1f} MiB, bound {args.max_rss_growth_mib:g}); p99 {windows[0][0].p99:.2f} -> "
          f"{windows[-1][0].p99:.2f} ms (drift x{drift:.2f}, bound x{args.max_p99_drift:g}); "
          f"server {'alive' if alive else 'DIED'} to the end, exit {server.returncode} on SIGTERM")
    ok = alive and failed == 0 and growth <= args.max_rss_growth_mib and drift <= args.max_p99_drift \
        and server.returncode == 0
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
