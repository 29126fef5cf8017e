#!/usr/bin/env bash
# Creates .venv (Python 3.10, with pip) and installs the locked dependencies.
# Idempotent: does nothing when .venv matches requirements.lock, setup.py and this script.
# Every installed module is compiled to bytecode here, once: uv does not compile by default,
# and where PYTHONDONTWRITEBYTECODE is set (many containers) Python never writes a .pyc, so
# each `twotower run` compiled TFX, TensorFlow and Beam from source again (~15-30 s of a
# cached rerun's ~40 s on 2 cores; BENCHMARKS.md, "Where a cached rerun's time goes").
set -euo pipefail
cd "$(dirname "$0")/.."

is_py310() {  # a candidate counts only if it runs and is 3.10 (pyenv shims may not run)
  [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1
}

find_python() {
  local c v
  for c in "${PYTHON310:-}" "$(command -v python3.10 2>/dev/null || true)"; do
    if is_py310 "$c"; then echo "$c"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(ls "$(pyenv root)/versions" 2>/dev/null | grep -E '^3\.10\.' | sort -t. -k3 -n -r); do
      c="$(pyenv root)/versions/$v/bin/python3.10"
      if is_py310 "$c"; then echo "$c"; return; fi
    done
  fi
  if command -v uv >/dev/null 2>&1; then
    c="$(uv python find 3.10 2>/dev/null || true)"
    if is_py310 "$c"; then echo "$c"; return; fi
  fi
}

stamp=.venv/.installed
want="$(cat requirements.lock setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

PY=$(find_python || true)
if [ -z "$PY" ]; then
  echo "error: Python 3.10 not found (TFX 1.16 supports 3.9-3.10): install it (e.g. 'pyenv install 3.10.13' or 'uv python install 3.10'), or set PYTHON310=/path/to/python3.10" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv   # a venv made by venv has pip: TFX installs module wheels with it
fi
log=.venv/install.log
echo "installing the locked dependencies into .venv with $PY (a few minutes the first time; log: $log)"
if ! {
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==0.13.9" &&
  .venv/bin/uv pip install --python .venv/bin/python -r requirements.lock &&
  .venv/bin/uv pip install --python .venv/bin/python --no-deps -e . &&
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python3.10/site-packages &&
  .venv/bin/python -m pip --version
} >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "error: installing the dependencies failed; the whole log is $log" >&2
  exit 1
fi
echo "$want" > "$stamp"
