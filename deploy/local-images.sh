#!/bin/sh
# Make every base image that docker-compose.yml and the Dockerfile name available.
#
#   deploy/local-images.sh            # for each image: present? done. pullable? pull. else stand-in
#   deploy/local-images.sh --list     # the image -> stand-in table
#
# Where a registry answers (a normal host) this only pulls what is missing, or does nothing.
# Where none does (an offline build machine), it builds stand-ins from Debian packages under
# the very names the files use, so `docker build` and `docker compose up` work unchanged:
#
#   python:3.11-slim-bookworm  Debian 12's python3 (3.11) + venv
#   nats:2.10-alpine           Debian's nats-server (2.9) + wget
#   mysql:8.4                  Debian's MariaDB 10.11 + an entrypoint for the MYSQL_* variables
#   mongo:7                    nx-27017 (PyPI, MongoDB wire protocol over SQLite) + SCRAM login
#   prom/prometheus:v2.54.1    Debian's prometheus (2.42) + wget
#
# grafana/grafana has no Debian package and no stand-in: the `monitoring` profile's Grafana
# needs the real image. Stand-ins carry the label org.rtsig.stand-in=true
# (`docker images --filter label=org.rtsig.stand-in=true`); remove them with
# `docker rmi $(docker images -q --filter label=org.rtsig.stand-in=true)`.
#
# All stand-ins start FROM one Debian 12 base made with debootstrap from the Debian mirror this
# machine's apt uses (read from /etc/apt/sources.list*, or DEBIAN_MIRROR), with this machine's
# locally added CA certificates (a TLS-intercepting proxy's CA), and built with --network host.
# Environment: DOCKER (client, default /usr/bin/docker if present), DEBIAN_MIRROR,
# LOCAL_IMAGES_PULL=0 (do not try to pull), LOCAL_IMAGES_FORCE=1 (rebuild the stand-ins).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
standins="$here/stand-ins"
base=rtsig-stand-in/debian:bookworm
label=org.rtsig.stand-in=true

if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-1}"

# image name -> stand-in directory under deploy/stand-ins
IMAGES="python:3.11-slim-bookworm=python
nats:2.10-alpine=nats
mysql:8.4=mysql
mongo:7=mongo
prom/prometheus:v2.54.1=prometheus"

say() { echo "local-images: $*" >&2; }

if [ "${1:-}" = --list ]; then
    echo "$IMAGES" | tr '=' ' '
    exit 0
fi

have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror apt uses here: the first bookworm source in sources.list (one-line form)
# or in *.sources (deb822 form). Never written into the repository.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i+1) == "bookworm") { print $i; exit } ; break } }' "$f"
    done | head -n1 | grep . && return
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uri = ""; ok = 0; deb = 0
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                 if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
                 if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) ok = 1 }
               if (uri != "" && ok && deb) { print uri; exit } }' "$f"
    done | head -n1 | grep . && return
    echo "http://deb.debian.org/debian"
}

# The security source, if apt has one (same file forms); optional.
debian_security() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | awk '
        /^deb[ \t]/ && / bookworm-security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }
        /^URIs:/ { uri = $2 }
        /^Suites:/ && /bookworm-security/ { print uri; exit }' | head -n1
}

base_done=0
build_base() {
    [ "$base_done" = 0 ] || return 0
    base_done=1
    if have "$base" && [ "${LOCAL_IMAGES_FORCE:-0}" != 1 ]; then return; fi
    command -v debootstrap >/dev/null || {
        say "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
    mirror=$(debian_mirror)
    security=$(debian_security || true)
    proxy=""
    if command -v apt-config >/dev/null; then
        eval "$(apt-config shell proxy Acquire::http::Proxy)"
    fi
    root=$(mktemp -d /tmp/rtsig-debootstrap.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    say "debootstrap bookworm (minbase) into $root"
    start=$(date +%s)
    http_proxy="${proxy:-${http_proxy:-}}" debootstrap --variant=minbase bookworm "$root" "$mirror" \
        >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
    rm -f "$root.log"
    {
        echo "deb $mirror bookworm main"
        echo "deb $mirror bookworm-updates main"
        [ -z "$security" ] || echo "deb $security bookworm-security main"
    } >"$root/etc/apt/sources.list"
    [ -z "$proxy" ] || echo "Acquire::http::Proxy \"$proxy\";" >"$root/etc/apt/apt.conf.d/01proxy"
    # No recommends, no documentation: smaller layers.
    printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' \
        >"$root/etc/apt/apt.conf.d/01norecommends"
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
        >"$root/etc/dpkg/dpkg.cfg.d/01nodoc"
    # This machine's own CAs (a proxy that intercepts TLS), kept by update-ca-certificates too.
    mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -r "$crt" ] && cp "$crt" "$root/usr/local/share/ca-certificates/"
    done
    [ -r /etc/ssl/certs/ca-certificates.crt ] \
        && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    chmod 0755 "$root"    # mktemp made it 0700: it becomes the image's /
    tar -C "$root" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL $label" \
        --change 'CMD ["bash"]' - "$base" >/dev/null
    rm -rf "$root"
    trap - EXIT
    say "$base imported ($(($(date +%s) - start)) s)"
}

pip_index_args() {
    # A PyPI mirror configured for pip on this machine, passed on to builds that use pip.
    url=${PIP_INDEX_URL:-}
    if [ -z "$url" ] && command -v python3 >/dev/null; then
        url=$(python3 -m pip config get global.index-url 2>/dev/null || true)
    fi
    [ -z "$url" ] || echo "--build-arg PIP_INDEX_URL=$url"
}

echo "$IMAGES" | while IFS='=' read -r image dir; do
    if [ "${LOCAL_IMAGES_FORCE:-0}" != 1 ] && have "$image"; then
        continue
    fi
    if [ "${LOCAL_IMAGES_FORCE:-0}" != 1 ] && [ "${LOCAL_IMAGES_PULL:-1}" != 0 ]; then
        if timeout 600 "$DOCKER" pull -q "$image" >/dev/null 2>&1; then
            say "pulled $image"
            continue
        fi
    fi
    build_base
    say "building stand-in $image from deploy/stand-ins/$dir"
    start=$(date +%s)
    # shellcheck disable=SC2046
    "$DOCKER" build -q --network host --label "$label" $(pip_index_args) \
        --build-arg "BASE=$base" -t "$image" "$standins/$dir" >/dev/null
    say "$image ready ($(($(date +%s) - start)) s)"
done
# Stand-ins replaced by a rebuild are left untagged: remove them.
"$DOCKER" image prune -f --filter "label=$label" >/dev/null 2>&1 || true
