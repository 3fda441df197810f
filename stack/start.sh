#!/usr/bin/env bash
# Start the development stack on 127.0.0.1, idempotently.
#   start.sh services  PostgreSQL, Redis, Ceph S3 gateway, Solr stand-in
#   start.sh test      services + test database and test.ini
#   start.sh all       test + ckan.ini, database, sysadmin, token, CKAN web
#                      server and a worker; writes .devstack/env (default)
# If a step fails, what this run started is stopped again.
source "$(dirname "$0")/lib.sh"

MODE=${1:-all}
PG_DIR=$(pg_dir)
REDIS_DIR=$DEVSTACK/redis
SOLR_PIDFILE=$DEVSTACK/solr-stub.pid
DB_SUFFIX=${CKAN_VERSION//./_}
DB_NAME=ckan_$DB_SUFFIX
TEST_DB_NAME=ckan_test_$DB_SUFFIX
CKAN_INI=$CKAN_DIR/ckan.ini
TEST_INI=$CKAN_DIR/test.ini
CKAN_URL=http://127.0.0.1:$CKAN_PORT
ADMIN_USER=dcor-admin
WEB_PIDFILE=$CKAN_DIR/web.pid
WORKER_PIDFILE=$CKAN_DIR/worker.pid
CKAN_CMD=("$VENV/bin/ckan")

STARTED=()
on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ ${#STARTED[@]} -gt 0 ]; then
        log "start failed: stopping what this run started (${STARTED[*]})"
        for ((i=${#STARTED[@]}-1; i>=0; i--)); do
            stop_component "${STARTED[$i]}" || true
        done
    fi
    exit $rc
}
trap on_exit EXIT

stop_component() {
    case "$1" in
        postgres) pg_stop ;;
        redis) stop_pidfile "$REDIS_DIR/redis.pid" redis ;;
        ceph) "$STACK_DIR/ceph.sh" stop ;;
        solr) stop_pidfile "$SOLR_PIDFILE" "Solr stand-in" ;;
        web) stop_pidfile "$WEB_PIDFILE" "CKAN web server" ;;
        worker) stop_pidfile "$WORKER_PIDFILE" "CKAN worker" ;;
    esac
}

# refuse_taken_port PORT WHAT VARIABLE: die unless PORT is free
refuse_taken_port() {
    if port_in_use "$1"; then
        die "port $1 ($2) is taken by another process: stop it or set $3 to a free port"
    fi
}

# ---------------------------------------------------------------- PostgreSQL
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pg_running() { [ -n "$PG_BIN" ] && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }
pg_stop() { pg_running && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null && log "stopped PostgreSQL"; return 0; }
psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

start_postgres() {
    [ -n "$PG_BIN" ] || die "PostgreSQL is not installed: run 'make setup'"
    pg_running && return 0
    refuse_taken_port "$PG_PORT" PostgreSQL PG_PORT
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        mkdir -p "$PG_DIR"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR"
        as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres \
            --auth=trust -E UTF8 >/dev/null
    fi
    as_postgres mkdir -p "$PG_DIR/run"
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
        -o "-p $PG_PORT -k $PG_DIR/run -c listen_addresses=127.0.0.1" start >/dev/null \
        || die "PostgreSQL did not start, see $PG_DIR/postgres.log"
    STARTED+=(postgres)
    log "PostgreSQL on 127.0.0.1:$PG_PORT"
}

ensure_database() {
    local db=$1
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='ckan'")" ]; then
        psql_admin -c "CREATE ROLE ckan LOGIN PASSWORD 'ckan'"
    fi
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
        psql_admin -c "CREATE DATABASE $db OWNER ckan ENCODING 'utf-8'"
        return 1  # new database
    fi
    return 0
}

# --------------------------------------------------------------------- Redis
start_redis() {
    pid_alive "$REDIS_DIR/redis.pid" && return 0
    refuse_taken_port "$REDIS_PORT" Redis REDIS_PORT
    command -v redis-server >/dev/null || die "Redis is not installed: run 'make setup'"
    mkdir -p "$REDIS_DIR"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --save '' --appendonly no --dir "$REDIS_DIR" \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
    wait_until 10 redis redis-cli -p "$REDIS_PORT" ping \
        || die "Redis did not start, see $REDIS_DIR/redis.log"
    STARTED+=(redis)
    log "Redis on 127.0.0.1:$REDIS_PORT"
}

# ---------------------------------------------------------------------- Ceph
start_ceph() {
    if "$STACK_DIR/ceph.sh" status; then
        "$STACK_DIR/ceph.sh" user-limits
        return 0
    fi
    STARTED+=(ceph)
    "$STACK_DIR/ceph.sh" start
}

check_object_store() {
    S3_ENDPOINT=$S3_ENDPOINT S3_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID \
    S3_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY "$VENV/bin/python" - <<'PY' \
        || die "the object store at $S3_ENDPOINT does not accept the devstack credentials"
import os, sys, boto3, botocore.config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"],
                  aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
                  region_name="us-east-1",
                  config=botocore.config.Config(connect_timeout=5, retries={"max_attempts": 1}))
try:
    s3.list_buckets()
except Exception as exc:
    print(f"[stack] {exc}", file=sys.stderr)
    sys.exit(1)
PY
}

# ------------------------------------------------------------ Solr stand-in
start_solr() {
    pid_alive "$SOLR_PIDFILE" && return 0
    refuse_taken_port "$SOLR_PORT" "Solr stand-in" SOLR_PORT
    # The index file keeps the demo site's search listing across restarts.
    nohup "$VENV/bin/python" "$STACK_DIR/solr_stub.py" "$SOLR_PORT" "$SOLR_PIDFILE" \
        "$DEVSTACK/solr-stub-index.json" > "$DEVSTACK/solr-stub.log" 2>&1 &
    wait_until 10 solr curl -fsS "http://127.0.0.1:$SOLR_PORT/solr/ckan/admin/ping" \
        || die "the Solr stand-in did not start, see $DEVSTACK/solr-stub.log"
    STARTED+=(solr)
    log "Solr stand-in on 127.0.0.1:$SOLR_PORT"
}

# --------------------------------------------------------------------- CKAN
common_settings() {
    local area=$1
    cat <<INI
ckan.site_id = dcor-$area
solr_url = http://127.0.0.1:$SOLR_PORT/solr/ckan
ckan.storage_path = $CKAN_DIR/$area/storage
ckan.max_resource_size = 20000
ckanext.dcor_depot.depots_path = $CKAN_DIR/$area/depots
ckanext.dcor_depot.tmp_dir = $CKAN_DIR/$area/tmp
dcor_object_store.access_key_id = $S3_ACCESS_KEY_ID
dcor_object_store.secret_access_key = $S3_SECRET_ACCESS_KEY
dcor_object_store.endpoint_url = $S3_ENDPOINT
dcor_object_store.ssl_verify = false
dcor_object_store.bucket_name = $area-circle-{organization_id}
dcor_object_store.local_backup_location = $CKAN_DIR/$area/s3-backup
INI
}

write_ckan_ini() {
    mkdir -p "$CKAN_DIR"/dev/{storage,depots,tmp,s3-backup}
    if [ ! -f "$CKAN_INI" ]; then
        "${CKAN_CMD[@]}" generate config "$CKAN_INI" >/dev/null
    fi
    local settings=(
        "sqlalchemy.url = postgresql://ckan:ckan@127.0.0.1:$PG_PORT/$DB_NAME"
        "ckan.site_url = $CKAN_URL"
        "ckan.redis.url = redis://127.0.0.1:$REDIS_PORT/0"
        "ckan.plugins = activity dcor_depot"
    )
    while IFS= read -r line; do settings+=("$line"); done < <(common_settings dev)
    local args=()
    for s in "${settings[@]}"; do args+=("${s%% = *}=${s#* = }"); done
    "${CKAN_CMD[@]}" config-tool "$CKAN_INI" "${args[@]}" >/dev/null
}

write_test_ini() {
    mkdir -p "$CKAN_DIR"/test/{storage,depots,tmp,s3-backup}
    cat > "$TEST_INI" <<INI
# Written by stack/start.sh for 'make test' (CKAN $CKAN_VERSION).
[app:main]
use = egg:ckan
sqlalchemy.url = postgresql://ckan:ckan@127.0.0.1:$PG_PORT/$TEST_DB_NAME
ckan.site_url = http://test.ckan.net
ckan.redis.url = redis://127.0.0.1:$REDIS_PORT/1
ckan.plugins = dcor_depot
SECRET_KEY = dcor-test-secret
WTF_CSRF_ENABLED = false
api_token.jwt.encode.secret = string:dcor-test-jwt
api_token.jwt.decode.secret = string:dcor-test-jwt
ckan.auth.create_unowned_dataset = false
$(common_settings test)

[loggers]
keys = root, ckan, ckanext

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_ckan]
level = WARNING
handlers = console
qualname = ckan
propagate = 0

[logger_ckanext]
level = INFO
handlers = console
qualname = ckanext
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s
INI
}

ensure_admin_and_token() {
    local token_file=$CKAN_DIR/api_token fresh=0
    if ! "${CKAN_CMD[@]}" -c "$CKAN_INI" user show "$ADMIN_USER" 2>/dev/null | grep -q "name=$ADMIN_USER"; then
        "${CKAN_CMD[@]}" -c "$CKAN_INI" user add "$ADMIN_USER" \
            email=admin@dcor.invalid password=devstack-admin-password >/dev/null
        fresh=1
    fi
    "${CKAN_CMD[@]}" -c "$CKAN_INI" sysadmin add "$ADMIN_USER" >/dev/null 2>&1 </dev/null || true
    if [ $fresh -eq 1 ] || [ ! -s "$token_file" ]; then
        "${CKAN_CMD[@]}" -c "$CKAN_INI" user token add "$ADMIN_USER" devstack \
            | tail -1 | tr -d '[:space:]' > "$token_file"
    fi
}

start_web() {
    pid_alive "$WEB_PIDFILE" && return 0
    refuse_taken_port "$CKAN_PORT" "CKAN web server" CKAN_PORT
    nohup setsid "${CKAN_CMD[@]}" -c "$CKAN_INI" run -H "$CKAN_HOST" -p "$CKAN_PORT" \
        --disable-reloader --threaded > "$CKAN_DIR/web.log" 2>&1 &
    echo $! > "$WEB_PIDFILE"
    STARTED+=(web)
    wait_until 60 ckan curl -fsS "$CKAN_URL/api/3/action/status_show" \
        || die "the CKAN web server did not answer, see $CKAN_DIR/web.log"
    log "CKAN $CKAN_VERSION at $CKAN_URL"
}

start_worker() {
    pid_alive "$WORKER_PIDFILE" && return 0
    nohup setsid "${CKAN_CMD[@]}" -c "$CKAN_INI" dcor-depot-worker default dcor-short dcor-normal \
        > "$CKAN_DIR/worker.log" 2>&1 &
    echo $! > "$WORKER_PIDFILE"
    STARTED+=(worker)
    sleep 1
    pid_alive "$WORKER_PIDFILE" || die "the CKAN worker did not start, see $CKAN_DIR/worker.log"
    log "worker for queues default, dcor-short, dcor-normal"
}

write_env() {
    cat > "$DEVSTACK/env" <<ENV
# Connection details of the running devstack; source this file.
export CKAN_VERSION='$CKAN_VERSION'
export CKAN_VENV='$VENV'
export CKAN_INI='$CKAN_INI'
export CKAN_TEST_INI='$TEST_INI'
export CKAN_URL='$CKAN_URL'
export CKAN_API_TOKEN='$(cat "$CKAN_DIR/api_token")'
export S3_ENDPOINT='$S3_ENDPOINT'
export S3_ACCESS_KEY_ID='$S3_ACCESS_KEY_ID'
export S3_SECRET_ACCESS_KEY='$S3_SECRET_ACCESS_KEY'
ENV
}

[ -x "$VENV/bin/python" ] || die "CKAN $CKAN_VERSION is not installed in $VENV: run 'make setup'"
mkdir -p "$CKAN_DIR"

start_postgres
start_redis
start_ceph
check_object_store
start_solr
[ "$MODE" = services ] && exit 0

ensure_database "$TEST_DB_NAME" || true
write_test_ini
[ "$MODE" = test ] && exit 0

[ "$MODE" = all ] || die "unknown mode '$MODE': use services, test or all"
write_ckan_ini
ensure_database "$DB_NAME" || true
"${CKAN_CMD[@]}" -c "$CKAN_INI" db init >/dev/null 2>"$CKAN_DIR/db-init.log" \
    || die "'ckan db init' failed, see $CKAN_DIR/db-init.log"
ensure_admin_and_token
start_web
start_worker
write_env
log "stack is up; connection details in $DEVSTACK/env"
