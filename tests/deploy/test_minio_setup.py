"""The standalone MinIO's setup Job: bucket, a read-only user for the model server and a write user
for the pipeline's push step, each with its policy, idempotently; with LOG_URI, the inference log's
bucket and a put-only policy on its prefix for the server's keys.

setup-bucket.sh runs here against a stand-in `mc` that keeps users and attached policies in a
folder and answers `admin user info` in mc's text layout ("PolicyName: a,b"), refusing to attach
a policy twice as MinIO does. No MinIO image runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .tools import MANIFESTS

COMPONENT = MANIFESTS / "components" / "minio"
SCRIPT = COMPONENT / "setup-bucket.sh"
BUCKET = "models"

FAKE_MC = """#!{python}
import json, sys
from pathlib import Path
state = Path({state!r})
args = sys.argv[1:]
with (state / "calls.log").open("a") as log:
    log.write(" ".join(args) + "\\n")
attached = state / "attached.json"
policies = json.loads(attached.read_text()) if attached.exists() else {{}}
if args[:3] == ["admin", "policy", "create"]:
    text = Path(args[5]).read_text()  # a missing or broken policy file fails like mc
    json.loads(text)
    (state / f"policy-{{args[4]}}.json").write_text(text)
elif args[:3] == ["admin", "user", "info"]:
    key = args[4]
    print(f"AccessKey: {{key}}\\nStatus: enabled\\nPolicyName: {{','.join(policies.get(key, []))}}\\nMemberOf: []")
elif args[:3] == ["admin", "policy", "attach"]:
    policy, key = args[4], args[6]
    if policy in policies.get(key, []):
        sys.exit("mc: <ERROR> Unable to attach the policy: The specified policy change is already in effect.")
    policies.setdefault(key, []).append(policy)
    attached.write_text(json.dumps(policies))
"""


@pytest.fixture
def mc(tmp_path) -> Path:
    """A folder holding the stand-in mc's state; its bin/ goes first on PATH."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "mc"
    fake.write_text(FAKE_MC.format(python=sys.executable, state=str(tmp_path)))
    fake.chmod(0o755)
    return tmp_path


def _run_setup(mc: Path, reader: str = "reader", writer: str = "writer", **log: str) -> subprocess.CompletedProcess:
    env = {
        **log,
        "PATH": f"{mc / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "MC_CONFIG_DIR": str(mc / "mc-config"),
        "POLICY_DIR": str(COMPONENT),
        "MINIO_HOST": "minio:9000",
        "BUCKET": BUCKET,
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "root-password",
        "READER_ACCESS_KEY": reader,
        "READER_SECRET_KEY": "reader-secret",
        "WRITER_ACCESS_KEY": writer,
        "WRITER_SECRET_KEY": "writer-secret",
    }
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)


def _attached(mc: Path) -> dict[str, list[str]]:
    return json.loads((mc / "attached.json").read_text())


def _calls(mc: Path) -> list[str]:
    return (mc / "calls.log").read_text().splitlines()


def test_creates_bucket_and_both_users_with_their_policies(mc):
    done = _run_setup(mc)
    assert done.returncode == 0, done.stderr
    assert f"mb --ignore-existing store/{BUCKET}" in _calls(mc)
    assert "admin user add store reader reader-secret" in _calls(mc)
    assert "admin user add store writer writer-secret" in _calls(mc)
    assert _attached(mc) == {"reader": ["model-reader"], "writer": ["model-writer"]}


def test_second_run_attaches_nothing_again(mc):
    assert _run_setup(mc).returncode == 0
    first = len(_calls(mc))
    again = _run_setup(mc)
    assert again.returncode == 0, again.stderr
    assert not [call for call in _calls(mc)[first:] if call.startswith("admin policy attach")]
    assert _attached(mc) == {"reader": ["model-reader"], "writer": ["model-writer"]}


def test_an_access_key_named_like_the_policy_still_gets_it(mc):
    # A substring test on `mc admin user info` would see "model-reader" in the AccessKey line.
    assert _run_setup(mc, reader="model-reader", writer="model-writer").returncode == 0
    assert _attached(mc) == {"model-reader": ["model-reader"], "model-writer": ["model-writer"]}


def test_refuses_one_user_for_reading_and_writing(mc):
    done = _run_setup(mc, reader="same", writer="same")
    assert done.returncode != 0
    assert "model-reader-s3" in done.stderr and "model-writer" in done.stderr and "'same'" in done.stderr
    assert not (mc / "calls.log").exists(), "nothing may change before the keys are checked"


def _actions(policy: dict) -> dict[str, set[str]]:
    """Allowed actions by resource."""
    allowed: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            allowed.setdefault(resource, set()).update(statement["Action"])
    return allowed


def test_policies_grant_least_privilege_on_the_bucket_only():
    reader = _actions(json.loads((COMPONENT / "reader-policy.json").read_text()))
    writer = _actions(json.loads((COMPONENT / "writer-policy.json").read_text()))
    bucket, objects = f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"
    assert reader == {bucket: {"s3:GetBucketLocation", "s3:ListBucket"}, objects: {"s3:GetObject"}}
    # Push lists versions, reads the pointer and metadata, writes new objects, and deletes what is
    # left of partial versions (and its probe object); tests/pipeline/test_writer_policy.py checks
    # this against the calls it makes. Abort cleans up its own failed multipart upload.
    assert writer == {bucket: {"s3:GetBucketLocation", "s3:ListBucket"},
                      objects: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}}


LOG_URI = "s3://inference-logs/diabetes-rf/"


def test_without_log_uri_there_is_no_log_bucket_or_policy(mc):
    assert _run_setup(mc).returncode == 0
    assert not [call for call in _calls(mc) if "inference" in call]


def test_log_uri_adds_its_bucket_and_a_put_only_policy_on_its_prefix_for_the_servers_keys(mc):
    done = _run_setup(mc, LOG_URI=LOG_URI)
    assert done.returncode == 0, done.stderr
    assert "mb --ignore-existing store/inference-logs" in _calls(mc)
    # The model server's user (model-reader-s3's keys) reads models and may put log objects, nothing more.
    assert _attached(mc) == {"reader": ["model-reader", "inference-log-writer"], "writer": ["model-writer"]}
    policy = json.loads((mc / "policy-inference-log-writer.json").read_text())
    assert _actions(policy) == {"arn:aws:s3:::inference-logs/diabetes-rf/*": {"s3:PutObject"}}
    assert "inference log s3://inference-logs/diabetes-rf/ ready" in done.stdout
    again = _run_setup(mc, LOG_URI=LOG_URI)
    assert again.returncode == 0, again.stderr
    assert _attached(mc)["reader"] == ["model-reader", "inference-log-writer"]  # attached once


@pytest.mark.parametrize("uri, resource", [
    ("s3://logs", "arn:aws:s3:::logs/*"),
    ("s3://logs/a/b//", "arn:aws:s3:::logs/a/b/*"),  # as the server keys it: prefix a/b/
])
def test_the_policy_prefix_is_the_one_the_server_writes_under(mc, uri, resource):
    assert _run_setup(mc, LOG_URI=uri).returncode == 0
    assert set(_actions(json.loads((mc / "policy-inference-log-writer.json").read_text()))) == {resource}


def test_other_log_keys_get_their_own_user(mc):
    done = _run_setup(mc, LOG_URI=LOG_URI, LOG_WRITER_ACCESS_KEY="logger", LOG_WRITER_SECRET_KEY="logger-secret")
    assert done.returncode == 0, done.stderr
    assert "admin user add store logger logger-secret" in _calls(mc)
    assert _attached(mc) == {"reader": ["model-reader"], "writer": ["model-writer"], "logger": ["inference-log-writer"]}


@pytest.mark.parametrize("uri", ["/var/log/traffic", "s3://", "s3:///prefix", 's3://logs/a"b', "s3://logs/*"])
def test_a_bad_log_uri_is_refused_before_anything_changes(mc, uri):
    done = _run_setup(mc, LOG_URI=uri)
    assert done.returncode != 0
    assert f"LOG_URI='{uri}' is invalid: expected s3://bucket/prefix/" in done.stderr
    assert not (mc / "calls.log").exists()
