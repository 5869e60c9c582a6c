#!/bin/sh
# One login role and one database per service, when the Postgres volume is
# first initialised (the image runs /docker-entrypoint-initdb.d/*.sh once,
# as the superuser, against a server on the unix socket only).
#
# Each service connects as its own role (compose.yaml: DATABASE_URL), which
# owns its database and can reach no other: service-role.psql, the same
# file shared/pgkit/tests/roles.rs checks. Passwords come from the
# environment (<SERVICE>_DB_PASSWORD, development values in .env); a
# missing one stops the initialisation.
#
# A volume initialised before these roles existed keeps its old databases,
# owned by postgres: remove it once (`docker compose down -v`).
set -eu

dir=$(dirname "$0")
# Sourced rather than run (the file lost its executable bit), $0 is the
# entrypoint's path.
[ -f "$dir/service-role.psql" ] || dir=/docker-entrypoint-initdb.d
for service in orders inventory notification reporting; do
    var="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password=$(printenv "$var" || true)
    if [ -z "$password" ]; then
        echo "$0: $var is not set: the $service role needs a password" >&2
        exit 1
    fi
    echo "$0: role and database $service"
    PGHOST= PGHOSTADDR= psql --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        --set role="$service" --set database="$service" --set password="$password" \
        --file "$dir/service-role.psql"
done
