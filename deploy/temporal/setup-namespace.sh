#!/bin/sh
# Waits for the Temporal frontend, creates the namespace the service uses, and registers the
# custom search attributes its workflows set. Idempotent: an existing namespace or search
# attribute is left as it is (a search attribute that exists with another type is an error).
# Runs in the temporalio/admin-tools image (the `temporal` CLI).
set -eu

address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is not set}"
namespace="${TEMPORAL_NAMESPACE:-default}"
retention="${TEMPORAL_NAMESPACE_RETENTION:-30d}"
# NAME=Type pairs; keep in step with DEV_SEARCH_ATTRIBUTES in src/dev/temporalServer.ts.
search_attributes="${TEMPORAL_SEARCH_ATTRIBUTES:-SignupState=Keyword}"
wait_seconds="${TEMPORAL_WAIT_SECONDS:-180}"

t() {
  temporal --address "$address" "$@"
}

echo "setup-namespace: waiting for Temporal at $address"
deadline=$(( $(date +%s) + wait_seconds ))
until t operator cluster health >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "setup-namespace: Temporal at $address is not serving after ${wait_seconds}s" >&2
    t operator cluster health >&2 || true
    exit 1
  fi
  sleep 2
done

if t operator namespace describe --namespace "$namespace" >/dev/null 2>&1; then
  echo "setup-namespace: namespace $namespace exists"
elif out=$(t operator namespace create --namespace "$namespace" --retention "$retention" 2>&1); then
  echo "setup-namespace: created namespace $namespace (retention $retention)"
elif echo "$out" | grep -qi "already"; then
  echo "setup-namespace: namespace $namespace exists"
else
  echo "$out" >&2
  exit 1
fi

# A new namespace reaches every frontend through the namespace cache within seconds; until
# then search-attribute calls can answer "namespace not found", hence the retries.
for pair in $search_attributes; do
  name="${pair%%=*}"
  type="${pair#*=}"
  tries=0
  while :; do
    existing=$(t operator search-attribute list --namespace "$namespace" 2>/dev/null \
      | awk -v n="$name" '$1 == n { print $2 }') || existing=""
    if [ "$existing" = "$type" ]; then
      echo "setup-namespace: search attribute $name ($type) exists"
      break
    elif [ -n "$existing" ]; then
      echo "setup-namespace: search attribute $name exists with type $existing, not $type" >&2
      exit 1
    fi
    if out=$(t operator search-attribute create --namespace "$namespace" --name "$name" --type "$type" 2>&1); then
      echo "setup-namespace: registered search attribute $name ($type)"
      break
    fi
    if echo "$out" | grep -qi "different type"; then
      echo "$out" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "$out" >&2
      exit 1
    fi
    sleep 2
  done
done
echo "setup-namespace: done"
