#!/usr/bin/env bash
# Benchmark: `keymigrate scan --all-hosts -f json`, `scan --host host7` and `status --all-hosts`
# on Cinder databases built by Cinder's own migrations and filled with N volumes on the all-zeros
# key ID (default 1,000,000), plus N/2 snapshots, N/4 backups and N/4 glance-metadata rows
# (about 2N rows). Prints wall time, CPU time and peak RSS of each command, and the same for a
# baseline in the same run: Python's own driver merely reading the rows keymigrate reads (every
# volume; the all-zeros snapshots, glance-metadata rows and backups), one sequential pass each.
#
# Usage: bench/scan.sh [N]
#   BENCH_BACKENDS="sqlite mysql"   which databases (MariaDB is the test stack's, started by
#                                   scripts/testenv.sh up)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-1000000}
BACKENDS=${BENCH_BACKENDS:-sqlite mysql}
scripts/testenv.sh install >/dev/null
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
BIN="$ROOT/target/release/keymigrate"
DIR="$ROOT/.cache/bench"
mkdir -p "$DIR"
PY="$ROOT/.cache/venvs/cinder/bin/python"
KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

# The baseline: the driver reads what keymigrate reads, and nothing else. Usage: KIND TARGET.
cat > "$DIR/baseline.py" <<'PY'
import sys
kind, target = sys.argv[1], sys.argv[2]
Z = "00000000-0000-0000-0000-000000000000"
if kind == "sqlite":
    import sqlite3
    c = sqlite3.connect(target); p = "?"; cur = c.cursor()
else:
    import pymysql, pymysql.cursors, urllib.parse
    u = urllib.parse.urlparse(target)
    c = pymysql.connect(host=u.hostname, port=u.port, user=u.username, password=u.password, database=u.path[1:])
    p = "%s"; cur = c.cursor(pymysql.cursors.SSCursor)
n = 0
for q, args in [("select id, host, cluster_name, user_id, project_id, encryption_key_id = ?, deleted from volumes", (Z,)),
                ("select id, volume_id, user_id, project_id, deleted from snapshots where encryption_key_id = ?", (Z,)),
                ("select id, volume_id, snapshot_id, deleted from volume_glance_metadata where `key` = ? and value = ?",
                 ("cinder_encryption_key_id", Z)),
                ("select id, volume_id, host, user_id, project_id, deleted from backups where encryption_key_id = ?", (Z,))]:
    cur.execute(q.replace("?", p), args)
    for r in cur:
        n += 1
if n == 0:
    sys.exit("baseline read no rows")
PY

# One timed run of a command: "wall cpu rss_mb" on stdout.
timed() {
  /usr/bin/time -f '%e %U %S %M' -o "$DIR/time.out" "$@" >/dev/null 2>/dev/null || true   # scan exits 1: rows remain
  read -r wall user sys rss < <(tail -1 "$DIR/time.out")
  echo "$wall $(awk "BEGIN { print $user + $sys }") $(awk "BEGIN { printf \"%.1f\", $rss / 1024 }")"
}

# This VM's speed changes from minute to minute (other tenants share its physical cores: the
# same scan has taken 2.2 s and 3.9 s of CPU ten minutes apart), so every command runs ROUNDS
# times, interleaved with the baseline, and each run is also given as a ratio to the
# baseline's run in the same round.
ROUNDS=${BENCH_ROUNDS:-5}

run() {  # KIND CONF BASELINE-TARGET
  local kind=$1 conf=$2 target=$3 r i
  local labels=("baseline: Python reads the same rows ($kind)" "keymigrate scan --all-hosts -f json"
                "keymigrate scan --host host7 -f json" "keymigrate status --all-hosts")
  local cmds=("$PY $DIR/baseline.py $kind $target" "$BIN --config-file $conf scan --all-hosts -f json"
              "$BIN --config-file $conf scan --host host7 -f json" "$BIN --config-file $conf status --all-hosts")
  for i in "${!cmds[@]}"; do ${cmds[$i]} >/dev/null 2>&1 || true; done   # warm the caches
  local results=$DIR/scan-rounds.tsv
  : >"$results"
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!cmds[@]}"; do
      printf '%s\t%s\t%s\n' "$r" "$i" "$(timed ${cmds[$i]})" >>"$results"
    done
  done
  printf '%-44s %26s %9s %7s %22s\n' "command ($ROUNDS rounds)" "wall s best/median/worst" "CPU s med" "RSS MB" "x baseline best/median"
  for i in "${!cmds[@]}"; do
    awk -F'\t' -v i="$i" -v label="${labels[$i]}" '
      { split($3, f, " "); if ($2 == 0) base[$1] = f[1]; if ($2 == i) { n++; w[n] = f[1]; c[n] = f[2]; if (f[3] > m) m = f[3]; round[n] = $1 } }
      function sort(a, k,   x, y, t) { for (x = 2; x <= k; x++) for (y = x; y > 1 && a[y-1] > a[y]; y--) { t = a[y]; a[y] = a[y-1]; a[y-1] = t } }
      END {
        for (k = 1; k <= n; k++) ratio[k] = base[round[k]] > 0 ? w[k] / base[round[k]] : 0
        sort(w, n); sort(c, n); sort(ratio, n); mid = int((n + 1) / 2)
        printf "%-44s %8.2f / %5.2f / %5.2f %9.2f %7.1f", label, w[1], w[mid], w[n], c[mid], m
        if (i > 0) printf " %10.2f / %5.2f", ratio[1], ratio[mid]
        printf "\n"
      }' "$results"
  done
}

echo "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in $BACKENDS; do
  case $kind in
    sqlite)
      DB="$DIR/cinder-$N.sqlite"
      if [ ! -f "$DB" ]; then
        rm -f "$DB.tmp"
        printf '[database]\nconnection = sqlite:///%s\n' "$DB.tmp" > "$DIR/sync.conf"
        .cache/venvs/cinder/bin/cinder-manage --config-file "$DIR/sync.conf" db sync >/dev/null 2>&1
        "$PY" bench/seed.py sqlite "$DB.tmp" "$N" 50
        mv "$DB.tmp" "$DB"
      fi
      CONF="$DIR/bench-sqlite.conf"
      printf '[database]\nconnection = sqlite:///%s\n[key_manager]\nfixed_key = %s\n' "$DB" "$KEY" > "$CONF"
      chmod 600 "$CONF"
      echo "== SQLite: $DB ($(du -m "$DB" | cut -f1) MB)"
      run sqlite "$CONF" "$DB"
      ;;
    mysql)
      scripts/testenv.sh up >/dev/null
      # shellcheck disable=SC1091
      source .cache/testenv/env.sh
      NAME="kmbench_scan_$N"
      URL="$KEYMIGRATE_TEST_MYSQL_URL/$NAME"
      # mysql://USER:PASSWORD@127.0.0.1:PORT
      IFS=' ' read -r MY_USER MY_PW MY_PORT < <(sed -E 's#^mysql://([^:]+):([^@]+)@[^:]+:([0-9]+)$#\1 \2 \3#' <<<"$KEYMIGRATE_TEST_MYSQL_URL")
      MY=("$KEYMIGRATE_TEST_MYSQL_BIN" --no-defaults -h 127.0.0.1 -P "$MY_PORT" -u "$MY_USER" "-p$MY_PW")
      if [ "$("${MY[@]}" -N -e "SHOW DATABASES LIKE '${NAME}_done'" | wc -l)" = 0 ]; then
        "${MY[@]}" -e "DROP DATABASE IF EXISTS $NAME; CREATE DATABASE $NAME CHARACTER SET utf8"
        "${MY[@]}" "$NAME" < "$KEYMIGRATE_TEST_MYSQL_SCHEMA"
        "$PY" bench/seed.py mysql "host=127.0.0.1;port=$MY_PORT;user=$MY_USER;password=$MY_PW;db=$NAME" "$N" 50
        "${MY[@]}" -e "CREATE DATABASE ${NAME}_done"
      fi
      CONF="$DIR/bench-mysql.conf"
      printf '[database]\nconnection = mysql+pymysql://%s?charset=utf8\n[key_manager]\nfixed_key = %s\n' "${URL#mysql://}" "$KEY" > "$CONF"
      chmod 600 "$CONF"
      echo "== MariaDB: $NAME on 127.0.0.1 (the client's CPU and RSS only; the server runs beside it)"
      run mysql "$CONF" "$URL"
      ;;
    *) echo "unknown backend $kind" >&2; exit 127 ;;
  esac
done
