# Sourced by scripts/run and scripts/test: make .venv and install the project
# into it, but only when pyproject.toml changed since the last install.
ensure_venv() {
  if [[ ! -x .venv/bin/python ]]; then
    echo "creating .venv ..." >&2
    python3 -m venv .venv
  fi
  local stamp=.venv/.conductor-installed want have
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  have=$(cat "$stamp" 2>/dev/null || true)
  if [[ "$want" != "$have" ]]; then
    echo "installing Conductor into .venv (first run, or pyproject.toml changed) ..." >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    printf '%s\n' "$want" >"$stamp"
  fi
}
