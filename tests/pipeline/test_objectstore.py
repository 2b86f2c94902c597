"""Object-store settings and error translation: every failure names the endpoint and what to check."""

from __future__ import annotations

import pytest

from components.errors import (
    ObjectStoreAccessDenied,
    ObjectStoreConfigError,
    ObjectStoreUnreachable,
)
from components.objectstore import DEFAULT_ENDPOINT, ObjectStore, StoreSettings
from pipelines.local.s3server import free_port

CREDS = {"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"}


def test_defaults_to_kubeflow_minio_without_tls():
    settings = StoreSettings.from_env(env=CREDS)
    assert (settings.endpoint, settings.secure, settings.region) == (DEFAULT_ENDPOINT, False, "us-east-1")


def test_parameters_win_over_environment():
    env = {**CREDS, "MINIO_ENDPOINT": "env-host:9000", "MINIO_SECURE": "1"}
    settings = StoreSettings.from_env("param-host:9000", False, env=env)
    assert (settings.endpoint, settings.secure) == ("param-host:9000", False)
    assert StoreSettings.from_env(env=env).endpoint == "env-host:9000"
    assert StoreSettings.from_env(env=env).secure is True


def test_aws_credentials_are_the_fallback():
    settings = StoreSettings.from_env(env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"})
    assert (settings.access_key, settings.secret_key) == ("a", "s")


def test_secret_is_not_in_repr():
    settings = StoreSettings.from_env(env={"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings)


def test_url_scheme_decides_tls():
    assert StoreSettings.from_env("https://minio.example:443", False, env=CREDS).secure is True
    assert StoreSettings.from_env("http://minio.example:80", True, env=CREDS).endpoint == "minio.example:80"


@pytest.mark.parametrize(
    "env, endpoint, expected",
    [
        ({}, None, "MINIO_ACCESS_KEY"),
        ({"MINIO_ACCESS_KEY": "a"}, None, "MINIO_SECRET_KEY"),
        ({**CREDS, "MINIO_SECURE": "maybe"}, None, "MINIO_SECURE='maybe'"),
        (CREDS, "minio:9000/bucket", "not host:port"),
        (CREDS, "ftp://minio:21", "scheme 'ftp'"),
    ],
)
def test_bad_settings_are_named(env, endpoint, expected):
    with pytest.raises(ObjectStoreConfigError, match=expected):
        StoreSettings.from_env(endpoint, env=env)


def test_unreachable_endpoint_names_it_and_fails_fast():
    port = free_port()
    store = ObjectStore(StoreSettings.from_env(f"127.0.0.1:{port}", False, env=CREDS))
    with pytest.raises(ObjectStoreUnreachable, match=rf"127\.0\.0\.1:{port}.*MINIO_ENDPOINT"):
        store.bucket_exists("models")


@pytest.mark.integration
def test_wrong_credentials_say_which_settings_to_check(s3_server):
    env = {**s3_server.env(), "MINIO_SECRET_KEY": "wrong"}
    store = ObjectStore(StoreSettings.from_env(env=env))
    with pytest.raises(ObjectStoreAccessDenied, match=r"access denied.*MINIO_ACCESS_KEY / MINIO_SECRET_KEY"):
        store.bucket_exists("models")
    # rclone answers a wrong key on object calls with text/xml, which minio calls "non-XML": same error.
    with pytest.raises(ObjectStoreAccessDenied, match=s3_server.endpoint):
        store.get_bytes("models", "any/key")


@pytest.mark.integration
def test_tls_mismatch_points_at_minio_secure(s3_server):
    store = ObjectStore(StoreSettings.from_env(s3_server.endpoint, True, env=s3_server.env()))
    with pytest.raises(ObjectStoreUnreachable, match="MINIO_SECURE"):
        store.bucket_exists("models")


@pytest.mark.integration
def test_round_trip_and_missing_objects(store, bucket):
    assert store.get_json(bucket, "m/production/metadata.json") is None  # no bucket yet
    assert store.list_children(bucket, "m/") == []
    assert store.ensure_bucket(bucket) is True
    assert store.ensure_bucket(bucket) is False
    store.put_bytes(bucket, "m/v1/metadata.json", b'{"version": 1}')
    assert store.get_json(bucket, "m/v1/metadata.json") == {"version": 1}
    assert store.get_json(bucket, "m/v2/metadata.json") is None
    assert store.list_children(bucket, "m/") == ["v1/"]
    assert store.exists(bucket, "m/v1/metadata.json") and not store.exists(bucket, "m/v1/model.joblib")
