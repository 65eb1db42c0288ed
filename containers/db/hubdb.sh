#!/bin/bash
# Start the hub's PostgreSQL with the password of this testbed run, then the role's own
# entry point (MariaDB, slurmdbd).
set -euo pipefail
version=$(ls /etc/postgresql)
pg_ctlcluster "$version" main start
if [ -f /etc/testbed/hubdb_password ]; then
    password=$(cat /etc/testbed/hubdb_password)
    # on stdin, never in an argv: other processes of the container could read that
    printf "ALTER ROLE hub PASSWORD '%s';\n" "$password" | runuser -u postgres -- psql -q
fi
exec "$@"
