#!/usr/bin/env bash
# The product in one command: install if needed, build the index if missing or stale, serve the chat
# on http://127.0.0.1:7860 (pass --host/--port/--index to change).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
