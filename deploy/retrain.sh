#!/bin/sh
# Retrain a model from its config, export a new version into the model repository, promote it
# when its held-out error is no worse than the served version's, and tell the API to load it.
# A version that is worse stays a candidate (served by its number only) and the job exits 1.
# The train service of docker-compose.yml runs this:
#
#   docker compose --profile train run --rm train [CONFIG [extra `train` options...]]
#
# CONFIG defaults to configs/acoustics-room-2d.yaml. Data and runs live under ./data and
# ./runs (volumes in compose), so an interrupted run resumes where it stopped.
#   FIELDSERVE_MODEL_DIR   model repository to export into (default /models)
#   FIELDSERVE_API_URL     the API to reload (default http://api:8000; empty: do not reload)
#   FIELDSERVE_ADMIN_KEY   an admin key, when the API sets FIELDSERVE_ADMIN_KEYS/API_KEYS
set -eu

config="${1:-configs/acoustics-room-2d.yaml}"
[ "$#" -gt 0 ] && shift
models="${FIELDSERVE_MODEL_DIR:-/models}"
api="${FIELDSERVE_API_URL-http://api:8000}"
python="${PYTHON:-python}"

name=$("$python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["dataset"]["name"])' "$config")
family=$("$python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["family"])' "$config")
# The problem whose generator makes the data: the config's `problem:` (enf2enf trains on any
# geometry dataset: airfoils, elasticity), else the family's default, as `training` reads it.
problem=$("$python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get("problem") or "")' "$config")
case "$family" in
  deeponet) task="${problem:-acoustics}" ;;
  enf2enf) task="${problem:-airfoils}" ;;
  *) echo "retrain: unknown family '$family' in $config" >&2; exit 2 ;;
esac

echo "retrain: $name ($config)"
"$python" -m training generate "$task" --config "$config"   # resumes; a complete split is kept
"$python" -m training train --config "$config" "$@"          # resumes from runs/<name>
# Not piped into tail: under `sh -e` a failed export in a pipeline would go unnoticed.
exported=$("$python" -m training export --run "runs/$name" --out "$models")
version_dir=$(printf '%s\n' "$exported" | tail -n 1)
echo "retrain: exported $version_dir"
promoted=yes
if ! "$python" -m training promote "$version_dir"; then
  promoted=no
  echo "retrain: $version_dir stays a candidate; promote it by hand (--force) if it should serve" >&2
fi

if [ -z "$api" ]; then
  echo "retrain: FIELDSERVE_API_URL is empty; not reloading"
  [ "$promoted" = yes ]
  exit
fi
# POST /v1/admin/reload (curl -X POST $api/v1/admin/reload) to every replica behind the name
# (with --scale api=N, Docker's DNS answers `api` with one address per replica), with the
# admin key when one is set.
"$python" - "$api" <<'PY'
import json, os, socket, sys, urllib.parse, urllib.request

base = urllib.parse.urlsplit(sys.argv[1])
port = base.port or (443 if base.scheme == "https" else 80)
try:
    infos = socket.getaddrinfo(base.hostname, port, type=socket.SOCK_STREAM)
except OSError as exc:
    sys.exit(f"retrain: the model is exported, but {base.hostname} does not resolve: {exc}")
addresses = sorted({info[4][0] for info in infos})
key = os.environ.get("FIELDSERVE_ADMIN_KEY")
failed = 0
for address in addresses:
    host = f"[{address}]" if ":" in address else address
    url = f"{base.scheme}://{host}:{port}/v1/admin/reload"
    request = urllib.request.Request(url, data=b"", method="POST")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            report = json.load(response)
        serving = [f"{m.get('name')}/{m.get('version')}" for m in report.get("models", [])]
        print(f"retrain: {url}: added {report.get('added')}, serving {serving}")
    except OSError as exc:
        print(f"retrain: {url} failed: {exc}", file=sys.stderr)
        failed += 1
if failed:
    sys.exit(f"retrain: the model is exported, but {failed} replica(s) did not reload")
PY
[ "$promoted" = yes ]
