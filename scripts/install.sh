#!/usr/bin/env bash
# Installs the gateway and its locked Python dependencies into the environment of PYTHON.
# The Makefile (make serve, make test, hence CI) and the Dockerfile both install through this
# script, so the image runs exactly the versions CI tested.
#   scripts/install.sh runtime PYTHON [-e]   requirements/runtime.txt, then the gateway
#   scripts/install.sh test PYTHON [-e]      requirements/test.txt (runtime + test tools), then the gateway
# Every requirement is pinned with its hashes (--require-hashes), so nothing resolves and nothing
# moves at install time; the gateway itself is built with the locked setuptools
# (--no-build-isolation) and brings no dependencies of its own (--no-deps). -e installs it
# editable (a checkout you work in). `make lock` / `make upgrade-lock` rewrite the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/install.sh runtime|test PYTHON [-e]}
python=${2:?usage: scripts/install.sh runtime|test PYTHON [-e]}
editable=${3:-}
case "$kind" in runtime|test) ;; *) echo "install: unknown kind $kind" >&2; exit 2 ;; esac

"$python" -m pip install -q --require-hashes --only-binary :all: -r "requirements/$kind.txt"
"$python" -m pip install -q --no-deps --no-build-isolation ${editable:+"$editable"} .
