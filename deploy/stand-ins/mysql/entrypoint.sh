#!/bin/sh
# First start: create the data directory, the root password, the database and its user
# (the official mysql image's variables), with networking off; then run the server.
set -eu
datadir=/var/lib/mysql
install -d -o mysql -g mysql "$datadir" /run/mysqld
if [ ! -d "$datadir/mysql" ]; then
    : "${MYSQL_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD is required}"
    echo "stand-in mysql: initialising $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --datadir="$datadir" --skip-networking \
        --socket=/run/mysqld/init.sock &
    pid=$!
    i=0
    until mariadb-admin --socket=/run/mysqld/init.sock ping --silent >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -lt 60 ] || { echo "stand-in mysql: server did not start" >&2; exit 1; }
        sleep 0.5
    done
    sq() { printf "%s" "$1" | sed "s/'/''/g"; }
    {
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(sq "$MYSQL_ROOT_PASSWORD")';"
        echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$(sq "$MYSQL_ROOT_PASSWORD")';"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "${MYSQL_DATABASE:-}" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ]; then
            echo "CREATE USER IF NOT EXISTS '$(sq "$MYSQL_USER")'@'%' IDENTIFIED BY '$(sq "$MYSQL_PASSWORD")';"
            [ -z "${MYSQL_DATABASE:-}" ] || echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$(sq "$MYSQL_USER")'@'%';"
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket=/run/mysqld/init.sock -uroot
    kill "$pid"
    wait "$pid" || true
    echo "stand-in mysql: initialised"
fi
if [ "${1:-}" = mariadbd ] || [ "${1:-}" = mysqld ]; then
    shift
    exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 "$@"
fi
exec "$@"
