#!/usr/bin/env bash
# Crash one service of the running stack, as a power cut or the OOM
# killer would (the fault suite uses it). `start.sh services` starts it
# again. Usage: crash.sh redis|postgres|rgw
source "$(dirname "$0")/lib.sh"

kill_pidfile() {
    local pidfile=$1
    [ -s "$pidfile" ] || die "crash.sh: no pid file $pidfile"
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
}

case "${1:-}" in
    # Redis keeps nothing on disk here (as many sites run it): all of its
    # queues and job records are gone.
    redis) kill_pidfile "$DEVSTACK/redis/redis.pid" ;;
    postgres)
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
        run=(); [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
        # Immediate: no checkpoint, connections cut; recovery on start.
        "${run[@]}" "$PG_BIN/pg_ctl" -D "$(pg_dir)/data" -m immediate -w stop >/dev/null ;;
    rgw) kill_pidfile "$DEVSTACK/ceph/run/client.rgw.dcor.pid" ;;
    *) die "usage: $0 redis|postgres|rgw" ;;
esac
log "crashed $1"
