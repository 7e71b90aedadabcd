#!/usr/bin/env bash
# Benchmark of `keymigrate migrate` against Cinder's own migrator and against Barbican's
# ceiling, on the real Keystone + Barbican (Barbican on MariaDB) that scripts/testenv.sh runs.
#
#   bench/migrate.sh [N...]        database sizes (default: $BENCH_SIZES or "10000 100000")
#
# For each size N and each backend (BENCH_BACKENDS, default "sqlite,mysql"): a Cinder database
# built by Cinder's own migrations and filled with N volumes on the all-zeros key ID (+ N/2
# snapshots, N/4 backups, N/4 glance-metadata rows), copied identically for each contender:
#   ceiling      examples/ceiling.rs, no database: a migration's per-key requests and nothing
#                else, for each sequence of BENCH_CEILING_SEQUENCES (default "old4 service
#                project project-keystone"): old4 = POST, GET metadata (name check), PUT ACL, GET payload (the
#                engine's sequence before the batched name check); service = POST, GET payload,
#                one name listing per batch of keys, PUT ACL (`--secret-owner service`); project =
#                POST, GET payload, one listing per batch and project, no ACL, the keys in blocks
#                over the bench projects (keymigrate dispatches a project's units side by side),
#                with a token of each (`--secret-owner project`), fetched before the clock starts;
#                project-keystone = the same as Keystone's admin, with what keymigrate's project
#                mode does in Keystone per project inside the clock (role assignments read, a
#                grant, a scoped token fetched and checked, the revocation after the last key:
#                project mode's own ceiling when it ran); cinder = POST, PUT ACL (Cinder's
#                two requests; not run by default). At each concurrency of
#                BENCH_CEILING_CONCURRENCY (default 1,4,8,16), the best kept; BENCH_CEILING_KEYS
#                keys per level (default: BENCH_MAX_KEYS)
#   cinder       cinder.keymgr.migration.migrate_fixed_key (cinder==29.0.0) as cinder-volume's
#                startup drives it (bench/cinder_migrate.py), on the first BENCH_MAX_KEYS volumes
#   keymigrate   `migrate --all-hosts --max-count BENCH_MAX_KEYS --workers W`, W in BENCH_WORKERS
#                (default "1 4 16"), for each mode of BENCH_MODES (default "service project"):
#                `--secret-owner service` (secrets in Cinder's service project), and
#                `--secret-owner project --os-cloud bench-admin` on a copy whose rows belong to
#                BENCH_PROJECTS (default 8) real Keystone projects, round robin (a snapshot or
#                backup in its volume's project), acting as Keystone's admin from a clouds.yaml
#                in the bench directory: it grants itself `member` in each project and revokes
#                it at the end, as in a real cloud
# The bench projects (keymigrate-bench-<i>), a user keymigrate-bench holding `member` in each
# (the ceiling's `project` identity and the clean-up's) and the clouds.yaml are made, and kept,
# by bench/projects.py with the testenv's admin credentials.
# BENCH_MAX_KEYS (default 1000): keys each contender migrates per run. BENCH_KEYMIGRATE: a
# keymigrate binary to measure instead of building target/release/keymigrate.
# BENCH_KEYMIGRATE_ARGS: more arguments for every keymigrate run (e.g. --debug, whose closing
# lines say how many names the listings confirmed). BENCH_CINDER=0: leave Cinder's loop out
# (for quick comparisons between keymigrate builds; the ratios to Cinder are then blank).
# BENCH_SKIP_TESTENV_UP=1: do not run `scripts/testenv.sh up` (the servers already run).
# Prints keys/s, wall s, client CPU ms/key (user + system), peak RSS MB, the Barbican server's
# CPU ms/key (gunicorn master + workers), errors, keys per name listing, and the ratios
# keymigrate / Cinder (keys/s), keymigrate / the ceiling of its own sequence (service mode / ceiling
# service, project mode / ceiling project), Barbican CPU per key / Cinder's, and client CPU per
# key as a fraction of Cinder's.
# Every secret a contender made is deleted after its run, in the project it is in (Barbican
# soft-deletes: its rows stay, marked deleted; BENCH_PURGE=1 runs `barbican-manage db clean
# --min-days 0` at the end, which purges every soft-deleted row, other users' too). Results also
# go to .cache/bench/migrate-results.tsv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SIZES=${*:-${BENCH_SIZES:-10000 100000}}
BACKENDS=${BENCH_BACKENDS:-sqlite,mysql}
K=${BENCH_MAX_KEYS:-1000}
CK=${BENCH_CEILING_KEYS:-$K}
WORKERS=${BENCH_WORKERS:-1 4 16}
MODES=${BENCH_MODES:-service project}
SEQUENCES=${BENCH_CEILING_SEQUENCES:-old4 service project project-keystone}
NPROJECTS=${BENCH_PROJECTS:-8}
CEIL_CONC=${BENCH_CEILING_CONCURRENCY:-1,4,8,16}
ZERO=00000000-0000-0000-0000-000000000000

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

for backend in ${BACKENDS//,/ }; do
    [[ $backend == sqlite || $backend == mysql ]] || { log "unknown backend $backend (sqlite, mysql)"; exit 2; }
done
for mode in $MODES; do
    [[ $mode == service || $mode == project ]] || { log "unknown mode $mode in BENCH_MODES (service, project)"; exit 2; }
done
for seq in $SEQUENCES; do
    [[ $seq == old4 || $seq == service || $seq == project || $seq == project-keystone || $seq == cinder ]] ||
        { log "unknown sequence $seq in BENCH_CEILING_SEQUENCES (old4, service, project, project-keystone, cinder)"; exit 2; }
done
# BENCH_SKIP_TESTENV_UP=1: the servers already run, started from another checkout that shares
# .cache (a git worktree): `up` from here would rewrite env.sh with this checkout's paths.
[[ ${BENCH_SKIP_TESTENV_UP:-0} == 1 ]] || scripts/testenv.sh up
T=${KEYMIGRATE_TESTENV:-$ROOT/.cache/testenv}
# shellcheck disable=SC1091
source "$T/env.sh"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
if [[ -n ${BENCH_KEYMIGRATE:-} ]]; then
    BIN=$BENCH_KEYMIGRATE
    log "measuring $BIN; building examples/ceiling (release)"
else
    log "building keymigrate and examples/ceiling (release)"
    cargo build --release --locked -q --bin keymigrate
    BIN=$ROOT/target/release/keymigrate
fi
# Apart: a build that includes an example turns on the dev-dependency's fault-injection feature
# for every target it builds, the binary included.
cargo build --release --locked -q --example ceiling
CEILING=$ROOT/target/release/examples/ceiling
PY=$ROOT/.cache/venvs/cinder/bin/python
DIR=$ROOT/.cache/bench/migrate
mkdir -p "$DIR"
chmod 700 "$DIR" # cinder.conf copies and clouds.yaml hold passwords
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

# The project-mode contenders' Keystone projects, the bench user (a member of each) and the
# clouds.yaml of keymigrate's admin identity: bench/projects.py, idempotent
PROJECT_IDS=$DIR/projects.ids
if [[ " $SEQUENCES $MODES " == *" project"[\ -]* ]]; then
    log "bench projects: $NPROJECTS (keymigrate-bench-*), user keymigrate-bench, $DIR/clouds.yaml"
    "$PY" bench/projects.py "$NPROJECTS" "$DIR"
fi

# Runs a command as the bench user (the ceiling's project sequence, the clean-up of secrets in
# the bench projects): the password through the environment, never the command line
# Runs a command as Keystone's admin in project admin (the ceiling's project-keystone sequence,
# which grants itself a role in each bench project as keymigrate's project mode does)
as_admin() {
    OS_USERNAME=admin OS_PASSWORD=$KEYMIGRATE_TEST_ADMIN_PASSWORD OS_PROJECT_NAME=admin "$@"
}

as_bench_user() {
    OS_USERNAME=keymigrate-bench OS_PASSWORD=$(cat "$DIR/bench-user.pw") "$@"
}

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

# migrated_ids BACKEND NAME [project]: the secret IDs the copy's rows now point at; with
# `project`, each preceded by the row's project (where a project-mode secret is)
migrated_ids() {
    local c=encryption_key_id
    [[ ${3:-} == project ]] && c="project_id, encryption_key_id"
    local q="SELECT $c FROM volumes WHERE encryption_key_id <> '$ZERO'
             UNION SELECT $c FROM snapshots WHERE encryption_key_id <> '$ZERO'
             UNION SELECT $c FROM backups WHERE encryption_key_id <> '$ZERO'"
    case $1 in
        sqlite) "$PY" -c "import sqlite3,sys; [print(*r) for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2])]" "$DIR/$2.sqlite" "$q" ;;
        mysql) my -N "$2" -e "$q" ;;
    esac
}

# assign_projects BACKEND NAME: the copy's volumes round robin over the bench projects, in the
# order keymigrate reads them (rowid on SQLite, primary key on MariaDB), so that any K of them
# are spread evenly; each snapshot and backup in its volume's project
assign_projects() {
    local i=0 pid pick="CASE ORD "
    while read -r pid; do
        pick+="WHEN $i THEN '$pid' "
        i=$((i + 1))
    done <"$PROJECT_IDS"
    ((i > 0)) || { log "no bench project in $PROJECT_IDS"; exit 2; }
    pick+="END"
    case $1 in
        sqlite)
            "$PY" -c "import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()" "$DIR/$2.sqlite" "
                UPDATE volumes SET project_id = ${pick/ORD/((rowid - 1) % $i)};
                UPDATE snapshots SET project_id = COALESCE((SELECT v.project_id FROM volumes v WHERE v.id = snapshots.volume_id), project_id);
                UPDATE backups SET project_id = COALESCE((SELECT v.project_id FROM volumes v WHERE v.id = backups.volume_id), project_id);"
            ;;
        mysql)
            my "$2" -e "
                UPDATE volumes v JOIN (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS rn FROM volumes) r ON r.id = v.id
                    SET v.project_id = ${pick/ORD/MOD(r.rn, $i)};
                UPDATE snapshots s JOIN volumes v ON v.id = s.volume_id SET s.project_id = v.project_id;
                UPDATE backups b JOIN volumes v ON v.id = b.volume_id SET b.project_id = v.project_id;"
            ;;
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

# cleanup_secrets FILE [project]: deletes the secrets FILE lists, as Cinder's service user (IDs
# alone) or, with `project`, as the bench user with a token of each line's project
cleanup_secrets() {
    local n
    n=$(wc -l <"$1")
    ((n > 0)) || return 0
    if [[ ${2:-} == project ]]; then
        as_bench_user "$CEILING" --delete-ids "$1" --concurrency 8 >"$1.deleted" 2>&1 || log "cleanup: $(cat "$1.deleted")"
    else
        "$CEILING" --delete-ids "$1" --concurrency 8 >"$1.deleted" 2>&1 || log "cleanup: $(cat "$1.deleted")"
    fi
    log "  cleanup: $(cat "$1.deleted")"
}

# record N BACKEND CONTENDER KEYS WALL CPU_MS_PER_KEY RSS_MB BARBICAN_CPU_MS_PER_KEY ERRORS
#        KEYS_PER_S KEYS_PER_LISTING
record() {
    printf '%s\t' "$(date -u +%FT%TZ)" "$K" "$@" >>"$RESULTS"
    printf '\n' >>"$RESULTS"
    printf '%s\t' "$@" >>"$RUN_TSV"
    printf '\n' >>"$RUN_TSV"
}

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2" | head -n1; }

run_ceiling() { # N BACKEND SEQUENCE
    local seq=$3 out line b0 b1 ids=$DIR/ceiling-$3.ids label run=() owner="" extra=()
    case $seq in
        old4) label="ceiling old4: POST, GET name, ACL, payload" ;;
        service) label="ceiling service: POST, payload, listing, ACL" ;;
        project)
            label="ceiling project: POST, payload, listing; $NPROJECTS projects"
            run=(as_bench_user) owner=project
            ;;
        project-keystone)
            label="ceiling project+keystone: project, and per project a grant, token, revocation"
            run=(as_admin) owner=project extra=(--grant-role member)
            ;;
        cinder) label="ceiling cinder: POST, ACL" ;;
        *) log "unknown ceiling sequence $seq (old4, service, project, project-keystone, cinder)"; exit 2 ;;
    esac
    log "$label: $CK keys at each concurrency of $CEIL_CONC"
    b0=$(barbican_ticks)
    out=$("${run[@]}" "$CEILING" --keys "$CK" --concurrency "$CEIL_CONC" --ids-out "$ids" --acl-user user-1 \
        --sequence "${seq%-keystone}" ${owner:+--project-ids "$PROJECT_IDS"} "${extra[@]}")
    b1=$(barbican_ticks)
    printf '%s\n' "$out" | grep -v '^RESULT' | sed 's/^/    /' >&2
    line=$(grep '^RESULT' <<<"$out")
    local levels keys
    levels=$(tr ',' ' ' <<<"$CEIL_CONC" | wc -w)
    keys=$(field keys "$line")
    record "$1" "$2" "$label (best: c=$(field concurrency "$line"))" "$keys" "$(field wall_s "$line")" \
        "$(field cpu_ms_per_key "$line")" "$(field rss_mb "$line")" \
        "$(awk "BEGIN { printf \"%.2f\", ($b1 - $b0) * 1000 / $TICK / ($keys * $levels) }")" \
        "$(field errors "$line")" "$(field keys_per_s "$line")" "$(field per_listing "$line")"
    cleanup_secrets "$ids" "$owner"
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
        "$(field errors "$line")" "$(field keys_per_s "$line")" "-"
    read -r pw pu ps _ <<<"$tm"
    record "$n" "$backend" "cinder, whole process (import, load $(field load_s "$line") s, status $(field status_s "$line") s)" "$keys" "$pw" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($pu + $ps) * 1000 / $keys : 0 }")" "$(awk "BEGIN { printf \"%.1f\", ${tm##* } / 1024 }")" \
        "-" "-" "$(awk "BEGIN { printf \"%.2f\", ($pw > 0) ? $keys / $pw : 0 }")" "-"
    migrated_ids "$backend" "$name" >"$DIR/$name.ids"
    cleanup_secrets "$DIR/$name.ids"
    drop_db "$backend" "$name"
}

run_keymigrate() { # N BACKEND WORKERS MODE
    local n=$1 backend=$2 w=$3 mode=$4 name=bench_km_$4_w$3 conf b0 b1 tm keys rc=0 owner=() cfg=()
    copy_db "$backend" "$n" "$name"
    if [[ $mode == project ]]; then
        assign_projects "$backend" "$name"
        owner=(--secret-owner project --os-cloud bench-admin)
        cfg=(OS_CLIENT_CONFIG_FILE="$DIR/clouds.yaml")
    else
        owner=(--secret-owner service)
    fi
    conf=$(write_conf "$backend" "$name")
    rm -rf "$DIR/$name.kmstate"
    log "keymigrate migrate ${owner[*]} --all-hosts --max-count $K --workers $w"
    b0=$(barbican_ticks)
    env "${cfg[@]}" /usr/bin/time -f '%e %U %S %M' -o "$DIR/time.out" "$BIN" --config-file "$conf" migrate --all-hosts \
        "${owner[@]}" --max-count "$K" --workers "$w" --state-dir "$DIR/$name.kmstate" -f json ${BENCH_KEYMIGRATE_ARGS:-} \
        >"$DIR/$name.json" 2>"$DIR/$name.stderr" || rc=$?
    b1=$(barbican_ticks)
    ((rc <= 1)) || { log "  keymigrate exited $rc:"; tail -n 5 "$DIR/$name.stderr" >&2; }
    tm=$(tail -n1 "$DIR/time.out")
    # migrated failed blocked_units deferred grants_made grants_revoked projects
    local report failed blocked deferred made revoked projects
    report=$("$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))["report"]
k = r.get("keystone") or {}
print(r["migrated"], r["failed"], r.get("blocked_units") or 0, r.get("deferred") or 0,
      k.get("grants_made") or 0, k.get("grants_revoked") or 0, k.get("projects") or 0)' "$DIR/$name.json" 2>/dev/null || echo "0 ? 0 0 0 0 0")
    read -r keys failed blocked deferred made revoked projects <<<"$report"
    read -r pw pu ps pm <<<"$tm"
    log "  migrated $keys, failed $failed; /usr/bin/time: $tm"
    grep -ho 'Confirmed the names of .*' "$DIR/$name.stderr" | sed 's/^/  /' >&2 || true
    local label="keymigrate --secret-owner $mode --workers $w"
    if [[ $mode == project ]]; then
        log "  projects $projects, role grants made $made, revoked $revoked, blocked units $blocked, deferred $deferred"
        ((blocked + deferred == 0)) || label+=" (blocked $blocked, deferred $deferred)"
        if ((made != revoked)); then
            # Not revoked here: the journal in the state directory names them (project, user,
            # role); it is kept for whoever revokes them.
            log "  $((made - revoked)) role grant(s) keymigrate did not revoke: see the journal in $DIR/$name.kmstate.grants-left"
            rm -rf "$DIR/$name.kmstate.grants-left"
            mv "$DIR/$name.kmstate" "$DIR/$name.kmstate.grants-left"
        fi
    fi
    record "$n" "$backend" "$label" "$keys" "$pw" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($pu + $ps) * 1000 / $keys : 0 }")" "$(awk "BEGIN { printf \"%.1f\", $pm / 1024 }")" \
        "$(awk "BEGIN { printf \"%.2f\", $keys ? ($b1 - $b0) * 1000 / $TICK / $keys : 0 }")" \
        "$failed" "$(awk "BEGIN { printf \"%.2f\", ($pw > 0) ? $keys / $pw : 0 }")" "-"
    migrated_ids "$backend" "$name" "$mode" >"$DIR/$name.ids"
    cleanup_secrets "$DIR/$name.ids" "$mode"
    drop_db "$backend" "$name"
}

print_table() { # N BACKEND
    "$PY" - "$RUN_TSV" "$1" "$2" "$K" <<'PY'
import os
import sys
path, n, backend, k = sys.argv[1:5]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
# columns: N backend contender keys wall cpu_ms rss_mb barbican_cpu errors keys_per_s per_listing
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
def first(prefix):
    return next((r for r in rows if r[2].startswith(prefix)), None)
ceilings = {mode: first("ceiling %s:" % mode) for mode in ("service", "project")}
# Project mode's own sequence includes its Keystone work per project, when that ceiling ran.
ceilings["project"] = first("ceiling project+keystone:") or ceilings["project"]
cinder = first("cinder migrate_fixed_key")
c_rate, c_cpu, c_barb = (num(cinder[9]), num(cinder[5]), num(cinder[7])) if cinder else (None, None, None)
print()
print("== N = %s volumes (%s), K = %s keys per contender; %d CPU(s) shared with the servers, load average %s ==" % (
      n, backend, k, os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3])))
fmt = "%-66s %5s %7s %7s %8s %6s %9s %6s %7s %8s %9s %9s %9s"
print(fmt % ("contender", "keys", "keys/s", "wall s", "CPU ms/", "RSS", "Barbican", "errors", "keys/", "x Cinder",
             "x own", "Barbican", "CPU vs"))
print(fmt % ("", "", "", "", "key", "MB", "ms/key", "", "listing", "keys/s", "ceiling", "x Cinder", "Cinder"))
for r in rows:
    rate, cpu, barb = num(r[9]), num(r[5]), num(r[7])
    mine = not r[2].startswith("cinder")
    is_km = r[2].startswith("keymigrate")
    own = None
    if is_km:
        own = ceilings["project" if "--secret-owner project" in r[2] else "service"]
    own_rate = num(own[9]) if own else None
    vc = "%.2f" % (rate / c_rate) if mine and rate and c_rate else ""
    vg = "%.0f %%" % (100 * rate / own_rate) if is_km and rate and own_rate else ""
    vb = "%.2f" % (barb / c_barb) if mine and barb and c_barb else ""
    vu = "1/%.1f" % (c_cpu / cpu) if mine and cpu and c_cpu else ""
    per = r[10] if len(r) > 10 and r[10] != "-" else ""
    print(fmt % (r[2][:66], r[3], r[9], r[4], r[5], r[6], r[7], r[8], per, vc, vg, vb, vu))
PY
}

for n in $SIZES; do
    for backend in ${BACKENDS//,/ }; do
        RUN_TSV=$DIR/run-$n-$backend.tsv
        : >"$RUN_TSV"
        build_master "$backend" "$n"
        for seq in $SEQUENCES; do
            run_ceiling "$n" "$backend" "$seq"
        done
        [[ ${BENCH_CINDER:-1} == 0 ]] || run_cinder "$n" "$backend"
        for w in $WORKERS; do
            for mode in $MODES; do
                run_keymigrate "$n" "$backend" "$w" "$mode"
            done
        done
        print_table "$n" "$backend"
    done
done
if [[ ${BENCH_PURGE:-0} == 1 ]]; then
    log "purging Barbican's soft-deleted rows (barbican-manage db clean --min-days 0)"
    HOME=$T/barbican/home "$ROOT/.cache/venvs/barbican/bin/barbican-manage" db clean --min-days 0 >"$DIR/purge.log" 2>&1 ||
        log "purge failed: see $DIR/purge.log"
fi
