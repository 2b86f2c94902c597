#!/bin/sh
# Create the model bucket and a read-only user for the model server. Safe to run again.
# Env: MINIO_HOST, BUCKET, MINIO_ROOT_USER/PASSWORD, READER_ACCESS_KEY/SECRET_KEY.
set -eu
export MC_CONFIG_DIR=/tmp/mc

attempt=0
until mc alias set store "http://${MINIO_HOST}" "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "${attempt}" -ge 60 ]; then
    echo "MinIO at ${MINIO_HOST} did not answer within 3 minutes" >&2
    exit 1
  fi
  echo "waiting for MinIO at ${MINIO_HOST} (${attempt}/60)"
  sleep 3
done

mc mb --ignore-existing "store/${BUCKET}"
mc admin policy create store model-reader /config/reader-policy.json
mc admin user add store "${READER_ACCESS_KEY}" "${READER_SECRET_KEY}"
# attach fails when the policy is already attached, so look first.
if ! mc admin user info store "${READER_ACCESS_KEY}" | grep -q model-reader; then
  mc admin policy attach store model-reader --user "${READER_ACCESS_KEY}"
fi
echo "bucket ${BUCKET} ready; user ${READER_ACCESS_KEY} may read it"
