#!/usr/bin/env bash
# Benchmark of `keymigrate migrate` against Cinder's own migrator and against Barbican's
# ceiling, on the real Keystone + Barbican (Barbican on MariaDB) that scripts/testenv.sh runs.
#
#   bench/migrate.sh [N...]        database sizes (default: $BENCH_SIZES or "10000 100000")
#
# For each size N and each backend (BENCH_BACKENDS, default "sqlite,mysql"): a Cinder database
# built by Cinder's own migrations and filled with N volumes on the all-zeros key ID (+ N/2
# snapshots, N/4 backups, N/4 glance-metadata rows), copied identically for each contender:
#   ceiling      examples/ceiling.rs: POST secret, PUT ACL, GET payload per key, no database;
#                at each concurrency of BENCH_CEILING_CONCURRENCY (default 1,4,8,16), the best
#                kept; BENCH_CEILING_KEYS keys per level (default: BENCH_MAX_KEYS)
#   cinder       cinder.keymgr.migration.migrate_fixed_key (cinder==29.0.0) as cinder-volume's
#                startup drives it (bench/cinder_migrate.py), on the first BENCH_MAX_KEYS volumes
#   keymigrate   `migrate --all-hosts --max-count BENCH_MAX_KEYS --workers W`, W in BENCH_WORKERS
#                (default "1 4 16")
# BENCH_MAX_KEYS (default 1000): keys each contender migrates per run.
# Prints keys/s, wall s, client CPU ms/key (user + system), peak RSS MB, the Barbican server's
# CPU ms/key (gunicorn master + workers) and the ratios keymigrate / Cinder, keymigrate / ceiling.
# Every secret a contender made is deleted after its run (Barbican soft-deletes: its rows stay,
# marked deleted; BENCH_PURGE=1 runs `barbican-manage db clean --min-days 0` at the end, which
# purges every soft-deleted row, other users' too). Results also go to
# .cache/bench/migrate-results.tsv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SIZES=${*:-${BENCH_SIZES:-10000 100000}}
BACKENDS=${BENCH_BACKENDS:-sqlite,mysql}
K=${BENCH_MAX_KEYS:-1000}
CK=${BENCH_CEILING_KEYS:-$K}
WORKERS=${BENCH_WORKERS:-1 4 16}
CEIL_CONC=${BENCH_CEILING_CONCURRENCY:-1,4,8,16}
ZERO=00000000-0000-0000-0000-000000000000

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

scripts/testenv.sh up
T=${KEYMIGRATE_TESTENV:-$ROOT/.cache/testenv}
# shellcheck disable=SC1091
source "$T/env.sh"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
log "building keymigrate and examples/ceiling (release)"
cargo build --release --locked -q --bin keymigrate
# Apart: a build that includes an example turns on the dev-dependency's fault-injection feature
# for every target it builds, the binary included.
cargo build --release --locked -q --example ceiling
BIN=$ROOT/target/release/keymigrate
CEILING=$ROOT/target/release/examples/ceiling
PY=$ROOT/.cache/venvs/cinder/bin/python
DIR=$ROOT/.cache/bench/migrate
mkdir -p "$DIR"
RESULTS=$ROOT/.cache/bench/migrate-results.tsv

# MariaDB over TCP as the test user (all privileges), from KEYMIGRATE_TEST_MYSQL_URL
my_url=${KEYMIGRATE_TEST_MYSQL_URL#mysql://}
MY_USER=${my_url%%:*} my_rest=${my_url#*:}
MY_PW=${my_rest%%@*} my_hp=${my_rest#*@}
MY_HOST=${my_hp%%:*} MY_PORT=${my_hp#*:}
my() { "$KEYMIGRATE_TEST_MYSQL_BIN" --no-defaults -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -p"$MY_PW" "$@"; }

# The ceiling's and the cleanup's credentials: the cinder service user, from the environment
export OS_AUTH_URL=$KEYMIGRATE_TEST_KEYSTONE_URL OS_USERNAME=$KEYMIGRATE_TEST_CINDER_USER \
    OS_PASSWORD=$KEYMIGRATE_TEST_CINDER_PASSWORD OS_PROJECT_NAME=$KEYMIGRATE_TEST_CINDER_PROJECT \
    BARBICAN_URL=$KEYMIGRATE_TEST_BARBICAN_URL

FIXED_KEY=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')

# CPU ticks (user + system) of Barbican's gunicorn master and its workers
barbican_ticks() {
    local master pid sum=0
    master=$(head -n1 "$T/barbican/gunicorn.pid" 2>/dev/null | tr -dc 0-9)
    [[ -n $master ]] || { echo 0; return; }
    for pid in $master $(cat /proc/"$master"/task/*/children 2>/dev/null); do
        sum=$((sum + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/"$pid"/stat 2>/dev/null || echo 0)))
    done
    echo "$sum"
}
TICK=$(getconf CLK_TCK)

# db_url BACKEND NAME: the cinder.conf URL of a contender's copy
db_url() {
    case $1 in
        sqlite) echo "sqlite:///$DIR/$2.sqlite" ;;
        mysql) echo "mysql+pymysql://$MY_USER:$MY_PW@$MY_HOST:$MY_PORT/$2?charset=utf8" ;;
    esac
}

# build_master BACKEND N: the seeded database every contender copies (kept in .cache/bench)
build_master() {
    local backend=$1 n=$2 name=bench_master_$2
    case $backend in
        sqlite)
            [[ -s $DIR/$name.sqlite ]] && return 0
            log "building the SQLite master database ($n volumes)"
            cp "$KEYMIGRATE_TEST_SQLITE_TEMPLATE" "$DIR/$name.building.sqlite"
            "$PY" bench/seed.py sqlite "$DIR/$name.building.sqlite" "$n"
            mv "$DIR/$name.building.sqlite" "$DIR/$name.sqlite"
            ;;
        mysql)
            [[ $(my -N -e "SELECT count(*) FROM information_schema.tables WHERE table_schema = '$name' AND table_name = 'bench_done'") == 1 ]] && return 0
            log "building the MariaDB master database $name ($n volumes)"
            my -e "DROP DATABASE IF EXISTS $name; CREATE DATABASE $name"
            my "$name" <"$KEYMIGRATE_TEST_MYSQL_SCHEMA"
            "$PY" bench/seed.py mysql "host=$MY_HOST;port=$MY_PORT;user=$MY_USER;password=$MY_PW;db=$name" "$n"
            my "$name" -e "CREATE TABLE bench_done (n INT)"
            ;;
    esac
}

# copy_db BACKEND N NAME: an identical copy of the master for one contender
copy_db() {
    local backend=$1 n=$2 name=$3 master=bench_master_$2
    case $backend in
        sqlite) cp "$DIR/$master.sqlite" "$DIR/$name.sqlite" ;;
        mysql)
            my -e "DROP DATABASE IF EXISTS $name; CREATE DATABASE $name"
            my "$name" <"$KEYMIGRATE_TEST_MYSQL_SCHEMA"
            my "$name" -e "SET foreign_key_checks = 0;
                INSERT INTO volume_types SELECT * FROM $master.volume_types WHERE id = 'b0000000-0000-4000-8000-00000000be4c';
                INSERT INTO encryption SELECT * FROM $master.encryption;
                INSERT INTO volumes SELECT * FROM $master.volumes;
                INSERT INTO snapshots SELECT * FROM $master.snapshots;
                INSERT INTO backups SELECT * FROM $master.backups;
                INSERT INTO volume_glance_metadata SELECT * FROM $master.volume_glance_metadata;"
            ;;
    esac
}

drop_db() {
    case $1 in
        sqlite) rm -f "$DIR/$2.sqlite" ;;
        mysql) my -e "DROP DATABASE IF EXISTS $2" ;;
    esac
}

# migrated_ids BACKEND NAME: the secret IDs the copy's rows now point at
migrated_ids() {
    local q="SELECT encryption_key_id FROM volumes WHERE encryption_key_id <> '$ZERO'
             UNION SELECT encryption_key_id FROM snapshots WHERE encryption_key_id <> '$ZERO'
             UNION SELECT encryption_key_id FROM backups WHERE encryption_key_id <> '$ZERO'"
    case $1 in
        sqlite) "$PY" -c "import sqlite3,sys; [print(r[0]) for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2])]" "$DIR/$2.sqlite" "$q" ;;
        mysql) my -N "$2" -e "$q" ;;
    esac
}

# write_conf BACKEND NAME: one cinder.conf, read by Cinder's migrator and by keymigrate alike
write_conf() {
    local conf=$DIR/$2.conf
    mkdir -p "$DIR/$2.state"
    cat >"$conf" <<EOF
[DEFAULT]
host = bench
state_path = $DIR/$2.state
log_file = $DIR/$2.cinder.log
[database]
connection = $(db_url "$1" "$2")
[key_manager]
backend = barbican
fixed_key = $FIXED_KEY
[keystone_authtoken]
auth_type = password
auth_url = ${KEYMIGRATE_TEST_KEYSTONE_URL%/v3}
username = $KEYMIGRATE_TEST_CINDER_USER
password = ${KEYMIGRATE_TEST_CINDER_PASSWORD//\$/\$\$}
user_domain_name = Default
project_name = $KEYMIGRATE_TEST_CINDER_PROJECT
project_domain_name = Default
[barbican]
barbican_region_name = RegionOne
EOF
    chmod 600 "$conf"
    echo "$conf"
}

cleanup_secrets() { # FILE of ids
    local n
    n=$(wc -l <"$1")
    ((n > 0)) || return 0
    "$CEILING" --delete-ids "$1" --concurrency 8 >"$1.deleted" 2>&1 || log "cleanup: $(cat "$1.deleted")"
}

# record N BACKEND CONTENDER KEYS WALL CPU_MS_PER_KEY RSS_MB BARBICAN_CPU_MS_PER_KEY ERRORS NOTE
record() {
    printf '%s\t' "$(date -u +%FT%TZ)" "$K" "$@" >>"$RESULTS"
    printf '\n' >>"$RESULTS"
    printf '%s\t' "$@" >>"$RUN_TSV"
    printf '\n' >>"$RUN_TSV"
}

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2" | head -n1; }

run_ceiling() { # N BACKEND [--confirm-name]
    local out line b0 b1 ids=$DIR/ceiling.ids label="ceiling, keymigrate's 4 requests"
    [[ ${3:-} == --confirm-name ]] || label="ceiling without the name check, 3 requests"
    log "$label: $CK keys at each concurrency of $CEIL_CONC"
    b0=$(barbican_ticks)
    out=$("$CEILING" --keys "$CK" --concurrency "$CEIL_CONC" --ids-out "$ids" --acl-user user-1 ${3:+"$3"})
    b1=$(barbican_ticks)
    printf '%s\n' "$out" | grep -v '^RESULT' | sed 's/^/    /' >&2
    line=$(grep '^RESULT' <<<"$out")
    local levels keys
    levels=$(tr ',' ' ' <<<"$CEIL_CONC" | wc -w)
    keys=$(field keys "$line")
    record "$1" "$2" "$label (best: concurrency $(field concurrency "$line"))" "$keys" "$(field wall_s "$line")" \
        "$(field cpu_ms_per_key "$line")" "$(field rss_mb "$line")" \
        "$(awk "BEGIN { printf \"%.2f\", ($b1 - $b0) * 1000 / $TICK / ($keys * $levels) }")" \
        "$(field errors "$line")" "$(field keys_per_s "$line")"
    cleanup_secrets "$ids"
}

run_cinder() { # N BACKEND
    local n=$1 backend=$2 name=bench_cinder conf line b0 b1 tm
    copy_db "$backend" "$n" "$name"
    conf=$(write_conf "$backend" "$name")
    log "cinder's migrator (cinder==29.0.0): $K keys"
    b0=$(barbican_ticks)
    line=$(/usr/bin/time -f '%e %U %S %M' -o "$DIR/time.out" "$PY" bench/cinder_migrate.py "$conf" bench@lvm "$K" \
        2>"$DIR/$name.stderr" | grep '^RESULT') || { tail -n 20 "$DIR/$name.stderr" >&2; line=""; }
    b1=$(barbican_ticks)
    tm=$(tail -n1 "$DIR/time.out")
    log "  $line"
    log "  whole process (/usr/bin/time: wall user sys maxrss-KiB): $tm"
    local keys
    keys=$(field keys "$line")
    keys=${keys:-0}
    record "$n" "$backend" "cinder migrate_fixed_key (loop only)" "$keys" "$(field wall_s "$line")" \
        "$(field cpu_ms_per_key "$line")" "$(awk "BEGIN { printf \"%.1f\", ${tm##* } / 1024 }")" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($b1 - $b0) * 1000 / $TICK / $keys : 0 }")" \
        "$(field errors "$line")" "$(field keys_per_s "$line")"
    read -r pw pu ps _ <<<"$tm"
    record "$n" "$backend" "cinder, whole process (import, load $(field load_s "$line") s, status $(field status_s "$line") s)" "$keys" "$pw" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($pu + $ps) * 1000 / $keys : 0 }")" "$(awk "BEGIN { printf \"%.1f\", ${tm##* } / 1024 }")" \
        "-" "-" "$(awk "BEGIN { printf \"%.2f\", ($pw > 0) ? $keys / $pw : 0 }")"
    migrated_ids "$backend" "$name" >"$DIR/$name.ids"
    cleanup_secrets "$DIR/$name.ids"
    drop_db "$backend" "$name"
}

run_keymigrate() { # N BACKEND WORKERS
    local n=$1 backend=$2 w=$3 name=bench_km_w$3 conf b0 b1 tm keys rc=0
    copy_db "$backend" "$n" "$name"
    conf=$(write_conf "$backend" "$name")
    rm -rf "$DIR/$name.kmstate"
    log "keymigrate migrate --all-hosts --max-count $K --workers $w"
    b0=$(barbican_ticks)
    /usr/bin/time -f '%e %U %S %M' -o "$DIR/time.out" "$BIN" --config-file "$conf" migrate --all-hosts \
        --max-count "$K" --workers "$w" --state-dir "$DIR/$name.kmstate" -f json \
        >"$DIR/$name.json" 2>"$DIR/$name.stderr" || rc=$?
    b1=$(barbican_ticks)
    ((rc <= 1)) || { log "  keymigrate exited $rc:"; tail -n 5 "$DIR/$name.stderr" >&2; }
    tm=$(tail -n1 "$DIR/time.out")
    keys=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["report"]["migrated"])' "$DIR/$name.json" 2>/dev/null || echo 0)
    local failed
    failed=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["report"]["failed"])' "$DIR/$name.json" 2>/dev/null || echo "?")
    read -r pw pu ps pm <<<"$tm"
    log "  migrated $keys, failed $failed; /usr/bin/time: $tm"
    record "$n" "$backend" "keymigrate --workers $w" "$keys" "$pw" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($pu + $ps) * 1000 / $keys : 0 }")" "$(awk "BEGIN { printf \"%.1f\", $pm / 1024 }")" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($b1 - $b0) * 1000 / $TICK / $keys : 0 }")" \
        "$failed" "$(awk "BEGIN { printf \"%.2f\", ($pw > 0) ? $keys / $pw : 0 }")"
    migrated_ids "$backend" "$name" >"$DIR/$name.ids"
    cleanup_secrets "$DIR/$name.ids"
    drop_db "$backend" "$name"
}

print_table() { # N BACKEND
    "$PY" - "$RUN_TSV" "$1" "$2" "$K" <<'PY'
import sys
path, n, backend, k = sys.argv[1:5]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
# columns: N backend contender keys wall cpu_ms rss_mb barbican_cpu errors keys_per_s
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
ceiling = next((num(r[9]) for r in rows if r[2].startswith("ceiling")), None)
cinder = next((r for r in rows if r[2].startswith("cinder migrate_fixed_key")), None)
c_rate, c_cpu = (num(cinder[9]), num(cinder[5])) if cinder else (None, None)
print()
import os
print("== N = %s volumes (%s), K = %s keys per contender; %d CPU(s) shared with the servers, load average %s ==" % (
      n, backend, k, os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3])))
hdr = ("contender", "keys", "keys/s", "wall s", "CPU ms/key", "RSS MB", "Barbican CPU ms/key", "errors",
       "x Cinder", "x ceiling", "CPU vs Cinder")
print("%-72s %5s %7s %7s %10s %7s %19s %6s %8s %9s %13s" % hdr)
for r in rows:
    rate, cpu = num(r[9]), num(r[5])
    is_km = r[2].startswith("keymigrate")
    vc = "%.2f" % (rate / c_rate) if is_km and rate and c_rate else ""
    vg = "%.0f %%" % (100 * rate / ceiling) if is_km and rate and ceiling else ""
    vu = "1/%.1f" % (c_cpu / cpu) if is_km and cpu and c_cpu else ""
    print("%-72s %5s %7s %7s %10s %7s %19s %6s %8s %9s %13s" % (r[2][:72], r[3], r[9], r[4], r[5], r[6], r[7], r[8], vc, vg, vu))
PY
}

for backend in ${BACKENDS//,/ }; do
    [[ $backend == sqlite || $backend == mysql ]] || { log "unknown backend $backend (sqlite, mysql)"; exit 2; }
done
for n in $SIZES; do
    for backend in ${BACKENDS//,/ }; do
        RUN_TSV=$DIR/run-$n-$backend.tsv
        : >"$RUN_TSV"
        build_master "$backend" "$n"
        # keymigrate's own sequence first: the ratios are taken against it.
        run_ceiling "$n" "$backend" --confirm-name
        run_ceiling "$n" "$backend"
        run_cinder "$n" "$backend"
        for w in $WORKERS; do
            run_keymigrate "$n" "$backend" "$w"
        done
        print_table "$n" "$backend"
    done
done
if [[ ${BENCH_PURGE:-0} == 1 ]]; then
    log "purging Barbican's soft-deleted rows (barbican-manage db clean --min-days 0)"
    HOME=$T/barbican/home "$ROOT/.cache/venvs/barbican/bin/barbican-manage" db clean --min-days 0 >"$DIR/purge.log" 2>&1 ||
        log "purge failed: see $DIR/purge.log"
fi
