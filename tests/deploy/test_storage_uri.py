"""Why every storageUri ends with "/": KServe's storage initializer downloads every object whose key
starts with the URI's path, so s3://models/diabetes-rf/v4 also pulls v40..v49 into the model folder.

Run against the loopback S3 server with kserve_storage, the code KServe's storage initializer runs.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from kserve_storage import Storage

pytestmark = pytest.mark.integration

BUCKET = "storage-uri-prefix"
MODEL = "diabetes-rf"
FOLDERS = ("v4", "v40", "production", "production-old")


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    env = s3_server.env()
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=BUCKET)
    for folder in FOLDERS:
        for name in ("model.joblib", "metadata.json"):
            client.put_object(Bucket=BUCKET, Key=f"{MODEL}/{folder}/{name}", Body=folder.encode())
    return BUCKET


def _download(uri: str, out_dir: Path) -> dict[str, str]:
    Storage.download(uri, out_dir=str(out_dir))
    return {str(path.relative_to(out_dir)): path.read_text() for path in sorted(out_dir.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("folder", ["v4", "production"])
def test_without_the_slash_other_folders_come_along(s3_env, bucket, tmp_path, folder):
    files = _download(f"s3://{bucket}/{MODEL}/{folder}", tmp_path)
    assert files["model.joblib"] == folder
    # v40/model.joblib lands as 0/model.joblib; production-old/ as -old/model.joblib.
    assert len(files) == 4, sorted(files)


@pytest.mark.parametrize("folder", ["v4", "production"])
def test_with_the_slash_exactly_the_folder_comes(s3_env, bucket, tmp_path, folder):
    assert _download(f"s3://{bucket}/{MODEL}/{folder}/", tmp_path) == {"metadata.json": folder,
                                                                       "model.joblib": folder}
