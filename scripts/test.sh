#!/usr/bin/env bash
# The tests in one command: install if needed (Python packages, and Debian's Chromium for the
# browser test), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
    echo "test: installing Debian chromium for the browser test" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; fi
fi
exec .venv/bin/python -m pytest "$@"
