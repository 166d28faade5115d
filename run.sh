#!/usr/bin/env bash
# rpa's one entry point on a fresh machine with only python3.
#
#   ./run.sh demo [flags]      a first look, offline: bundled sample papers from a loopback mirror
#   ./run.sh ids.txt [flags]   the main job: queue the IDs and process them (= ./run.sh run ids.txt)
#   ./run.sh COMMAND [flags]   any rpa command: ./run.sh X is rpa X (resume, status, retry, ...)
#   ./run.sh test [pytest args]  the whole test suite (ruff, mypy, pytest) -- what CI runs;
#                                without args: two pytest workers, then the `serial` tests alone
#
# The first call creates .venv beside this script and installs rpa with what running needs
# (the pdfium and postgres extras); `./run.sh test` adds the developer tools (the dev extra)
# on its first use, and `./run.sh export --format parquet` adds pyarrow (the parquet extra) on
# its first use. Each set is installed again when pyproject.toml changes. No knob is set here:
# the defaults are rpa's own (rpa/config.py), so a config file (rpa.toml) is honoured.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
want="$(cksum < "$here/pyproject.toml")"

# ensure EXTRAS NAME...: rpa installed (editable) with EXTRAS, unless a stamp says so already;
# a successful install writes the stamp of every NAME (an install with more extras stands for
# the smaller sets too).
ensure() {
  local extras="$1" name
  shift
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.rpa-installed-$1" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local log="$venv/install.log"
  if [ ! -x "$venv/bin/python" ]; then
    echo "run.sh: setting up $venv (first use)" >&2
    "$py" -m venv "$venv"
    if ! "$venv/bin/python" -m pip install --upgrade pip > "$log" 2>&1; then
      tail -n 30 "$log" >&2 || true
      echo "run.sh: upgrading pip in $venv failed (full log: $log)" >&2
      exit 2
    fi
  else
    echo "run.sh: installing rpa[$extras] into $venv" >&2
  fi
  if ! "$venv/bin/python" -m pip install -e "$here[$extras]" >> "$log" 2>&1; then
    tail -n 30 "$log" >&2 || true
    echo "run.sh: installing rpa[$extras] failed (full log: $log)" >&2
    exit 2
  fi
  for name in "$@"; do echo "$want" > "$venv/.rpa-installed-$name"; done
}

case "${1:-}" in
  test)
    shift
    ensure "dev,pdfium,postgres,parquet" dev run parquet
    cd "$here"
    lint=(rpa tests)
    [ -d bench ] && lint+=(bench)
    "$venv/bin/python" -m ruff check "${lint[@]}"
    "$venv/bin/python" -m ruff format --check "${lint[@]}"
    "$venv/bin/python" -m mypy "${lint[@]}"
    if [ $# -gt 0 ]; then
      exec "$venv/bin/python" -m pytest "$@"
    fi
    # Most of the suite's time is waiting on purpose (outages, leases, stalls): two workers
    # (pytest-xdist) halve it on two cores. A test that reads the whole machine's state (its
    # memory) is marked `serial` and runs after, alone. Both passes run; either failing fails.
    # The 30 slowest tests are listed: the suite must stay well under 15 minutes on 2 cores.
    status=0
    "$venv/bin/python" -m pytest -n 2 --dist worksteal -m "not slow and not serial" --durations=30 \
      || status=$?
    "$venv/bin/python" -m pytest -m "serial and not slow" || status=$((status ? status : $?))
    exit "$status"
    ;;
esac

ensure "pdfium,postgres" run
if [ "${1:-}" = export ] && [[ " $* " == *parquet* ]]; then
  ensure "pdfium,postgres,parquet" parquet run
fi
# The hints rpa prints (`next: ./run.sh status --db rpa.db`) name the command as it was typed
# here, since `rpa` itself is not on the PATH (rpa/hints.py).
launcher="$0"
[[ "$launcher" == */* ]] || launcher="./$launcher"
export RPA_LAUNCHER="$launcher"

case "${1:-}" in
  run|demo|resume|status|failures|export|retry|migrate)
    exec "$venv/bin/rpa" "$@"
    ;;
  ""|-h|--help|help)
    exec "$venv/bin/rpa" --help
    ;;
  --version)
    exec "$venv/bin/rpa" --version
    ;;
  *)
    # `./run.sh statsu`: neither a command nor a file there (a file of IDs is named with a dot
    # or a folder, or is `-`): say both, rather than "ID file statsu is not there"
    if [[ "$1" != -* && "$1" != *.* && "$1" != */* && ! -e "$1" ]]; then
      echo "run.sh: '$1' is no command and no file of IDs here; the commands:" \
        "run demo resume status failures export retry migrate (./run.sh --help)" >&2
      exit 2
    fi
    exec "$venv/bin/rpa" run "$@"
    ;;
esac
