"""What every pipeline does to its tasks: bucket credentials from a Secret, and the pod's size.

Shared by the training and the batch-scoring pipelines, so neither imports the other.
"""

# No "from __future__ import annotations": KFP reads the real annotation objects.
from kfp import dsl, kubernetes

# Kubeflow's own object-store credentials: the default of the minio_secret parameter. In a
# multi-user install a profile namespace may hold a copy with read-only keys, or none: point
# minio_secret at a Secret with the same two keys that may write the bucket.
MINIO_SECRET = "mlpipeline-minio-artifact"
MINIO_SECRET_KEYS = {"accesskey": "MINIO_ACCESS_KEY", "secretkey": "MINIO_SECRET_KEY"}

CPU_REQUEST = "500m"
MEMORY_REQUEST = "512Mi"
MEMORY_LIMIT = "2Gi"


def with_bucket_access(task: dsl.PipelineTask, secret: str, optional: bool = False) -> dsl.PipelineTask:
    """MINIO_ACCESS_KEY/MINIO_SECRET_KEY from the Secret named by the minio_secret parameter.

    Args:
        task: the task whose pod gets the variables.
        secret: the Secret's name (the minio_secret pipeline parameter).
        optional: True lets the pod start without the Secret (ingest reads sklearn: and http(s)
            sources without keys; an s3:// source without keys fails with a message saying which to set).

    Returns:
        The same task, for chaining.
    """
    return kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=MINIO_SECRET_KEYS,
                                        optional=optional)


def sized(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """The CPU and memory a data step asks for (requests) and may use (memory limit).

    Args:
        task: the task to size.

    Returns:
        The same task, for chaining.
    """
    return task.set_cpu_request(CPU_REQUEST).set_memory_request(MEMORY_REQUEST).set_memory_limit(MEMORY_LIMIT)
