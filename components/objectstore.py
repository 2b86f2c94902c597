"""The MinIO / S3 client the pipeline uses, built from the environment.

Settings (same names in the cluster and locally, see README):
    MINIO_ENDPOINT    host:port (default minio-service.kubeflow:9000)
    MINIO_ACCESS_KEY  / MINIO_SECRET_KEY (fall back to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)
    MINIO_SECURE      0/1 (default 0)
    MINIO_REGION      default us-east-1: without an explicit region the minio client asks the
                      server for it, which S3 stand-ins such as rclone answer badly.

Every failure is turned into an ObjectStoreError subclass whose message names the endpoint
and the bucket and says what to check, instead of minio's "non-XML response ... 403".
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from components.errors import (
    ObjectNotFound,
    ObjectStoreAccessDenied,
    ObjectStoreConfigError,
    ObjectStoreError,
    ObjectStoreUnreachable,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "minio-service.kubeflow:9000"
DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = "MINIO_ENDPOINT"
ACCESS_KEY_ENVS = ("MINIO_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
SECRET_KEY_ENVS = ("MINIO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
SECURE_ENV = "MINIO_SECURE"
REGION_ENV = "MINIO_REGION"

# Fail in seconds, not minutes: minio's default pool waits 5 minutes and retries 5 times.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
RETRIES = 2

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound"}
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"Response code: (\d+)")


def parse_bool(value: str | bool, name: str) -> bool:
    """'0'/'1'/'true'/'false' (any case) -> bool; anything else is an error naming the setting."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ObjectStoreConfigError(f"{name}={value!r} is not a boolean: expected 0/1/true/false")


@dataclass(frozen=True)
class StoreSettings:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = False
    region: str = DEFAULT_REGION

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(
        cls,
        endpoint: str | None = None,
        secure: bool | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "StoreSettings":
        """Explicit arguments (pipeline parameters) win over the environment, which wins over defaults."""
        env = os.environ if env is None else env
        raw_endpoint = (endpoint or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).strip()
        if secure is None:
            is_secure = parse_bool(env.get(SECURE_ENV, "0"), SECURE_ENV)
        else:
            is_secure = parse_bool(secure, "minio_secure")
        host, is_secure = _split_endpoint(raw_endpoint, is_secure)
        access = _first(env, ACCESS_KEY_ENVS)
        secret = _first(env, SECRET_KEY_ENVS)
        if not access or not secret:
            raise ObjectStoreConfigError(
                f"no credentials for the object store at {host}: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY "
                "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); in a cluster they come from the "
                "secret mlpipeline-minio-artifact"
            )
        return cls(host, access, secret, is_secure, env.get(REGION_ENV) or DEFAULT_REGION)


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str:
    return next((env[name] for name in names if env.get(name)), "")


def _split_endpoint(raw: str, secure: bool) -> tuple[str, bool]:
    """Accept host:port, or a URL whose scheme then decides TLS; reject paths."""
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        if scheme not in ("http", "https"):
            raise ObjectStoreConfigError(f"minio_endpoint scheme {scheme!r} unsupported: expected host:port")
        secure = scheme == "https"
    host = raw.rstrip("/")
    if not host or "/" in host or " " in host:
        raise ObjectStoreConfigError(f"minio_endpoint {raw!r} is not host:port (e.g. minio-service.kubeflow:9000)")
    return host, secure


class ObjectStore:
    """The few S3 operations the pipeline needs, with errors that say what to check."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            retries=urllib3.Retry(total=RETRIES, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    @classmethod
    def from_env(cls, endpoint: str | None = None, secure: bool | str | None = None) -> "ObjectStore":
        return cls(StoreSettings.from_env(endpoint, secure))

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    @contextlib.contextmanager
    def _errors(self, action: str, bucket: str, key: str = "") -> Iterator[None]:
        where = f"{self.uri(bucket, key)} at {self.settings.url}"
        try:
            yield
        except ObjectStoreError:
            raise
        except S3Error as exc:
            raise _from_code(exc.code or "", 0, action, where) from exc
        except InvalidResponseError as exc:
            # S3 stand-ins answer errors as text/xml, which minio rejects as "non-XML": read the code anyway.
            text = str(exc)
            code = _XML_CODE.search(text)
            status = _STATUS.search(text)
            raise _from_code(code.group(1) if code else "", int(status.group(1)) if status else 0,
                             action, where) from exc
        except ServerError as exc:
            raise ObjectStoreError(f"cannot {action} {where}: server error {exc.status_code}") from exc
        except urllib3.exceptions.SSLError as exc:
            raise ObjectStoreUnreachable(
                f"cannot {action} {where}: TLS handshake failed ({exc}); check MINIO_SECURE / minio_secure"
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, urllib3.exceptions.SSLError):
                raise ObjectStoreUnreachable(
                    f"cannot {action} {where}: TLS handshake failed; check MINIO_SECURE / minio_secure"
                ) from exc
            raise ObjectStoreUnreachable(
                f"cannot reach the object store at {self.settings.url} to {action} {self.uri(bucket, key)}: "
                f"{reason}; check MINIO_ENDPOINT / minio_endpoint"
            ) from exc
        except MinioException as exc:
            raise ObjectStoreError(f"cannot {action} {where}: {exc}") from exc

    def bucket_exists(self, bucket: str) -> bool:
        with self._errors("check bucket", bucket):
            return self._client.bucket_exists(bucket)

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket when missing; True when it was created."""
        if self.bucket_exists(bucket):
            return False
        with self._errors("create bucket", bucket):
            self._client.make_bucket(bucket)
        log.info("created bucket %s", self.uri(bucket))
        return True

    def list_children(self, bucket: str, prefix: str) -> list[str]:
        """Names directly under prefix ("a/b/" -> ["v1/", "production/", "x.txt"]); [] without the bucket."""
        if not self.bucket_exists(bucket):
            return []
        with self._errors("list", bucket, prefix):
            return [obj.object_name[len(prefix):] for obj in self._client.list_objects(bucket, prefix=prefix)]

    def exists(self, bucket: str, key: str) -> bool:
        try:
            with self._errors("stat", bucket, key):
                self._client.stat_object(bucket, key)
        except ObjectNotFound:
            return False
        return True

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self._errors("read", bucket, key):
            response = self._client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_json(self, bucket: str, key: str) -> Any | None:
        """The parsed JSON object at key, or None when the bucket or object does not exist."""
        try:
            data = self.get_bytes(bucket, key)
        except ObjectNotFound:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ObjectStoreError(f"{self.uri(bucket, key)} is not valid JSON: {exc}") from exc

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._errors("write", bucket, key):
            self._client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


def _from_code(code: str, status: int, action: str, where: str) -> ObjectStoreError:
    if code in _DENIED_CODES or status == 403:
        return ObjectStoreAccessDenied(
            f"access denied ({code or status}) to {action} {where}: check MINIO_ACCESS_KEY / MINIO_SECRET_KEY "
            "(in a cluster: the secret mlpipeline-minio-artifact)"
        )
    if code in _MISSING_CODES or status == 404:
        return ObjectNotFound(f"cannot {action} {where}: {code or 'not found'}")
    return ObjectStoreError(f"cannot {action} {where}: {code or 'HTTP ' + str(status)}")
