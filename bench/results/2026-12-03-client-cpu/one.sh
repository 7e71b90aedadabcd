#!/bin/bash
# one.sh service W K [wrapper...]: one `keymigrate migrate --secret-owner service` run of K keys
# with W workers on a copy of bench/migrate.sh's 10k SQLite master database (build it first with
# `BENCH_SIZES=10000 BENCH_BACKENDS=sqlite bench/migrate.sh`), then every secret it made deleted.
# Prints /usr/bin/time's "wall user sys maxrss-KiB" and the report's counts. KM: the binary to run
# (default target/release/keymigrate); a wrapper (strace -c, perf record) goes in front of it.
# Its cinder.conf is bench/migrate.sh's last service-mode one, pointed at the copy.
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
source .cache/testenv/env.sh
export OS_AUTH_URL=$KEYMIGRATE_TEST_KEYSTONE_URL OS_USERNAME=$KEYMIGRATE_TEST_CINDER_USER OS_PASSWORD=$KEYMIGRATE_TEST_CINDER_PASSWORD OS_PROJECT_NAME=$KEYMIGRATE_TEST_CINDER_PROJECT BARBICAN_URL=$KEYMIGRATE_TEST_BARBICAN_URL
D=.cache/bench/migrate; mode=$1 w=$2 k=$3; shift 3
name=exp_$mode
cp $D/bench_master_10000.sqlite $D/$name.sqlite
sed "s#bench_km_service_w16#$name#g; s#^connection = .*#connection = sqlite:///$ROOT/$D/$name.sqlite#" $D/bench_km_service_w16.conf > $D/$name.conf
mkdir -p $D/$name.state; rm -rf $D/$name.kmstate
owner=(--secret-owner service)
/usr/bin/time -f '%e %U %S %M' -o $D/$name.time "$@" ${KM:-target/release/keymigrate} --config-file $D/$name.conf migrate --all-hosts "${owner[@]}" --max-count $k --workers $w --state-dir $D/$name.kmstate -f json > $D/$name.json 2>$D/$name.stderr || true
echo "$(tail -1 $D/$name.time) $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["report"]; print("migrated",r["migrated"],"failed",r["failed"])' $D/$name.json)"
python3 -c "import sqlite3,sys; [print(*r) for r in sqlite3.connect(sys.argv[1]).execute(\"SELECT encryption_key_id FROM volumes WHERE encryption_key_id <> '00000000-0000-0000-0000-000000000000' UNION SELECT encryption_key_id FROM snapshots WHERE encryption_key_id <> '00000000-0000-0000-0000-000000000000' UNION SELECT encryption_key_id FROM backups WHERE encryption_key_id <> '00000000-0000-0000-0000-000000000000'\")]" $D/$name.sqlite > $D/$name.ids
target/release/examples/ceiling --delete-ids $D/$name.ids --concurrency 8 >/dev/null 2>&1 || echo CLEANUP FAILED
rm -f $D/$name.sqlite
