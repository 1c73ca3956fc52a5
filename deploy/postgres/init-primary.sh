#!/usr/bin/env bash
# Runs once, when the primary's data directory is created: the postgres image runs every
# script in /docker-entrypoint-initdb.d as the postgres user, against a server that listens
# only on its Unix socket. It creates the gateway's database and role, and the standby's
# replication role and slot. Passwords come from the secret files, never from the command
# line (psql's \set reads them with backquotes).
set -euo pipefail

# synchronous_standby_names is already in force and no standby exists yet: an ordinary commit
# would wait for one forever. These sessions commit on the primary alone.
export PGOPTIONS='-c synchronous_commit=local'

psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\set gateway_password `cat /run/secrets/db-password`
\set replication_password `cat /run/secrets/replication-password`
CREATE ROLE gateway LOGIN PASSWORD :'gateway_password';
CREATE DATABASE gateway OWNER gateway;
CREATE ROLE replicator REPLICATION LOGIN PASSWORD :'replication_password';
-- Reserved now, so the primary keeps every WAL segment from here until the standby has it
-- (a standby gone for good must have its slot dropped, or WAL fills the primary's disk).
SELECT pg_create_physical_replication_slot('standby', true);
SQL

# The image's pg_hba.conf lets every role log in from anywhere with a password, but a
# replication connection matches only lines that name "replication": allow the replicator
# from this server's own networks (the compose network).
echo "host replication replicator samenet scram-sha-256" >> "$PGDATA/pg_hba.conf"
