"""`python -m pipelines.local.run`: log taming and the errors that stop it before any step runs."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import socket
import threading

import pytest

from pipelines.local import run, serve
from pipelines.local.runner import Event, LocalRun, _Tap

# Lines as kfp.local 2.17 prints them (copied from a real run, ANSI colours included).
KFP_LINES = """\
17:44:11.502 - INFO - Executing task \x1b[96m'ingest'\x1b[0m
17:44:11.502 - INFO - Streamed logs:

    [KFP Executor 2026-11-25 17:44:11,832 INFO]: Got executor_input:
    {
        "inputs": {}
    }
    [KFP Executor 2026-11-25 17:44:12,700 WARNING]: dropped 3 of 442 rows with missing values (missing_values='drop')
    Traceback (most recent call last):
      File "/tmp/tmp.x/ephemeral_component.py", line 20, in ingest
    components.errors.DataError: target column 'y' not found in sklearn:diabetes; columns are: age, sex
17:44:13.013 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m
"""


def test_tap_turns_kfp_logs_into_events_and_keeps_everything_in_the_log():
    events: list[Event] = []
    log = io.StringIO()
    tap = _Tap(log, None, events.append)
    for chunk in (KFP_LINES[:37], KFP_LINES[37:200], KFP_LINES[200:]):  # arbitrary write boundaries
        tap.write(chunk)
    assert [(e.kind, e.step) for e in events] == [("start", "ingest"), ("warning", "ingest"), ("end", "ingest")]
    assert events[1].message.startswith("dropped 3 of 442 rows")
    assert events[2].status == "FAILURE"
    assert tap.failed == "ingest"
    assert tap.step_errors["ingest"] == (
        "DataError: target column 'y' not found in sklearn:diabetes; columns are: age, sex")
    assert log.getvalue() == KFP_LINES


def test_progress_prints_one_line_per_step_and_warnings_under_it():
    out = io.StringIO()
    progress = run.Progress(out)
    for event in (Event("start", "ingest"), Event("warning", "ingest", message="dropped 3 rows"),
                  Event("end", "ingest", "SUCCESS", 1.23), Event("start", "train"),
                  Event("end", "train", "FAILURE", 0.5)):
        progress(event)
    assert out.getvalue().splitlines() == [
        "  ingest          ... ok 1.2 s", "    ! dropped 3 rows", "  train           ... FAILED 0.5 s"]


class TaskThread:
    """A thread that writes what it is told, when told: kfp.local's ParallelFor tasks print from threads."""

    def __init__(self, tap) -> None:
        self._tap, self._jobs = tap, queue.Queue()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            text, done = job
            for piece in text.partition("\n")[:2] if text.endswith("\n") else (text,):
                self._tap.write(piece)  # print's way: the text, then the newline on its own
            done.set()

    def say(self, text: str) -> None:
        done = threading.Event()
        self._jobs.put((text, done))
        assert done.wait(5)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(5)


def kfp_task_lines(step: str, iteration: int) -> tuple[str, str, str]:
    """kfp.local's start line, a line naming the iteration's output folder, and its end line."""
    return (f"08:28:53.606 - INFO - Executing task \x1b[96m'{step}'\x1b[0m\n",
            f'        "outputFile": "/tmp/out/run-1/sklearn-training-2026/for-loop-1-iteration-{iteration}/{step}/Output"\n',
            f"08:28:58.544 - INFO - Task \x1b[96m'{step}'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n")


def test_parallel_tasks_of_one_step_each_get_their_own_timer_and_line():
    """Two threads run four cross-validate tasks (as kfp.local's ParallelFor does, two at a time):
    each end is timed from its own start, though all four share the step's name."""
    clock = [0.0]
    out, log, events = io.StringIO(), io.StringIO(), []
    progress = run.Progress(out)
    tap = _Tap(log, None, lambda event: (events.append(event), progress(event)), clock=lambda: clock[0])
    first, second = TaskThread(tap), TaskThread(tap)
    try:
        lines = {i: kfp_task_lines("cross-validate", i) for i in range(4)}
        script = [(0.0, first, lines[0][0]), (0.0, second, lines[1][0]), (0.1, first, lines[0][1]),
                  (0.1, second, lines[1][1]),
                  (4.9, first, lines[0][2]),  # task 0 ends at 4.9 s: the thread takes task 2
                  (4.9, first, lines[2][0]), (5.0, first, lines[2][1]),
                  (5.0, second, "    [KFP Executor 2026-12-03 08:28:58,502 WARNING]: slow fold\n"),
                  (5.1, second, lines[1][2]),  # task 1 ends 0.2 s after task 2 started: 5.1 s of its own
                  (5.1, second, lines[3][0]), (5.2, second, lines[3][1]), (8.0, second, lines[3][2]),
                  (8.3, first, lines[2][2])]
        for at, thread, text in script:
            clock[0] = at
            thread.say(text)
    finally:
        first.stop()
        second.stop()
    assert tap.tasks == [("cross-validate [0]", pytest.approx(4.9)), ("cross-validate [1]", pytest.approx(5.1)),
                         ("cross-validate [3]", pytest.approx(2.9)), ("cross-validate [2]", pytest.approx(3.4))]
    assert tap.phases == {"cross-validate": pytest.approx(8.3)}  # the whole fan-out
    assert len({event.task for event in events}) == 4
    assert out.getvalue().splitlines() == [
        "  cross-validate  ... in parallel:",
        "    cross-validate [0] ok 4.9 s",
        "    cross-validate [1] ok 5.1 s",
        "    ! slow fold",
        "    cross-validate [3] ok 2.9 s",
        "    cross-validate [2] ok 3.4 s",
    ]


def test_lines_of_two_threads_are_not_mixed_up():
    log = io.StringIO()
    tap = _Tap(log, None, lambda event: None)
    first, second = TaskThread(tap), TaskThread(tap)
    try:
        first.say("first half ")
        second.say("other thread's line\n")
        first.say("second half\n")
    finally:
        first.stop()
        second.stop()
    assert log.getvalue() == "other thread's line\nfirst half second half\n"


@pytest.fixture
def no_external_store(monkeypatch):
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--param", "estimator=svm"], "estimator 'svm' is unknown"),
        (["--param", "threshold=high"], "parameter threshold='high' is invalid: expected a number"),
        (["--param", "minio_endpoint=h:9000"], "set those (with MINIO_ACCESS_KEY/MINIO_SECRET_KEY) instead"),
        (["--param", "model_name=a/b"], "model_name 'a/b' is invalid"),
        (["--param", "min_gain_over_baseline=1.5"], "parameter min_gain_over_baseline=1.5 is invalid: expected a "
                                                    "number from 0 to 1"),
        (["--param", "min_gain_over_baseline=x"], "parameter min_gain_over_baseline='x' is invalid: expected a number"),
        (["--param", "threshold=nan"], "parameter threshold=nan is invalid: expected a finite number"),
    ],
)
def test_bad_parameters_stop_before_anything_starts(no_external_store, tmp_path, capsys, argv, expected):
    code = run.main(argv + ["--data-dir", str(tmp_path / "s3"), "--pipeline-root", str(tmp_path / "runs")])
    assert code == run.EXIT_BAD_INPUT
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "s3").exists() and not (tmp_path / "runs").exists()


def test_bad_local_port_is_named(no_external_store, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOCAL_S3_PORT", "nine")
    assert run.main(["--data-dir", str(tmp_path)]) == run.EXIT_BAD_INPUT
    assert "LOCAL_S3_PORT='nine' is invalid" in capsys.readouterr().err


def test_busy_local_port_says_how_to_get_around_it(no_external_store, monkeypatch, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("LOCAL_S3_PORT", str(busy.getsockname()[1]))
        assert run.main(["--data-dir", str(tmp_path), "--pipeline-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "already in use" in err and "set LOCAL_S3_PORT to another port" in err


def finished_run(tmp_path, deploy: bool, pushed: dict | None) -> LocalRun:
    """A finished run's folder as kfp.local leaves it: the evaluation artifact and push's outputs."""
    run_dir = tmp_path / "sklearn-training-2026"
    (run_dir / "evaluate").mkdir(parents=True)
    (run_dir / "evaluate" / "evaluation").write_text(json.dumps({
        "metrics": {"r2": 0.41}, "test_rows": 89, "deploy": deploy, "production": None,
        "reason": "r2 0.4100 >= threshold 0.2000; no production model yet"}))
    if pushed is not None:
        (run_dir / "push").mkdir()
        (run_dir / "push" / "executor_output.json").write_text(json.dumps({"parameterValues": pushed}))
    return LocalRun(ok=True, seconds=6.0, log_path=tmp_path / "run.log", run_dir=run_dir)


def test_a_push_that_lost_the_gate_at_the_last_moment_says_so(tmp_path, capsys):
    pushed = {"version": 3, "model_uri": "s3://models/diabetes-rf/v3/", "production_uri":
              "s3://models/diabetes-rf/production/", "promoted": False,
              "reason": "r2 0.4100 is worse than production v2 (0.4500)"}
    code = run.summarize(finished_run(tmp_path, True, pushed), {"bucket": "models", "model_name": "diabetes-rf"})
    out = capsys.readouterr().out
    assert code == run.EXIT_OK
    assert ("decision: KEPT, NOT PROMOTED - production changed during the run: r2 0.4100 is worse than "
            "production v2 (0.4500)") in out
    assert "model:      s3://models/diabetes-rf/v3/  (kept, not served)" in out
    assert "production: s3://models/diabetes-rf/production/ unchanged by this run" in out
    assert "DEPLOYED -" not in out


def test_a_promoted_push_says_deployed(tmp_path, capsys):
    pushed = {"version": 1, "model_uri": "s3://models/diabetes-rf/v1/", "production_uri":
              "s3://models/diabetes-rf/production/", "promoted": True, "reason": "no production model yet"}
    run.summarize(finished_run(tmp_path, True, pushed), {"bucket": "models", "model_name": "diabetes-rf"})
    out = capsys.readouterr().out
    assert "decision: DEPLOYED - r2 0.4100" in out and "production: s3://models/diabetes-rf/production/  (" in out


def test_minio_secret_is_refused_locally_with_what_to_set_instead(no_external_store, tmp_path, capsys):
    code = run.main(["--param", "minio_secret=team-a-minio", "--data-dir", str(tmp_path / "s3"),
                     "--pipeline-root", str(tmp_path / "runs")])
    assert code == run.EXIT_BAD_INPUT
    assert "kfp.local does not read" in capsys.readouterr().err and not (tmp_path / "s3").exists()


@pytest.mark.parametrize("pair", ["deploy_isvc=diabetes-rf", "deploy_namespace=ns", "deploy_canary_percent=10",
                                  "deploy_timeout_s=5"])
def test_deploy_parameters_are_refused_locally_with_make_deploy_named(no_external_store, tmp_path, capsys, pair):
    code = run.main(["--param", pair, "--data-dir", str(tmp_path / "s3"), "--pipeline-root", str(tmp_path / "runs")])
    assert code == run.EXIT_BAD_INPUT
    assert "make deploy VERSION=N" in capsys.readouterr().err and not (tmp_path / "s3").exists()


def test_local_runs_turn_the_deploy_step_off(tmp_path):
    from pipelines.local.runner import local_arguments
    from pipelines.training_pipeline import PACKAGE_PATH

    # Named or left to the YAML's default ("diabetes-rf"), the InferenceService is dropped locally.
    assert local_arguments(PACKAGE_PATH, {"deploy_isvc": "diabetes-rf", "seed": 1}) == {"deploy_isvc": "", "seed": 1}
    assert local_arguments(PACKAGE_PATH, {}) == {"deploy_isvc": ""}
    older = tmp_path / "older.yaml"  # a package compiled before the deploy step existed
    older.write_text("root:\n  inputDefinitions:\n    parameters:\n      seed: {parameterType: NUMBER_INTEGER}\n")
    assert local_arguments(older, {"seed": 1}) == {"seed": 1}


@pytest.fixture
def no_pipeline(monkeypatch, tmp_path):
    """run.main up to the summary without kfp.local or an S3 server: records what it would serve."""
    served: list[list[str]] = []

    @contextlib.contextmanager
    def store(data_dir, port):
        yield "http://127.0.0.1:1", False, "a stand-in"

    monkeypatch.setattr(run, "object_store", store)
    monkeypatch.setattr(run.preflight, "check", lambda values: None)
    monkeypatch.setattr(serve, "main", lambda argv: served.append(argv) or 0)
    return served


@pytest.mark.parametrize("model_name, bucket", [("bc-rf", "models"), ("diabetes-rf", "team-a")])
def test_make_run_serves_the_model_name_and_bucket_it_trained(no_pipeline, monkeypatch, tmp_path, capsys,
                                                               model_name, bucket):
    pushed = {"version": 1, "model_uri": f"s3://{bucket}/{model_name}/v1/", "production_uri":
              f"s3://{bucket}/{model_name}/production/", "promoted": True, "reason": "no production model yet"}
    monkeypatch.setattr(run, "run_compiled", lambda *a, **k: finished_run(tmp_path, True, pushed))
    code = run.main(["--param", f"model_name={model_name}", "--param", f"bucket={bucket}", "--data-dir",
                     str(tmp_path / "s3"), "--then-serve=--port 9090 --grpc-port 9091"])
    assert code == 0
    assert no_pipeline == [["--demo", "--model-uri", f"s3://{bucket}/{model_name}/production/", "--data-dir",
                            str(tmp_path / "s3"), "--s3-port", "9000", "--port", "9090", "--grpc-port", "9091"]]
    assert f"production: s3://{bucket}/{model_name}/production/" in capsys.readouterr().out


def test_an_explicit_model_uri_in_serve_args_wins(no_pipeline, monkeypatch, tmp_path):
    pushed = {"version": 1, "model_uri": "s3://models/bc-rf/v1/", "production_uri": "s3://models/bc-rf/production/",
              "promoted": True, "reason": "no production model yet"}
    monkeypatch.setattr(run, "run_compiled", lambda *a, **k: finished_run(tmp_path, True, pushed))
    assert run.main(["--param", "model_name=bc-rf", "--then-serve=--model-uri s3://models/bc-rf/v1/"]) == 0
    (argv,) = no_pipeline
    assert serve.build_parser().parse_args(argv).model_uri == "s3://models/bc-rf/v1/"  # argparse: the last one


def test_nothing_is_served_when_the_gate_refused_the_first_model(no_pipeline, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(run, "run_compiled", lambda *a, **k: finished_run(tmp_path, False, None))
    assert run.main(["--param", "model_name=bc-rf", "--then-serve="]) == 0
    assert no_pipeline == []
    assert "nothing to serve: this model has no production version yet" in capsys.readouterr().out


def test_without_then_serve_nothing_is_served(no_pipeline, monkeypatch, tmp_path):
    monkeypatch.setattr(run, "run_compiled", lambda *a, **k: finished_run(tmp_path, True, None))
    assert run.main([]) == 0 and no_pipeline == []


@pytest.mark.parametrize("serve_args, expected", [("--no-such-flag", "unrecognized arguments: --no-such-flag"),
                                                  ("--port 'x", "is not a command line")])
def test_bad_serve_args_stop_before_the_run(no_pipeline, monkeypatch, tmp_path, capsys, serve_args, expected):
    monkeypatch.setattr(run, "run_compiled", lambda *a, **k: pytest.fail("the run started"))
    with contextlib.suppress(SystemExit):
        assert run.main([f"--then-serve={serve_args}"]) == run.EXIT_BAD_INPUT  # as the Makefile passes it
    assert expected in capsys.readouterr().err
