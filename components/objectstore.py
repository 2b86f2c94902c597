"""The MinIO / S3 client the pipeline uses, built from the environment (contract.store reads the settings).

Every failure is turned into an ObjectStoreError subclass whose message names the endpoint
and the bucket and says what to check (components.storeerrors.translate).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from typing import Any, Iterator

import urllib3
from minio.commonconfig import CopySource
from minio.error import MinioException

from components.errors import ObjectAlreadyExists, ObjectNotFound, ObjectStoreAccessDenied, ObjectStoreError, PreconditionFailed
from components.storeerrors import created_meanwhile, is_bare_403, is_internal_error, translate
from contract.settings import parse_bool
from contract.store import DEFAULT_ENDPOINT, ENDPOINT_ENV, StoreSettings, minio_client

# Re-exported: the pipeline's steps and tests import the settings with the client.
__all__ = ["ObjectStore", "StoreSettings", "DEFAULT_ENDPOINT", "ENDPOINT_ENV", "parse_bool", "translate"]

log = logging.getLogger(__name__)

# Where a conditional write (If-None-Match) must be one PUT: S3's single-request limit.
SINGLE_PUT_LIMIT = 5 << 30
# Before the one retry of an unconditional write that got a 500 InternalError.
INTERNAL_ERROR_PAUSE_S = 0.05


class ObjectStore:
    """The few S3 operations the pipeline needs, with errors that say what to check."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._client = minio_client(settings)

    @classmethod
    def from_env(cls, endpoint: str | None = None, secure: bool | str | None = None) -> "ObjectStore":
        """A client for the store the settings name (contract.store.StoreSettings.from_env).

        Args:
            endpoint: host:port or URL; None reads MINIO_ENDPOINT.
            secure: TLS on/off; None reads MINIO_SECURE.

        Returns:
            The client; ObjectStoreConfigError for bad or missing settings.
        """
        return cls(StoreSettings.from_env(endpoint, secure))

    def uri(self, bucket: str, key: str = "") -> str:
        """The s3:// URI of a bucket or key, for messages.

        Args:
            bucket: the bucket.
            key: a key or prefix (default: the bucket itself).

        Returns:
            s3://bucket/key.
        """
        return f"s3://{bucket}/{key}"

    @contextlib.contextmanager
    def _errors(self, action: str, bucket: str, key: str = "") -> Iterator[None]:
        try:
            yield
        except ObjectStoreError:
            raise
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise translate(exc, action, self.uri(bucket, key), self.settings.url) from exc

    def bucket_exists(self, bucket: str) -> bool:
        """Whether the bucket exists.

        Args:
            bucket: the bucket.

        Returns:
            True or False; ObjectStoreAccessDenied says whether the keys were rejected or lack the permission.
        """
        try:
            with self._errors("check bucket", bucket):
                return self._client.bucket_exists(bucket)
        except ObjectStoreAccessDenied as exc:
            if not is_bare_403(exc.__cause__):
                raise
            # A HEAD answer has no body, so a 403 cannot tell rejected keys from missing permission;
            # a listing (a GET, of one page at most) gets the server's own error code.
            with self._errors("list", bucket):
                next(iter(self._client.list_objects(bucket)), None)
            raise

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket when missing; True when it was created.

        Args:
            bucket: the bucket.

        Returns:
            True when this call created it; False when it existed (or a concurrent run created it).
        """
        if self.bucket_exists(bucket):
            return False
        with self._errors("create bucket", bucket):
            try:
                self._client.make_bucket(bucket)
            except MinioException as exc:  # rclone's error body is "non-XML" to minio: read the code anyway
                if not created_meanwhile(exc):
                    raise
                return False  # a concurrent run created it between the check and the create
        log.info("created bucket %s", self.uri(bucket))
        return True

    def list_children(self, bucket: str, prefix: str) -> list[str]:
        """Names directly under prefix ("a/b/" -> ["v1/", "production/", "x.txt"]); [] without the bucket.

        Args:
            bucket: the bucket.
            prefix: the folder, ending in /.

        Returns:
            The names, folders with a trailing /.
        """
        if not self.bucket_exists(bucket):
            return []
        with self._errors("list", bucket, prefix):
            return [obj.object_name[len(prefix):] for obj in self._client.list_objects(bucket, prefix=prefix)]

    def exists(self, bucket: str, key: str) -> bool:
        """Whether the object exists.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            True or False.
        """
        try:
            with self._errors("stat", bucket, key):
                self._client.stat_object(bucket, key)
        except ObjectNotFound:
            return False
        return True

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The object's content, read whole.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            The bytes; ObjectNotFound when absent.
        """
        with self._errors("read", bucket, key):
            response = self._client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_json(self, bucket: str, key: str) -> Any | None:
        """The parsed JSON object at key, or None when the bucket or object does not exist.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            The parsed JSON, or None; ObjectStoreError when it is not JSON.
        """
        try:
            data = self.get_bytes(bucket, key)
        except ObjectNotFound:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ObjectStoreError(f"{self.uri(bucket, key)} is not valid JSON: {exc}") from exc

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """(bytes, ETag) read in one GET, so the ETag is the one of these bytes; None when absent.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            (bytes, ETag without quotes), or None.
        """
        try:
            with self._errors("read", bucket, key):
                response = self._client.get_object(bucket, key)
                try:
                    return response.read(), _etag(response.headers.get("ETag", ""))
                finally:
                    response.close()
                    response.release_conn()
        except ObjectNotFound:
            return None

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                  if_absent: bool = False, if_match: str | None = None) -> str:
        """Write an object and return its ETag.

        if_absent: only when no object is there (If-None-Match: *), else ObjectAlreadyExists.
        if_match: only when the object's ETag is still this one (If-Match), else PreconditionFailed.
        MinIO, AWS S3 and moto enforce both; rclone ignores them, which ObjectStore cannot see:
        components.registry probes the store (conditional_writes) before relying on them.

        Args:
            bucket: the bucket.
            key: the object's key.
            data: the content.
            content_type: its Content-Type.
            if_absent: write only when no object is there.
            if_match: write only when the object's ETag is still this one.

        Returns:
            The new object's ETag, without quotes.
        """
        if if_absent and if_match:
            raise ValueError("if_absent and if_match exclude each other")
        if not (if_absent or if_match):
            def put() -> Any:
                with self._errors("write", bucket, key):
                    return self._client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)

            try:
                result = put()
            except ObjectStoreError as exc:
                if not is_internal_error(exc.__cause__):
                    raise
                # S3's advice for a 500 InternalError is to try again; the same bytes to the same key make
                # that safe here (not for a conditional write: a lost answer to one that took effect would
                # come back as a conflict). rclone answers one when parallel PUTs create the same folder.
                time.sleep(INTERNAL_ERROR_PAUSE_S)
                result = put()
            return _etag(result.etag or "")
        condition = {"If-None-Match": "*"} if if_absent else {"If-Match": f'"{_etag(if_match or "")}"'}
        # The server's error is translated first (inner `with`), so that a 412 or 404 can be read as
        # what it means for this condition (tests/pipeline/test_conditional_writes.py, on the wire).
        try:
            with self._errors("write", bucket, key):
                return self._put_conditional(bucket, key, data, content_type, condition)
        except ObjectNotFound as exc:  # AWS answers If-Match on a missing key with 404
            if if_absent:  # no bucket
                raise
            raise PreconditionFailed(f"cannot write {self.uri(bucket, key)}: it is gone (If-Match)") from exc
        except ObjectAlreadyExists as exc:
            if if_absent:
                raise
            raise PreconditionFailed(f"cannot write {self.uri(bucket, key)}: it changed since it was read "
                                     f"(If-Match {if_match})") from exc

    def _put_conditional(self, bucket: str, key: str, data: bytes, content_type: str,
                         condition: dict[str, str]) -> str:
        if len(data) > SINGLE_PUT_LIMIT:
            raise ObjectStoreError(f"cannot write {self.uri(bucket, key)} conditionally: {len(data)} bytes is "
                                   f"more than one S3 PUT takes ({SINGLE_PUT_LIMIT})")
        # minio 7.2.20 (pinned) turns every extra put_object header into user metadata
        # (X-Amz-Meta-If-None-Match), so the condition goes through its private one-request
        # _put_object (tests/pipeline/test_objectstore.py pins that it still exists and sends it).
        put = getattr(self._client, "_put_object", None)
        if put is None:
            raise ObjectStoreError(f"this minio client cannot send {', '.join(condition)}: cannot write "
                                   f"{self.uri(bucket, key)} conditionally (pin minio==7.2.20)")
        result = put(bucket, key, data, {"Content-Type": content_type, **condition})
        return _etag(getattr(result, "etag", "") or "")

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        """Server-side copy within the bucket: the bytes never pass through this process.

        Args:
            bucket: the bucket.
            source_key: the object to copy.
            target_key: where the copy goes.
        """
        with self._errors("copy into", bucket, target_key):
            self._client.copy_object(bucket, target_key, CopySource(bucket, source_key))

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every object key under prefix, at any depth, sorted; [] without the bucket.

        Args:
            bucket: the bucket.
            prefix: the prefix ("" for all).

        Returns:
            The keys, sorted, without folder markers.
        """
        if not self.bucket_exists(bucket):
            return []
        with self._errors("list", bucket, prefix):
            return sorted(obj.object_name for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True)
                          if not obj.is_dir)

    def download_file(self, bucket: str, key: str, path: str | os.PathLike) -> None:
        """Stream an object into a local file (never whole in memory).

        Args:
            bucket: the bucket.
            key: the object's key.
            path: the local file to write.
        """
        with self._errors("read", bucket, key):
            self._client.fget_object(bucket, key, os.fspath(path))

    def upload_file(self, bucket: str, key: str, path: str | os.PathLike,
                    content_type: str = "application/octet-stream") -> None:
        """Stream a local file into an object (multipart when large); the object appears whole or not at all.

        Args:
            bucket: the bucket.
            key: the object's key.
            path: the local file to read.
            content_type: its Content-Type.
        """
        with self._errors("write", bucket, key):
            self._client.fput_object(bucket, key, os.fspath(path), content_type=content_type)

    def remove(self, bucket: str, key: str) -> None:
        """Delete an object; deleting one that is not there is not an error (S3 semantics).

        Args:
            bucket: the bucket.
            key: the object's key.
        """
        with self._errors("delete", bucket, key):
            self._client.remove_object(bucket, key)


def _etag(value: str) -> str:
    """An ETag without its quotes (servers send '"abc"', minio's results hold 'abc')."""
    return value.strip().strip('"')
