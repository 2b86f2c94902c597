"""The model layout in the bucket (the artifact contract), shared by evaluate and push.

    s3://<bucket>/<model-name>/v<N>/model.joblib, metadata.json     N = 1, 2, ...; never overwritten
    s3://<bucket>/<model-name>/production/model.joblib, metadata.json  moved last, metadata.json last
"""

from __future__ import annotations

import re
from typing import Any

from components.artifacts import METADATA_FILE, MODEL_FILE
from components.errors import PushError
from components.objectstore import ObjectStore

PRODUCTION = "production"
_VERSION = re.compile(r"^v([1-9][0-9]*)/$")
# S3 bucket naming rules, simplified: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# One path segment, safe in a URI and a Kubernetes name.
_MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


def check_location(bucket: str, model_name: str) -> None:
    if not _BUCKET.match(bucket or ""):
        raise PushError(
            f"bucket {bucket!r} is not a valid bucket name: expected 3-63 lowercase letters, digits, '.', '-'")
    if not _MODEL_NAME.match(model_name or ""):
        raise PushError(
            f"model_name {model_name!r} is invalid: expected lowercase letters, digits, '.', '_', '-' (no '/')"
        )


def version_prefix(model_name: str, version: int) -> str:
    return f"{model_name}/v{version}/"


def production_prefix(model_name: str) -> str:
    return f"{model_name}/{PRODUCTION}/"


def model_key(prefix: str) -> str:
    return prefix + MODEL_FILE


def metadata_key(prefix: str) -> str:
    return prefix + METADATA_FILE


def versions(store: ObjectStore, bucket: str, model_name: str) -> list[int]:
    """The v<N> folders that exist, sorted."""
    found = (_VERSION.match(child) for child in store.list_children(bucket, f"{model_name}/"))
    return sorted(int(match.group(1)) for match in found if match)


def production_metadata(store: ObjectStore, bucket: str, model_name: str) -> Any:
    """The parsed production/metadata.json, None when there is none yet; components.gate checks its shape."""
    return store.get_json(bucket, metadata_key(production_prefix(model_name)))
