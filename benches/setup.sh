#!/bin/sh
# What `make bench` needs besides the venv: Debian's `wrk`, and a PostgreSQL server on 127.0.0.1 to create
# benchmark databases in (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres).
# Installs what is missing when it can (root with apt-get); otherwise says what to install, and the
# benchmarks that need it report "not measured" instead of failing the run.
set -u
PYTHON="${PYTHON:-.venv/bin/python}"
as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() { apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@"; }; }

if ! command -v wrk >/dev/null 2>&1; then
  if as_root; then
    echo "bench: installing wrk (apt-get)"
    apt_install wrk || echo "bench: could not install wrk; the ack-path figures will be 'not measured'" >&2
  else
    echo "bench: wrk is missing (Debian: sudo apt-get install wrk); the ack-path figures will be 'not measured'" >&2
  fi
fi

pg_ok() { "$PYTHON" -c "import sys; from benches.common import pg_available; r = pg_available(); print(r or 'ok'); sys.exit(1 if r else 0)"; }
if ! pg_ok >/dev/null 2>&1; then
  default_url="postgresql://postgres@127.0.0.1:5432/postgres"
  if [ "${BENCH_DATABASE_URL:-$default_url}" = "$default_url" ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
      && as_root; then
    # A fresh machine without PostgreSQL: install the Debian server and let postgres@127.0.0.1 in
    # without a password (as CI does). Only a server this script installed is ever reconfigured.
    echo "bench: installing PostgreSQL (apt-get) for the PostgreSQL benchmarks"
    if apt_install postgresql; then
      hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
      sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
      version=$(basename "$(dirname "$(dirname "$hba")")")
      pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main reload || service postgresql start
      sleep 2
    fi
  fi
  if ! pg_ok >/dev/null 2>&1; then
    echo "bench: $(pg_ok 2>&1 | tail -n 1); the PostgreSQL figures will be 'not measured'" >&2
  fi
fi
exit 0
