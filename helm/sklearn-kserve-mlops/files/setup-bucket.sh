#!/bin/sh
# Create the model bucket, a read-only user for the model server (policy model-reader) and a
# write user for the training pipeline's push step (policy model-writer). Safe to run again.
# Env: MINIO_HOST, BUCKET, MINIO_ROOT_USER/PASSWORD, READER_ACCESS_KEY/SECRET_KEY,
#      WRITER_ACCESS_KEY/SECRET_KEY. Policies: $POLICY_DIR/{reader,writer}-policy.json.
# Plain sh and mc only: the mc image promises neither grep nor sed.
set -eu
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/mc}"
POLICY_DIR="${POLICY_DIR:-/config}"

if [ "${READER_ACCESS_KEY}" = "${WRITER_ACCESS_KEY}" ]; then
  echo "READER_ACCESS_KEY (Secret model-reader-s3) and WRITER_ACCESS_KEY (Secret model-writer) are both" \
       "'${READER_ACCESS_KEY}'; expected two different users, or the model server could write too" >&2
  exit 1
fi

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

# has_policy ACCESS_KEY POLICY: whether `mc admin user info` lists exactly POLICY on its
# "PolicyName: a,b" line (a substring test would be fooled by an access key like "model-reader").
has_policy() {
  mc admin user info store "$1" | {
    while IFS= read -r line; do
      line="${line#"${line%%[! ]*}"}"
      case "${line}" in
        PolicyName:*)
          IFS=', '
          for name in ${line#PolicyName:}; do
            [ "${name}" = "$2" ] && exit 0
          done
          ;;
      esac
    done
    exit 1
  }
}

# grant POLICY POLICY_FILE ACCESS_KEY SECRET_KEY: create or update policy and user; attach once
# (attach fails when the policy is already attached).
grant() {
  mc admin policy create store "$1" "${POLICY_DIR}/$2"
  mc admin user add store "$3" "$4"
  if ! has_policy "$3" "$1"; then
    mc admin policy attach store "$1" --user "$3"
  fi
  echo "user $3 has policy $1 on bucket ${BUCKET}"
}

grant model-reader reader-policy.json "${READER_ACCESS_KEY}" "${READER_SECRET_KEY}"
grant model-writer writer-policy.json "${WRITER_ACCESS_KEY}" "${WRITER_SECRET_KEY}"
echo "bucket ${BUCKET} ready"
