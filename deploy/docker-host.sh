#!/bin/sh
# A Docker engine for `make image`, `make compose-up` and the docker test.
#
#   deploy/docker-host.sh ensure   # client, docker-compose, debootstrap installed; daemon answering
#   deploy/docker-host.sh stop     # stop the daemon *this script* started (no-op otherwise)
#
# ensure installs what is missing with apt (Debian's docker.io, docker-compose 1.29 and
# debootstrap; sudo when not root) and, when no daemon answers, starts one in the background
# with DOCKERD_FLAGS (default: --storage-driver=vfs --iptables=false, which work inside a VM or a
# container where overlayfs and iptables do not), logging to var/dockerd.log and recording its
# pid in var/dockerd.pid so that `stop` ends exactly that process. A daemon that already runs
# (systemd's on a normal host) is used as it is and never stopped.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
pidfile="$root/var/dockerd.pid"
logfile="$root/var/dockerd.log"
if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

say() { echo "docker-host: $*" >&2; }

answers() { "$DOCKER" info >/dev/null 2>&1; }

ensure() {
    missing=""
    command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing="$missing docker.io"
    command -v docker-compose >/dev/null 2>&1 || "$DOCKER" compose version >/dev/null 2>&1 \
        || missing="$missing docker-compose"
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
    if [ -n "$missing" ]; then
        say "installing Debian packages:$missing"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
    fi
    [ -x "$DOCKER" ] || command -v "$DOCKER" >/dev/null || DOCKER=docker
    answers && return 0
    mkdir -p "$root/var"
    dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
    say "no Docker daemon answers: starting $dockerd ${DOCKERD_FLAGS:---storage-driver=vfs --iptables=false}"
    # shellcheck disable=SC2086
    $sudo sh -c "nohup $dockerd ${DOCKERD_FLAGS:---storage-driver=vfs --iptables=false} >'$logfile' 2>&1 & echo \$! >'$pidfile'"
    i=0
    until answers; do
        i=$((i + 1))
        if [ "$i" -gt 120 ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            say "dockerd did not come up; the end of $logfile:"
            tail -n 15 "$logfile" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

stop() {
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping the dockerd this script started (pid $pid)"
        $sudo kill -TERM "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 60 ]; do i=$((i + 1)); sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && $sudo kill -KILL "$pid" || true
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    ensure) ensure ;;
    stop) stop ;;
    *) echo "usage: $0 ensure|stop" >&2; exit 2 ;;
esac
