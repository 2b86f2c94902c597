"""How a minio / urllib3 failure becomes the ObjectStoreError that says what to check.

Instead of minio's "non-XML response ... 403": rejected keys, keys without the permission, a
wrong region, an untrusted certificate and a TLS mismatch each get their own advice.
"""

from __future__ import annotations

import re
import ssl
from typing import Iterator

import urllib3
from minio.error import MinioException, S3Error, ServerError

from components.errors import (ObjectAlreadyExists, ObjectNotFound, ObjectStoreAccessDenied, ObjectStoreConfigError,
                               ObjectStoreError, ObjectStoreUnreachable)
from contract.store import CA_BUNDLE_ENV

_KEYS_REJECTED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch"}
_NOT_ALLOWED_CODES = {"AccessDenied", "AllAccessDisabled"}
_REGION_CODES = {"AuthorizationHeaderMalformed", "InvalidRegion", "IllegalLocationConstraintException",
                 "InvalidLocationConstraint"}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound"}
_EXISTS_CODES = {"PreconditionFailed"}
_CREATED_MEANWHILE_CODES = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"Response code: (\d+)")


def created_meanwhile(exc: MinioException) -> bool:
    """Whether a failed bucket creation says the bucket exists now (another run created it).

    Args:
        exc: what make_bucket raised.

    Returns:
        True for BucketAlreadyOwnedByYou / BucketAlreadyExists, in minio's form or an S3 stand-in's.
    """
    return code_status_message(exc)[0] in _CREATED_MEANWHILE_CODES


def is_bare_403(exc: BaseException | None) -> bool:
    """A 403 minio filled in itself because the answer had no body (HEAD requests): no code to go on.

    Args:
        exc: the error, or None.

    Returns:
        True for such a 403 (bucket_exists then lists to learn the real code).
    """
    if not isinstance(exc, S3Error) or exc.code != "AccessDenied":
        return False
    return not getattr(exc.response, "data", b"")


def code_status_message(exc: MinioException) -> tuple[str, int, str]:
    """(S3 error code or "", HTTP status or 0, message) of a minio error, also from a "non-XML" one.

    Args:
        exc: what minio raised.

    Returns:
        The triple; "" and 0 where the error does not say.
    """
    if isinstance(exc, S3Error):
        return exc.code or "", int(getattr(exc.response, "status", 0) or 0), exc.message or ""
    if isinstance(exc, ServerError):
        return "", exc.status_code, str(exc)
    # S3 stand-ins answer errors as text/xml, which minio rejects as "non-XML": read the code anyway.
    text = str(exc)
    code, status = _XML_CODE.search(text), _STATUS.search(text)
    return (code.group(1) if code else ""), (int(status.group(1)) if status else 0), text


def is_internal_error(exc: BaseException | None) -> bool:
    """Whether minio's error is S3's 500 InternalError ("We encountered an internal error. Please try again.").

    Args:
        exc: what minio raised (the translated error's __cause__).

    Returns:
        True for a 500 with the code InternalError, also from a "non-XML" answer.
    """
    if not isinstance(exc, MinioException):
        return False
    code, status, _ = code_status_message(exc)
    return code == "InternalError" and status in (0, 500)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc, then what it wraps: urllib3 keeps the cause in .reason, Python in __cause__/__context__."""
    seen: set[int] = set()
    current: object = exc
    while isinstance(current, BaseException) and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else current.__cause__ or current.__context__


def _certificate_rejected(exc: BaseException) -> bool:
    return any(isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cause)
               for cause in _causes(exc))


def _tls_failed(exc: BaseException) -> bool:
    return any(isinstance(cause, (urllib3.exceptions.SSLError, ssl.SSLError)) for cause in _causes(exc))


def translate(exc: BaseException, action: str, target: str, url: str) -> ObjectStoreError:
    """A minio / urllib3 failure as the ObjectStoreError that says what to check.

    Args:
        exc: the failure minio or urllib3 raised.
        action: what was attempted ("write", "create bucket").
        target: the s3:// URI it was attempted on.
        url: the endpoint.

    Returns:
        The ObjectStoreError subclass that fits, its message naming the target, the endpoint and what to check.
    """
    where = f"{target} at {url}"
    bucket = target.removeprefix("s3://").split("/", 1)[0]
    if isinstance(exc, urllib3.exceptions.HTTPError):
        if _certificate_rejected(exc):
            return ObjectStoreUnreachable(
                f"cannot {action} {where}: certificate not trusted; set {CA_BUNDLE_ENV} to the CA bundle "
                "that signed the object store's certificate")
        if _tls_failed(exc):
            return ObjectStoreUnreachable(
                f"cannot {action} {where}: TLS handshake failed; check MINIO_SECURE / minio_secure "
                "(does the endpoint speak TLS?)")
        reason = getattr(exc, "reason", None) or exc
        return ObjectStoreUnreachable(
            f"cannot reach the object store at {url} to {action} {target}: {reason}; "
            "check MINIO_ENDPOINT / minio_endpoint")
    if not isinstance(exc, MinioException):
        return ObjectStoreError(f"cannot {action} {where}: {type(exc).__name__}: {exc}")
    code, status, message = code_status_message(exc)
    if code in _KEYS_REJECTED_CODES:
        return ObjectStoreAccessDenied(
            f"keys rejected ({code}) to {action} {where}: check MINIO_ACCESS_KEY/MINIO_SECRET_KEY "
            "(in a cluster: the secret named by minio_secret)")
    # minio fills in "BadRequest ...; use region X" for a body-less HEAD answer to a wrong region.
    if code in _REGION_CODES or "use region" in message:
        return ObjectStoreConfigError(
            f"region refused ({code}) to {action} {where}: check MINIO_REGION (requests are signed for "
            "that region; it must be the server's)")
    if is_bare_403(exc):
        return ObjectStoreAccessDenied(
            f"access denied (HTTP 403, no detail) to {action} {where}: check MINIO_ACCESS_KEY/MINIO_SECRET_KEY, "
            f"or the keys may not {action} on {bucket}")
    if code in _NOT_ALLOWED_CODES or status == 403:
        return ObjectStoreAccessDenied(
            f"keys valid but not allowed to {action} on {bucket} ({code or 'HTTP 403'}, {url}): create the "
            "bucket beforehand or use a writer secret (minio_secret)")
    if code in _EXISTS_CODES or status == 412:
        return ObjectAlreadyExists(f"cannot {action} {where}: it already exists ({code or 'HTTP 412'})")
    if code in _MISSING_CODES or status == 404:
        return ObjectNotFound(f"cannot {action} {where}: {code or 'not found'}")
    if isinstance(exc, ServerError):
        return ObjectStoreError(f"cannot {action} {where}: server error {status}")
    detail = code or (f"HTTP {status}" if status else str(exc))
    return ObjectStoreError(f"cannot {action} {where}: {detail}")
