"""`make schedule` / `make unschedule` and the monitor's retraining run, with the real kfp.Client against a KFP API stand-in."""

from __future__ import annotations

import json
import re

import pytest

from pipelines import schedule, upload
from pipelines.local.s3server import free_port
from pipelines.monitor_pipeline import PACKAGE_PATH as MONITOR_PACKAGE
from pipelines.training_pipeline import PACKAGE_PATH as TRAINING_PACKAGE

from .kfp_standin import kfp_standin

RECURRING = "/apis/v2beta1/recurringruns"


@pytest.fixture
def kfp(monkeypatch, tmp_path):
    """(URL, state) of a fresh stand-in; no user context file or token of this machine is read."""
    import kfp as kfp_sdk

    monkeypatch.setattr(kfp_sdk.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-context.json"))
    for name in (upload.TOKEN_ENV, upload.COOKIES_ENV, upload.SA_TOKEN_PATH_ENV):
        monkeypatch.delenv(name, raising=False)
    with kfp_standin() as served:
        yield served


def make_schedule(host: str, *extra: str) -> int:
    return schedule.main(["--host", host, *extra])


def only_recurring_run(state) -> dict:
    assert len(state.recurring_runs) == 1, state.recurring_runs
    return next(iter(state.recurring_runs.values()))


def test_created_once_then_unchanged_then_replaced_never_two(kfp, capsys):
    host, state = kfp
    assert make_schedule(host, "--cron", "0 0 3 * * *") == 0
    assert "created: recurring run sklearn-training-schedule" in capsys.readouterr().out
    first = only_recurring_run(state)
    assert first["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert (first["max_concurrency"], first["no_catchup"], first["mode"]) == ("1", True, "ENABLE")
    pipeline = next(iter(state.pipelines.values()))
    assert first["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": state.versions[pipeline["pipeline_id"]][0][
            "pipeline_version_id"]}
    assert state.writes(RECURRING) == [f"POST {RECURRING}"]

    # The same schedule again: found by name, nothing written.
    assert make_schedule(host, "--cron", "0 0 3 * * *") == 0
    assert "unchanged: recurring run" in capsys.readouterr().out
    assert only_recurring_run(state) == first and state.writes(RECURRING) == [f"POST {RECURRING}"]

    # Another cron and a parameter: replaced (the API has no update), still one.
    assert make_schedule(host, "--cron", "0 30 4 * * 1", "--param", "threshold=0.3") == 0
    assert "replaced: recurring run" in capsys.readouterr().out
    second = only_recurring_run(state)
    assert second["trigger"]["cron_schedule"]["cron"] == "0 30 4 * * 1"
    assert second["runtime_config"]["parameters"] == {"threshold": 0.3}
    assert state.writes(RECURRING) == [f"POST {RECURRING}", f"DELETE {RECURRING}/{first['recurring_run_id']}",
                                       f"POST {RECURRING}"]
    assert len(state.pipelines) == 1 and len(state.experiments) == 1  # published and filed once


def test_duplicates_made_elsewhere_collapse_into_one(kfp, capsys):
    host, state = kfp
    assert make_schedule(host) == 0
    copy = dict(only_recurring_run(state), recurring_run_id="made-by-hand")
    state.recurring_runs[copy["recurring_run_id"]] = copy
    assert make_schedule(host) == 0
    assert "1 duplicate(s) removed" in capsys.readouterr().out
    assert only_recurring_run(state)["recurring_run_id"] not in {"made-by-hand", copy["recurring_run_id"]}


def test_unschedule_removes_it_and_leaves_other_schedules(kfp, capsys):
    host, state = kfp
    assert make_schedule(host) == 0
    assert make_schedule(host, "--pipeline", "monitor", "--cron", "0 0 * * * *") == 0
    names = sorted(r["display_name"] for r in state.recurring_runs.values())
    assert names == ["sklearn-monitor-schedule", "sklearn-training-schedule"]
    assert make_schedule(host, "--remove") == 0
    assert "removed 1 recurring run(s) named sklearn-training-schedule" in capsys.readouterr().out
    assert [r["display_name"] for r in state.recurring_runs.values()] == ["sklearn-monitor-schedule"]
    assert make_schedule(host, "--remove") == 0  # nothing left to remove is no error
    assert "removed 0" in capsys.readouterr().out


def test_the_monitor_starts_a_run_of_the_newest_training_version(kfp):
    host, state = kfp
    client = schedule.client_for(host)
    upload.publish(client, TRAINING_PACKAGE)
    run_id = schedule.start_training(host, None, upload.PIPELINE_NAME, "retraining", json.dumps({"seed": 7}))
    run = state.runs[run_id]
    versions = next(iter(state.versions.values()))
    assert run["pipeline_version_reference"]["pipeline_version_id"] == versions[-1]["pipeline_version_id"]
    assert run["runtime_config"]["parameters"] == {"seed": 7}
    assert [e["display_name"] for e in state.experiments.values()] == ["retraining"]


def test_no_uploaded_training_pipeline_is_a_clear_error(kfp):
    host, _ = kfp
    with pytest.raises(Exception, match="no pipeline named 'sklearn-training'.*make upload"):
        schedule.start_training(host, None, upload.PIPELINE_NAME, "retraining", "{}")


@pytest.mark.parametrize("argv, expected", [
    (["--cron", "0 3 * * *"], "cron='0 3 \\* \\* \\*' is invalid: expected KFP's six fields"),
    (["--pipeline", "nope"], "--pipeline 'nope' is unknown"),
    (["--param", "nope=1"], "nope"),  # params.parse_overrides names the unknown parameter
    (["--pipeline", "monitor", "--param", "last_days=-1"], "last_days=-1 is invalid"),
])
def test_bad_arguments_are_refused_before_any_call(kfp, capsys, argv, expected):
    host, state = kfp
    assert make_schedule(host, *argv) == 2
    assert state.calls == []
    assert re.search(expected, capsys.readouterr().err)


def test_the_monitor_pipeline_is_uploadable():
    assert upload.PIPELINES["sklearn-monitor"].package == MONITOR_PACKAGE


@pytest.mark.parametrize("extra", [[], ["--remove"]])
def test_an_unreachable_host_is_one_line_and_exit_2(capsys, extra):
    # Like make upload: one short probe, not kfp.Client's half minute of retries and tracebacks.
    host = f"http://127.0.0.1:{free_port()}"
    assert make_schedule(host, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no Kubeflow Pipelines API at {host} (got: [Errno 111] Connection refused)")
    assert "port-forward svc/ml-pipeline-ui 3000:80" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_monitors_retraining_run_names_an_unreachable_host_at_once():
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(upload.NoPipelinesAPI, match=rf"no Kubeflow Pipelines API at {host} \(got: .*refused"):
        schedule.start_training(host, None, upload.PIPELINE_NAME, "retraining", "{}")
