# Sourced by .ci/run: a throwaway PostgreSQL server on loopback for tests/test_postgres.py.
# Installs Debian's postgresql if missing; the server lives in a temporary folder and stops
# when the run ends.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_DATA=$(mktemp -d /tmp/feeds-ci-pg.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')  # free, so a leftover server cannot collide
chown postgres "$PG_DATA"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w \
  -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DATA" start >/dev/null
stop_postgres() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$PG_DATA"; }
trap stop_postgres EXIT
export FEEDS_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
export FEEDS_REQUIRE_POSTGRES=1  # here a missing server fails the run instead of skipping
