"""The shipped MinIO writer policies grant every S3 action push, promote and rollback make.

The calls are recorded by MemStore while the registry works; each maps to the S3 action MinIO
checks, which must be allowed on the object (or the bucket) by both policy files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import evaluate, push
from components.registry import Guard, Registry

from .memstore import MemStore

ROOT = Path(__file__).resolve().parents[2]
POLICIES = [ROOT / "manifests/components/minio/writer-policy.json",
            ROOT / "helm/sklearn-kserve-mlops/files/writer-policy.json"]
BUCKET = "models"  # the bucket both policies name
# MemStore operation -> the S3 action MinIO authorises it by (HEAD and GET both need GetObject).
ACTIONS = {"get": "s3:GetObject", "put": "s3:PutObject", "copy": "s3:PutObject", "copy_source": "s3:GetObject",
           "remove": "s3:DeleteObject", "list": "s3:ListBucket", "head_bucket": "s3:ListBucket"}


def allowed(policy: dict, action: str, resource: str) -> bool:
    for statement in policy["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        matches = any(r == resource or (r.endswith("*") and resource.startswith(r[:-1])) for r in resources)
        if statement["Effect"] == "Allow" and action in statement["Action"] and matches:
            return True
    return False


@pytest.fixture(scope="module")
def calls(diabetes, diabetes_rf, tmp_path_factory):
    from components import train

    folder = tmp_path_factory.mktemp("policy")
    evaluate.run(test_path=diabetes.test, schema_path=diabetes.schema, model_dir=diabetes_rf, threshold=0.2,
                 model_name="m", bucket=BUCKET, store=None, data_source=diabetes.source, seed=42, test_fraction=0.2,
                 evaluation_path=folder / "evaluation.json", report_path=folder / "report.md")
    other = folder / "other"
    train.run(train_path=diabetes.train, schema_path=diabetes.schema, model_dir=other, estimator="ridge",
              hyperparameters="{}", seed=42)
    store = MemStore(objects={BUCKET: {}})  # the bucket exists: in the cluster the setup job makes it
    push.run(model_dir=diabetes_rf, schema_path=diabetes.schema, evaluation_path=folder / "evaluation.json",
             model_name="m", bucket=BUCKET, store=store, run_id="r1")
    store.put_bytes(BUCKET, "m/v9/model.joblib", b"partial")  # so the next push removes something
    push.run(model_dir=other, schema_path=diabetes.schema, evaluation_path=folder / "evaluation.json", model_name="m",
             bucket=BUCKET, store=store, run_id="r2")
    registry = Registry.for_writing(store, BUCKET, "m", Guard())
    registry.promote(1, "t", "r")
    registry.rollback("t", "r")
    return store.calls


@pytest.mark.parametrize("policy_path", POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_writer_policy_grants_what_the_registry_does(calls, policy_path):
    policy = json.loads(policy_path.read_text())
    operations = {op for op, _ in calls}
    assert {"put", "copy", "remove", "get", "list"} <= operations  # the recording saw every kind
    assert "create_bucket" not in operations
    refused = sorted({(ACTIONS[op], key) for op, key in calls
                      if not allowed(policy, ACTIONS[op], f"arn:aws:s3:::{BUCKET}" if ACTIONS[op] == "s3:ListBucket"
                                     else f"arn:aws:s3:::{BUCKET}/{key}")})
    assert not refused, refused


def test_without_delete_the_policy_would_refuse_the_cleanup(calls):
    policy = json.loads(POLICIES[0].read_text())
    for statement in policy["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != "s3:DeleteObject"]
    assert any(op == "remove" and not allowed(policy, "s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/{key}")
               for op, key in calls)
