#!/usr/bin/env bash
# A throwaway one-node Ceph cluster (one monitor, one bluestore OSD on a
# sparse file) with the RADOS Gateway as S3 endpoint, all state in
# .devstack/ceph, bound to 127.0.0.1. Usage: ceph.sh start|stop|status
source "$(dirname "$0")/lib.sh"

CEPH_DIR=$DEVSTACK/ceph
CONF=$CEPH_DIR/ceph.conf
RGW_NAME=client.rgw.dcor
# The OSD's block file is sparse and grows with use, but never shrinks
# (deleted objects leave their blocks allocated). By default it may grow
# to half of the free disk space (at most 100 GiB), so a full object store
# fails S3 requests cleanly instead of filling the machine's disk.
default_block_size() {
    local free
    free=$(df --output=avail -B1 "$DEVSTACK" | tail -1)
    local half=$((free / 2)) cap=107374182400
    echo $(( half < cap ? half : cap ))
}

ceph_admin() { timeout 30 ceph -c "$CONF" "$@"; }

write_conf() {
    local fsid=$1
    cat > "$CONF" <<CONF
[global]
fsid = $fsid
mon_initial_members = a
mon_host = [v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]
public_network = 127.0.0.0/8
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $CEPH_DIR/keyring
run_dir = $CEPH_DIR/run
pid_file = $CEPH_DIR/run/\$name.pid
admin_socket = $CEPH_DIR/run/\$name.asok
log_file = $CEPH_DIR/log/\$name.log
crash_dir = $CEPH_DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000

[mon]
mon_data = $CEPH_DIR/mon.\$id

[osd]
osd_data = $CEPH_DIR/osd.\$id
osd_objectstore = bluestore
bluestore_block_path = $CEPH_DIR/osd.\$id.block
bluestore_block_create = true
bluestore_block_size = $CEPH_BLOCK_SIZE
osd_memory_target = 1073741824

[$RGW_NAME]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $CEPH_DIR/rgw
# Free the space of deleted objects within a minute, not after hours (the
# default), so that tests and benchmarks do not fill the throwaway OSD.
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
rgw_gc_processor_max_time = 30
CONF
}

create_cluster() {
    log "creating a one-node Ceph cluster in $CEPH_DIR"
    rm -rf "$CEPH_DIR"
    mkdir -p "$CEPH_DIR"/{mon.a,osd.0,run,log,crash,rgw}
    local fsid; fsid=$(uuidgen)
    CEPH_BLOCK_SIZE=${CEPH_BLOCK_SIZE:-$(default_block_size)}
    [ "$CEPH_BLOCK_SIZE" -ge $((4 * 1024 * 1024 * 1024)) ] \
        || die "ceph: less than 8 GiB free disk space in $DEVSTACK"
    log "OSD block file may grow to $((CEPH_BLOCK_SIZE / 1024 / 1024 / 1024)) GiB"
    write_conf "$fsid"
    local kr=$CEPH_DIR/keyring
    ceph-authtool --create-keyring "$kr" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$kr" --gen-key -n client.admin --cap mon 'allow *' \
        --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$kr" --gen-key -n osd.0 --cap mon 'allow profile osd' \
        --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null
    ceph-authtool "$kr" --gen-key -n $RGW_NAME --cap mon 'allow rw' \
        --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
    monmaptool --create --fsid "$fsid" \
        --addv a "[v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]" \
        "$CEPH_DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" --keyring "$kr"
    start_mon
    local osd_uuid; osd_uuid=$(uuidgen)
    local osd_id; osd_id=$(ceph_admin osd new "$osd_uuid")
    [ "$osd_id" = 0 ] || die "ceph: expected OSD id 0, got '$osd_id'"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 \
        || die "ceph: creating the OSD failed, see $CEPH_DIR/log/osd.0.log"
}

osd_up() {
    ceph_admin osd stat -f json | grep -q '"num_up_osds":1'
}

start_mon() {
    pid_alive "$CEPH_DIR/run/mon.a.pid" && return 0
    ceph-mon -c "$CONF" -i a || die "ceph: the monitor did not start, see $CEPH_DIR/log/mon.a.log"
    wait_until 30 "ceph monitor" ceph_admin mon stat \
        || die "ceph: the monitor does not answer, see $CEPH_DIR/log/mon.a.log"
}

rgw_up() {
    curl -fsS -o /dev/null "http://127.0.0.1:$RGW_PORT/"
}

start() {
    if pid_alive "$CEPH_DIR/run/$RGW_NAME.pid" && rgw_up; then
        return 0
    fi
    for port in $MON_PORT_V1 $MON_PORT_V2 $RGW_PORT; do
        if port_in_use "$port" && ! pid_alive "$CEPH_DIR/run/mon.a.pid"; then
            die "port $port (Ceph) is taken by another process: stop it or set MON_PORT_V1/MON_PORT_V2/RGW_PORT"
        fi
    done
    if [ ! -f "$CEPH_DIR/.ready" ]; then
        create_cluster
    else
        start_mon
    fi
    if ! pid_alive "$CEPH_DIR/run/osd.0.pid"; then
        ceph-osd -c "$CONF" -i 0 || die "ceph: the OSD did not start, see $CEPH_DIR/log/osd.0.log"
    fi
    wait_until 60 "ceph osd" osd_up \
        || die "ceph: the OSD did not come up, see $CEPH_DIR/log/osd.0.log"
    if ! pid_alive "$CEPH_DIR/run/$RGW_NAME.pid"; then
        # A lifecycle "day" lasts RGW_LC_DAY seconds here, so that the
        # buckets' abort-incomplete-uploads rule can be seen at work.
        radosgw -c "$CONF" -n $RGW_NAME \
            --rgw_lc_debug_interval="${RGW_LC_DAY:-30}" \
            || die "ceph: radosgw did not start, see $CEPH_DIR/log/$RGW_NAME.log"
    fi
    wait_until 90 "radosgw" rgw_up \
        || die "ceph: the S3 gateway does not answer on 127.0.0.1:$RGW_PORT, see $CEPH_DIR/log/$RGW_NAME.log"
    if ! timeout 30 radosgw-admin -c "$CONF" -n client.admin user info --uid dcor >/dev/null 2>&1; then
        timeout 30 radosgw-admin -c "$CONF" -n client.admin user create --uid dcor \
            --display-name "DCOR devstack" --access-key "$S3_ACCESS_KEY_ID" \
            --secret-key "$S3_SECRET_ACCESS_KEY" >/dev/null \
            || die "ceph: creating the S3 user failed"
    fi
    user_limits
    touch "$CEPH_DIR/.ready"
    log "Ceph S3 gateway at $S3_ENDPOINT"
}

stop() {
    stop_pidfile "$CEPH_DIR/run/$RGW_NAME.pid" radosgw
    stop_pidfile "$CEPH_DIR/run/osd.0.pid" ceph-osd
    stop_pidfile "$CEPH_DIR/run/mon.a.pid" ceph-mon
}

# RGW allows 1000 buckets per user by default; the tests make a bucket per
# organization, so a developer's long-lived cluster would hit the limit
# (TooManyBuckets). 0 means no limit. Idempotent.
user_limits() {
    timeout 30 radosgw-admin -c "$CONF" -n client.admin user modify --uid dcor \
        --max-buckets 0 >/dev/null \
        || die "ceph: lifting the bucket limit of the S3 user failed"
}

status() {
    pid_alive "$CEPH_DIR/run/$RGW_NAME.pid" && rgw_up
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    user-limits) user_limits ;;
    *) die "usage: $0 start|stop|status|user-limits" ;;
esac
