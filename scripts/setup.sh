#!/usr/bin/env bash
# Create .venv and install the project with its test extras. Safe to run again: it reinstalls only
# when pyproject.toml changed. torch is pinned (2.13.0, CPU) and installed first, so that nothing
# pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        echo "setup: python venv module missing; installing python3-venv" >&2
        apt-get update -qq && apt-get install -y -qq python3-venv
        rm -rf .venv && "$PYTHON" -m venv .venv
    fi
fi

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip install -q -e ".[test,bench,milvus]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
