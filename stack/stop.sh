#!/usr/bin/env bash
# Stop everything the development stack runs (all CKAN versions).
source "$(dirname "$0")/lib.sh"

for dir in "$DEVSTACK"/ckan-*/; do
    [ -d "$dir" ] || continue
    stop_pidfile "$dir/worker.pid" "CKAN worker ($(basename "$dir"))"
    stop_pidfile "$dir/web.pid" "CKAN web server ($(basename "$dir"))"
done
stop_pidfile "$DEVSTACK/solr-stub.pid" "Solr stand-in"
"$STACK_DIR/ceph.sh" stop
stop_pidfile "$DEVSTACK/redis/redis.pid" redis
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
# $DEVSTACK/pg may link outside (see pg_dir in lib.sh), even to nothing.
PG_DATA=$(readlink -f "$DEVSTACK/pg" 2>/dev/null || true)/data
if [ -n "$PG_BIN" ] && [ -f "$PG_DATA/PG_VERSION" ]; then
    if [ "$(id -u)" -eq 0 ]; then run=(runuser -u postgres --); else run=(); fi
    if "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
        log "stopped PostgreSQL"
    fi
fi
log "stack stopped"
