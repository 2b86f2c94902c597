"""No secret in any log: a source's credentials reach the fetch, and nothing else the local run leaves."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import os
import stat
import threading
from pathlib import Path

import pytest
from sklearn.datasets import load_diabetes

from pipelines import params
from pipelines.local import run
from pipelines.local.runner import REDACTED, _Tap
from pipelines.training_pipeline import PACKAGE_PATH

from .helpers import loopback_http

USER, PASSWORD = "reader", "pa55-w0rd-9f3"
SIGNATURE, FRAGMENT_TOKEN = "c0ffee5ignature77", "fragm3nt-t0ken-42"
SECRETS = (PASSWORD, SIGNATURE, FRAGMENT_TOKEN)


def secret_url(host: str) -> str:
    return f"http://{USER}:{PASSWORD}@{host}/diabetes.csv?X-Amz-Signature={SIGNATURE}#token={FRAGMENT_TOKEN}"


@pytest.mark.parametrize("chunks", [1, 3, 17], ids=lambda n: f"{n}-writes")
def test_the_tap_scrubs_every_secret_from_log_and_echo_even_split_across_writes(chunks):
    text = (f"[KFP Executor] Got executor_input: source=http://{USER}:{PASSWORD}@h/t.csv?X-Amz-Signature={SIGNATURE}"
            f"#token={FRAGMENT_TOKEN}\nnext line {SIGNATURE}\nlast, unterminated {PASSWORD}")
    log, echo = io.StringIO(), io.StringIO()
    tap = _Tap(log, echo, lambda event: None, secrets=list(SECRETS))
    size = -(-len(text) // chunks)
    for start in range(0, len(text), size):
        tap.write(text[start:start + size])
    tap.close_line()
    for shown in (log.getvalue(), echo.getvalue()):
        assert not any(secret in shown for secret in SECRETS)
        assert shown.count(REDACTED) == 5 and shown.endswith(f"unterminated {REDACTED}")


def test_upload_and_every_entry_point_refuse_credentials_in_the_source_parameter():
    values = params.effective({"source": secret_url("h.example")}, PACKAGE_PATH)
    with pytest.raises(params.ParamError) as caught:
        params.check(values)
    assert "carries credentials" in str(caught.value) and "source_secret" in str(caught.value)
    assert not any(secret in str(caught.value) for secret in SECRETS)


@pytest.fixture
def protected_csv():
    """Serves the diabetes CSV only with the basic-auth password and the signed query."""
    body = load_diabetes(as_frame=True).frame.to_csv(index=False).encode()
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    served = []

    class Protected(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            ok = self.headers.get("Authorization") == expected and f"X-Amz-Signature={SIGNATURE}" in self.path
            served.append(ok)
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body)

    with loopback_http(Protected) as host:
        yield host, served


class CmdlineWatch:
    """Samples /proc/*/cmdline of the kfp.local steps while the run goes on."""

    def __init__(self, marker: str) -> None:
        self.marker, self.seen, self._stop = marker, {}, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    line = entry.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if self.marker in line and "executor_input" in line:
                        self.seen[entry.parent.name] = line
            self._stop.wait(0.05)

    def __enter__(self) -> "CmdlineWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.integration
@pytest.mark.parametrize("via", ["param", "env"])
def test_a_local_run_fetches_with_the_credentials_and_no_log_ps_or_artifact_holds_them(
        s3_env, s3_server, protected_csv, tmp_path, monkeypatch, via):
    host, served = protected_csv
    bucket = f"secrets-{via}"
    argv = ["--verbose", "--pipeline-root", str(tmp_path / "runs"), "--param", f"bucket={bucket}",
            "--param", "estimator=ridge", "--param", "threshold=-1"]
    if via == "param":
        argv += ["--param", f"source={secret_url(host)}"]
    else:
        monkeypatch.setenv("SOURCE_URL", secret_url(host))
    out, err = io.StringIO(), io.StringIO()
    with CmdlineWatch(host) as watch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run.main(argv)
    assert code == run.EXIT_OK, err.getvalue()
    assert served and all(served), "the source was not fetched with its credentials"
    assert "DEPLOYED" in out.getvalue()
    assert os.environ.get("SOURCE_URL") == (secret_url(host) if via == "env" else None)  # restored

    assert watch.seen, "no step process was seen: the ps check would prove nothing"
    logs = sorted((tmp_path / "runs").rglob("run-*.log"))
    assert len(logs) == 1 and f"http://{host}/diabetes.csv" in logs[0].read_text()
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600
    outputs = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in outputs), "a run file is readable by others"
    store = [p for p in (s3_server.data_dir / bucket).rglob("*") if p.is_file()]
    assert any(p.name == "metadata.json" for p in store)
    places = {"stdout": out.getvalue(), "stderr": err.getvalue(),
              **{f"ps {pid}": line for pid, line in watch.seen.items()},
              **{str(p): p.read_bytes().decode(errors="replace") for p in outputs + store}}
    leaks = {where: secret for where, text in places.items() for secret in SECRETS if secret in text}
    assert not leaks, leaks
