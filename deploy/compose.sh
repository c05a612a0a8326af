#!/bin/sh
# The compose stack on this host: `make compose-up` / `make compose-down`.
#
#   deploy/compose.sh up     # secrets if missing, `up -d` without building, wait for /ready
#   deploy/compose.sh down   # every service of every profile, containers and network removed
#                            # (volumes kept; COMPOSE_DOWN_FLAGS=-v deletes them too)
#
# The image must exist (`make image` builds it). On a first run `up` writes the two secret files
# docs/OPERATIONS.md section 2 asks for, with random hex passwords and token, mode 0600:
# .env (database and Grafana passwords, COMPOSE_PROJECT_NAME=rtsig) and deploy/rtsig.env (from
# deploy/rtsig.env.example). Existing files are never changed. Compose: `docker-compose` (1.29,
# Debian's) if installed, else `docker compose`; COMPOSE overrides.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
if [ -z "${COMPOSE:-}" ]; then
    if command -v docker-compose >/dev/null 2>&1; then COMPOSE=docker-compose; else COMPOSE="$DOCKER compose"; fi
fi

say() { echo "compose: $*" >&2; }
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# A value from .env (the shell environment wins, as for compose itself).
setting() {
    eval "v=\${$1:-}"
    if [ -z "$v" ] && [ -f .env ]; then
        v=$(sed -n "s/^$1=//p" .env | tail -n1)
    fi
    echo "${v:-$2}"
}

secrets() {
    if [ ! -f .env ]; then
        (umask 077 && cat >.env <<EOT
# Written by deploy/compose.sh (docs/OPERATIONS.md section 2); keep it out of git.
COMPOSE_PROJECT_NAME=rtsig
MONGO_PASSWORD=$(hex 24)
MYSQL_ROOT_PASSWORD=$(hex 24)
MYSQL_PASSWORD=$(hex 24)
GRAFANA_ADMIN_PASSWORD=$(hex 16)
# BIND_ADDRESS=0.0.0.0          # publish the ports on every interface (firewall them!)
# RTSIG_HOST_PORT=8080          # and NATS_HOST_PORT, NATS_MONITOR_HOST_PORT, ...
EOT
        )
        say "wrote .env (random passwords)"
    fi
    if [ ! -f deploy/rtsig.env ]; then
        (umask 077 && sed "s/^RTSIG_API_TOKEN=.*/RTSIG_API_TOKEN=$(hex 32)/" \
            deploy/rtsig.env.example >deploy/rtsig.env)
        say "wrote deploy/rtsig.env (from the example, with a random RTSIG_API_TOKEN)"
    fi
}

project=$(setting COMPOSE_PROJECT_NAME rtsig)

case "${1:-}" in
up)
    secrets
    image=$(sed -n 's/^ *image: *\(rtsig:[^ ]*\).*/\1/p' docker-compose.yml | head -n1)
    "$DOCKER" image inspect "$image" >/dev/null 2>&1 || {
        say "image $image is missing: run \`make image\` first"; exit 1; }
    start=$(date +%s)
    # shellcheck disable=SC2086
    $COMPOSE -p "$project" up -d --no-build ${COMPOSE_UP_SERVICES:-}
    port=$(setting RTSIG_HOST_PORT 8080)
    url="http://127.0.0.1:$port/ready"
    timeout=${READY_TIMEOUT:-180}
    until python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; do
        if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
            say "$url did not answer 200 within $timeout s; \`$COMPOSE -p $project ps\` and \`... logs rtsig\` say why"
            exit 1
        fi
        sleep 1
    done
    say "rtsig ready at http://127.0.0.1:$port ($(($(date +%s) - start)) s); token in deploy/rtsig.env"
    ;;
down)
    # shellcheck disable=SC2086
    $COMPOSE -p "$project" --profile monitoring --profile replicas down --remove-orphans \
        ${COMPOSE_DOWN_FLAGS:-}
    ;;
*)
    echo "usage: $0 up|down" >&2; exit 2 ;;
esac
