# Common settings and helpers of the development stack; sourced by the
# scripts in this folder. Everything the stack creates lives in .devstack/.
# shellcheck shell=bash
set -euo pipefail

STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$STACK_DIR/.." && pwd)
DEVSTACK=${DEVSTACK:-$ROOT_DIR/.devstack}
CKAN_VERSION=${CKAN_VERSION:-2.12.0}
# The venv stays in the checkout's .devstack even when DEVSTACK points
# elsewhere (the stack tests start services in a scratch folder).
VENV=$ROOT_DIR/.devstack/venv-$CKAN_VERSION
CKAN_DIR=$DEVSTACK/ckan-$CKAN_VERSION

# Loopback ports; override with environment variables if they clash.
PG_PORT=${PG_PORT:-54320}
REDIS_PORT=${REDIS_PORT:-63790}
SOLR_PORT=${SOLR_PORT:-8983}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT_V1=${MON_PORT_V1:-6789}
MON_PORT_V2=${MON_PORT_V2:-3300}
CKAN_PORT=${CKAN_PORT:-5000}
# Address the CKAN web server binds to; only a VM (Vagrantfile) widens it.
CKAN_HOST=${CKAN_HOST:-127.0.0.1}

# Fixed development credentials: the stack listens on 127.0.0.1 only.
S3_ACCESS_KEY_ID=${S3_ACCESS_KEY_ID:-DCORDEVSTACKACCESSKEY}
S3_SECRET_ACCESS_KEY=${S3_SECRET_ACCESS_KEY:-dcor-devstack-secret-key-0123456789}
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT

# pg_dir -> the folder of PostgreSQL's files. PostgreSQL runs as the user
# postgres, which cannot enter a checkout below a private folder (/root, a
# `mktemp -d` folder). Then its files live in a folder of their own under
# /var/lib/dcor-devstack, named after the stack, and $DEVSTACK/pg links
# there (`make clean` removes both). No permission of the checkout changes.
PG_OUTSIDE_ROOT=/var/lib/dcor-devstack

pg_dir() {
    local link=$DEVSTACK/pg
    if [ -L "$link" ]; then
        # The folder may be gone (a fresh /var/lib): make it again.
        mkdir -p "$(readlink "$link")"
        readlink -f "$link"
        return
    fi
    if [ -e "$link" ]; then
        echo "$link"
        return
    fi
    if [ "$(id -u)" -eq 0 ] && id -u postgres >/dev/null 2>&1; then
        mkdir -p "$DEVSTACK"
        if ! runuser -u postgres -- test -x "$DEVSTACK" 2>/dev/null; then
            local outside
            outside=$PG_OUTSIDE_ROOT/$(printf '%s' "$DEVSTACK" | sha256sum | cut -c1-16)/pg
            mkdir -p "$outside"
            ln -s "$outside" "$link"
            echo "$outside"
            return
        fi
    fi
    echo "$link"
}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# port_in_use PORT -> 0 if something listens on 127.0.0.1:PORT
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive PIDFILE -> 0 if the process named in PIDFILE runs
pid_alive() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND... -> polls COMMAND until it succeeds
wait_until() {
    local timeout=$1 what=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            return 1
        fi
        sleep 0.5
    done
}

# stop_pidfile PIDFILE NAME -> TERM, wait, then KILL
stop_pidfile() {
    local pidfile=$1 name=$2 pid
    if pid_alive "$pidfile"; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped $name"
    fi
    rm -f "$pidfile"
}
