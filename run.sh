#!/usr/bin/env bash
# rpa's one entry point on a fresh machine with only python3.
#
#   ./run.sh ids.txt [flags]   the main job: queue the IDs and process them (200 workers)
#   ./run.sh demo [flags]      the same, offline: bundled sample papers from a loopback mirror
#   ./run.sh resume|status|export [flags]
#   ./run.sh test              the whole test suite (ruff, mypy, pytest) -- what CI runs
#
# The first call creates .venv beside this script and installs rpa into it; later calls reuse
# it (and reinstall when pyproject.toml changes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"

stamp="$venv/.rpa-installed"
want="$(cksum < "$here/pyproject.toml")"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "run.sh: setting up $venv (first use)" >&2
  "$py" -m venv "$venv"
  log="$venv/install.log"
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -e "$here[dev,pdfium,postgres,parquet]"; } > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "run.sh: installing rpa failed (full log: $log)" >&2
    exit 2
  fi
  echo "$want" > "$stamp"
fi

# Defaults for a 200-worker run, as env knobs (a flag or a config file value still wins over
# none of these: precedence is defaults < config file < env < flags).
export RPA_WORKERS="${RPA_WORKERS:-200}"
export RPA_DOWNLOAD_CONCURRENCY="${RPA_DOWNLOAD_CONCURRENCY:-64}"
export RPA_EXTRACT_POOL="${RPA_EXTRACT_POOL:-process}"

case "${1:-}" in
  test)
    shift
    cd "$here"
    lint=(rpa tests)
    [ -d bench ] && lint+=(bench)
    "$venv/bin/python" -m ruff check "${lint[@]}"
    "$venv/bin/python" -m ruff format --check "${lint[@]}"
    "$venv/bin/python" -m mypy "${lint[@]}"
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  demo|resume|status|export|retry|migrate)
    exec "$venv/bin/rpa" "$@"
    ;;
  ""|-h|--help)
    exec "$venv/bin/rpa" --help
    ;;
  *)
    exec "$venv/bin/rpa" run "$@"
    ;;
esac
