#!/usr/bin/env bash
# Install the real NSQ clients that tests/clients.rs drives (pynsq, nsqjs).
# Idempotent: safe to run on every CI run and by hand. Called by .ci/run.
#   - Python: tests/clients/requirements.txt (pynsq 0.9.1 + a tornado it works with;
#             gnsq 1.0.2 + a gevent with Python 3.11 wheels)
#   - Node:   tests/clients/package.json + package-lock.json (nsqjs 0.13.0) → tests/clients/node_modules
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clients="$root/tests/clients"

echo "install-clients: python deps"
python3 -m pip install --quiet --disable-pip-version-check -r "$clients/requirements.txt"
python3 -c 'import nsq, tornado; print("install-clients: pynsq", nsq.__version__ if hasattr(nsq, "__version__") else "ok", "tornado", tornado.version)'
python3 -c 'import gnsq, gevent; print("install-clients: gnsq", gnsq.__version__, "gevent", gevent.__version__)'

echo "install-clients: node deps"
cd "$clients"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
node -e 'console.log("install-clients: nsqjs", require("nsqjs/package.json").version)'
