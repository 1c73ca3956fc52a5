#!/usr/bin/env bash
# The standby's entrypoint (../compose-cluster.yaml). On its first start it copies the
# primary with pg_basebackup -R, which also writes standby.signal and primary_conninfo, so
# the server starts as a streaming standby. Then, and on every later start, the postgres
# image's own entrypoint runs the server (it does not initialise an existing data directory).
set -euo pipefail

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  # --slot: the primary keeps the WAL this standby has not received yet.
  # -R stores the connection, password included, in postgresql.auto.conf (mode 0600).
  # A failed copy is removed again, so the next start tries afresh.
  PGPASSWORD="$(cat /run/secrets/replication-password)" \
    gosu postgres pg_basebackup --host=db-primary --username=replicator \
      --pgdata="$PGDATA" --wal-method=stream --slot=standby --write-recovery-conf \
      --checkpoint=fast
fi

exec docker-entrypoint.sh "$@"
