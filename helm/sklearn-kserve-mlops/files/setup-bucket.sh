#!/bin/sh
# Create the model bucket, a read-only user for the model server (policy model-reader) and a
# write user for the training pipeline's push step (policy model-writer). Safe to run again.
# With LOG_URI (the server's SERVING_INFERENCE_LOG, s3://bucket/prefix/): also the inference log's
# bucket and policy inference-log-writer, which may only put objects under that prefix, attached to
# the model server's user (LOG_WRITER_ACCESS_KEY/SECRET_KEY when the server writes with other keys).
# Env: MINIO_HOST, BUCKET, MINIO_ROOT_USER/PASSWORD, READER_ACCESS_KEY/SECRET_KEY,
#      WRITER_ACCESS_KEY/SECRET_KEY, optional LOG_URI, LOG_WRITER_ACCESS_KEY/SECRET_KEY.
# Policies: $POLICY_DIR/{reader,writer}-policy.json; the log's is written from LOG_URI.
# Plain sh and mc only: the mc image promises neither grep nor sed.
set -eu
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/mc}"
POLICY_DIR="${POLICY_DIR:-/config}"
LOG_URI="${LOG_URI:-}"

if [ "${READER_ACCESS_KEY}" = "${WRITER_ACCESS_KEY}" ]; then
  echo "READER_ACCESS_KEY (Secret model-reader-s3) and WRITER_ACCESS_KEY (Secret model-writer) are both" \
       "'${READER_ACCESS_KEY}'; expected two different users, or the model server could write too" >&2
  exit 1
fi

# bad_log_uri: LOG_URI is not s3://bucket/prefix/, or its prefix holds what would break or widen the policy.
bad_log_uri() {
  echo "LOG_URI='${LOG_URI}' is invalid: expected s3://bucket/prefix/ (the server's SERVING_INFERENCE_LOG)," \
       "without quotes, backslashes or *" >&2
  exit 1
}

if [ -n "${LOG_URI}" ]; then
  case "${LOG_URI}" in
    s3://*) ;;
    *) bad_log_uri ;;
  esac
  log_path="${LOG_URI#s3://}"
  log_bucket="${log_path%%/*}"
  log_prefix="${log_path#"${log_bucket}"}"
  log_prefix="${log_prefix#/}"
  while [ "${log_prefix%/}" != "${log_prefix}" ]; do log_prefix="${log_prefix%/}"; done
  [ -z "${log_prefix}" ] || log_prefix="${log_prefix}/"  # as the server keys it: <prefix>/model=...
  [ -n "${log_bucket}" ] || bad_log_uri
  case "${log_bucket}/${log_prefix}" in
    *'"'* | *'\'* | *'*'*) bad_log_uri ;;
  esac
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
  mc admin policy create store "$1" "$2"
  mc admin user add store "$3" "$4"
  if ! has_policy "$3" "$1"; then
    mc admin policy attach store "$1" --user "$3"
  fi
  echo "user $3 has policy $1"
}

grant model-reader "${POLICY_DIR}/reader-policy.json" "${READER_ACCESS_KEY}" "${READER_SECRET_KEY}"
grant model-writer "${POLICY_DIR}/writer-policy.json" "${WRITER_ACCESS_KEY}" "${WRITER_SECRET_KEY}"
echo "bucket ${BUCKET} ready"

if [ -n "${LOG_URI}" ]; then
  # PutObject only: the server writes new objects (single PUTs) and never lists, reads or deletes.
  log_policy="${MC_CONFIG_DIR}/inference-log-policy.json"
  mkdir -p "${MC_CONFIG_DIR}"
  printf '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::%s/%s*"]}]}\n' \
    "${log_bucket}" "${log_prefix}" >"${log_policy}"
  mc mb --ignore-existing "store/${log_bucket}"
  grant inference-log-writer "${log_policy}" "${LOG_WRITER_ACCESS_KEY:-${READER_ACCESS_KEY}}" \
    "${LOG_WRITER_SECRET_KEY:-${READER_SECRET_KEY}}"
  echo "inference log s3://${log_bucket}/${log_prefix} ready"
fi
