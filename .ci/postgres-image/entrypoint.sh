#!/bin/sh
# Postgres for the tests, in a container on the host's network: a fresh
# cluster with trust authentication for the user postgres, on the port in
# PGPORT (default 5432), listening on 127.0.0.1 only.
set -eu
DATA="$(mktemp -d /tmp/pgdata.XXXXXX)"
/usr/lib/postgresql/15/bin/initdb -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
exec /usr/lib/postgresql/15/bin/postgres -D "$DATA" -p "${PGPORT:-5432}" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp -c fsync=off
