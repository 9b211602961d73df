#!/bin/sh
# PostgreSQL's first start (docker-entrypoint-initdb.d): the two roles agentauth runs
# with. POSTGRES_USER (agentauth_owner) owns the schema and is used only by
# `control-plane migrate`; agentauth_runtime logs in for `serve`, owns nothing and
# can only SET ROLE agentauth_app, the role row-level security binds.
set -eu
runtime_password=$(cat /run/secrets/pg_runtime_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v runtime_password="$runtime_password" <<'SQL'
CREATE ROLE agentauth_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE agentauth_runtime LOGIN NOINHERIT PASSWORD :'runtime_password';
GRANT agentauth_app TO agentauth_runtime;
SQL
