#!/usr/bin/env bash
# `make clean`: remove PostgreSQL's files kept outside the checkout (see
# pg_dir in lib.sh). Only a link that pg_dir made is followed: one to
# $PG_OUTSIDE_ROOT/<16 hex digits>/pg; anything else is left alone.
source "$(dirname "$0")/lib.sh"

link=$DEVSTACK/pg
[ -L "$link" ] || exit 0
target=$(readlink "$link")
if [[ "$target" =~ ^$PG_OUTSIDE_ROOT/[0-9a-f]{16}/pg$ ]]; then
    rm -rf "$(dirname "$target")"
    log "removed PostgreSQL's files in $(dirname "$target")"
else
    log "left $target alone (not a folder the stack made)"
fi
