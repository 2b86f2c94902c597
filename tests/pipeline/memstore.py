"""An in-memory object store with S3's conditional-write semantics and failure injection.

It has the methods components.registry.Store names, answering as MinIO does: ETags are the MD5 of
the bytes, `If-None-Match: *` on an existing key and a stale `If-Match` raise 412-style errors, a
copy keeps the bytes, deleting a missing key is no error. honours_conditions=False plays rclone,
which writes whatever the headers say.

Failure injection: fail(op, key_suffix, landed) makes the next matching call raise
ObjectStoreUnreachable, before the operation (landed=False) or after it took effect (landed=True,
an answer lost on the way back). `calls` records every operation as (op, key) for the policy test.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from components.errors import ObjectAlreadyExists, ObjectNotFound, ObjectStoreUnreachable, PreconditionFailed


@dataclass
class Fault:
    op: str  # put | copy | remove | get | list
    key_suffix: str
    landed: bool
    times: int = 1


@dataclass
class MemStore:
    honours_conditions: bool = True
    objects: dict[str, dict[str, bytes]] = field(default_factory=dict)  # bucket -> key -> bytes
    calls: list[tuple[str, str]] = field(default_factory=list)
    content_types: dict[tuple[str, str], str] = field(default_factory=dict)  # (bucket, key) -> as written
    faults: list[Fault] = field(default_factory=list)
    # Called before each write lands (op, key): a test plays a concurrent writer from here.
    before_write: Callable[[str, str], None] | None = None

    # -------------------------------------------------------------- test helpers

    def fail(self, op: str, key_suffix: str, landed: bool = False, times: int = 1) -> None:
        self.faults.append(Fault(op, key_suffix, landed, times))

    def keys(self, bucket: str) -> list[str]:
        return sorted(self.objects.get(bucket, {}))

    def _fault(self, op: str, key: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.op == op and key.endswith(fault.key_suffix):
                fault.times -= 1
                return fault
        return None

    def _guarded(self, op: str, key: str, action: Callable[[], object]):
        self.calls.append((op, key))
        fault = self._fault(op, key)
        if fault is not None and not fault.landed:
            raise ObjectStoreUnreachable(f"injected: connection lost before {op} {key}")
        result = action()
        if fault is not None:
            raise ObjectStoreUnreachable(f"injected: answer to {op} {key} lost")
        return result

    def _bucket(self, bucket: str) -> dict[str, bytes]:
        if bucket not in self.objects:
            raise ObjectNotFound(f"cannot use s3://{bucket}: NoSuchBucket")
        return self.objects[bucket]

    # -------------------------------------------------------------- the Store protocol

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    def bucket_exists(self, bucket: str) -> bool:
        self.calls.append(("head_bucket", ""))
        return bucket in self.objects

    def ensure_bucket(self, bucket: str) -> bool:
        if self.bucket_exists(bucket):
            return False
        self.calls.append(("create_bucket", ""))
        self.objects[bucket] = {}
        return True

    def list_children(self, bucket: str, prefix: str) -> list[str]:
        def children() -> list[str]:
            names = set()
            for key in self.objects.get(bucket, {}):
                if key.startswith(prefix):
                    rest = key[len(prefix):]
                    names.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
            return sorted(names)
        return self._guarded("list", prefix, children)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        return self._guarded("list", prefix,
                             lambda: sorted(k for k in self.objects.get(bucket, {}) if k.startswith(prefix)))

    def exists(self, bucket: str, key: str) -> bool:
        return self._guarded("get", key, lambda: key in self.objects.get(bucket, {}))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        def read() -> bytes:
            if key not in self.objects.get(bucket, {}):
                raise ObjectNotFound(f"cannot read s3://{bucket}/{key}: NoSuchKey")
            return self.objects[bucket][key]
        return self._guarded("get", key, read)

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.get_bytes(bucket, key)
        except ObjectNotFound:
            return None
        return data, hashlib.md5(data).hexdigest()

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                  if_absent: bool = False, if_match: str | None = None) -> str:
        if self.before_write is not None:
            self.before_write("put", key)

        def write() -> str:
            objects = self._bucket(bucket)
            if self.honours_conditions and if_absent and key in objects:
                raise ObjectAlreadyExists(f"cannot write s3://{bucket}/{key}: it already exists (PreconditionFailed)")
            if self.honours_conditions and if_match is not None and (
                    key not in objects or hashlib.md5(objects[key]).hexdigest() != if_match):
                raise PreconditionFailed(f"cannot write s3://{bucket}/{key}: it changed since it was read")
            objects[key] = bytes(data)
            self.content_types[bucket, key] = content_type
            return hashlib.md5(data).hexdigest()
        return self._guarded("put", key, write)

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        if self.before_write is not None:
            self.before_write("copy", target_key)

        def copy() -> None:
            objects = self._bucket(bucket)
            if source_key not in objects:
                raise ObjectNotFound(f"cannot copy s3://{bucket}/{source_key}: NoSuchKey")
            objects[target_key] = objects[source_key]
            self.content_types[bucket, target_key] = self.content_types.get((bucket, source_key), "")
        self.calls.append(("copy_source", source_key))
        return self._guarded("copy", target_key, copy)

    def remove(self, bucket: str, key: str) -> None:
        self._guarded("remove", key, lambda: self.objects.get(bucket, {}).pop(key, None))


def seed_version(store, bucket: str, model_name: str, number: int, metadata: dict | bytes,
                 model: bytes = b"a model") -> None:
    """Write a v<N> as a push leaves it (claim, model, metadata), with the sha256 of `model` filled in."""
    import json

    store.ensure_bucket(bucket)
    prefix = f"{model_name}/v{number}/"
    store.put_bytes(bucket, prefix + "claim.json", b'{"run_id": "seed"}')
    store.put_bytes(bucket, prefix + "model.joblib", model)
    if isinstance(metadata, dict):
        metadata = json.dumps({"sha256": hashlib.sha256(model).hexdigest(), "version": number, **metadata}).encode()
    store.put_bytes(bucket, prefix + "metadata.json", metadata)


def seed_pointer(store, bucket: str, model_name: str, number: int, model: bytes = b"a model", seq: int = 1) -> None:
    """production.json naming v<N> (written directly: also for versions the registry would refuse)."""
    import json

    store.put_bytes(bucket, f"{model_name}/production.json", json.dumps(
        {"version": number, "sha256": hashlib.sha256(model).hexdigest(), "seq": seq, "moved_at": "",
         "by": "seed", "reason": "seed", "action": "push", "previous": None}).encode())
