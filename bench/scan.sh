#!/usr/bin/env bash
# Benchmark: `keymigrate scan --all-hosts -f json` and `status --all-hosts` on a Cinder SQLite
# database built by Cinder's own migrations and filled with N volumes on the all-zeros key ID
# (default 1,000,000), plus N/2 snapshots, N/4 backups and N/4 glance-metadata rows (about 2N
# rows). Prints wall time and peak RSS of each command, and the same for a baseline in the same
# run: SQLite's own CLI-free cost of reading the same rows (`SELECT count(*)` through Python).
# Usage: bench/scan.sh [N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-1000000}
scripts/testenv.sh install >/dev/null
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
BIN="$ROOT/target/release/keymigrate"
DIR="$ROOT/.cache/bench"
mkdir -p "$DIR"
DB="$DIR/cinder-$N.sqlite"
if [ ! -f "$DB" ]; then
  rm -f "$DB.tmp"
  printf '[database]\nconnection = sqlite:///%s\n' "$DB.tmp" > "$DIR/sync.conf"
  .cache/venvs/cinder/bin/cinder-manage --config-file "$DIR/sync.conf" db sync >/dev/null 2>&1
  .cache/venvs/cinder/bin/python - "$DB.tmp" "$N" <<'PY'
import sqlite3, sys, uuid, time
path, n = sys.argv[1], int(sys.argv[2])
Z = "00000000-0000-0000-0000-000000000000"
c = sqlite3.connect(path)
c.execute("PRAGMA journal_mode=OFF"); c.execute("PRAGMA synchronous=OFF")
c.execute("INSERT INTO volume_types (id, name, deleted, is_public) VALUES ('bench-vt', 'luks', 0, 1)")
t = time.time()
vols = [str(uuid.uuid4()) for _ in range(n)]
c.executemany("INSERT INTO volumes (id, deleted, host, user_id, project_id, encryption_key_id, volume_type_id, status, use_quota)"
              " VALUES (?, 0, ?, 'user-' || ?, 'proj', ?, 'bench-vt', 'available', 1)",
              ((v, "host%d@lvm#pool" % (i % 50), i % 1000, Z) for i, v in enumerate(vols)))
c.executemany("INSERT INTO snapshots (id, deleted, volume_id, user_id, project_id, encryption_key_id, volume_type_id, status, use_quota)"
              " VALUES (?, 0, ?, 'u', 'proj', ?, 'bench-vt', 'available', 1)",
              ((str(uuid.uuid4()), vols[i * 2], Z) for i in range(n // 2)))
c.executemany("INSERT INTO backups (id, deleted, volume_id, host, user_id, project_id, encryption_key_id, status)"
              " VALUES (?, 0, ?, ?, 'u', 'proj', ?, 'available')",
              ((str(uuid.uuid4()), vols[i * 4], "host%d" % (i % 50), Z) for i in range(n // 4)))
c.executemany("INSERT INTO volume_glance_metadata (deleted, volume_id, key, value) VALUES (0, ?, 'cinder_encryption_key_id', ?)",
              ((vols[i * 4 + 1], Z) for i in range(n // 4)))
c.commit()
print("seeded %d volumes (+%d snapshots, %d backups, %d glance rows) in %.1f s" % (n, n // 2, n // 4, n // 4, time.time() - t))
PY
  mv "$DB.tmp" "$DB"
fi
KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
printf '[database]\nconnection = sqlite:///%s\n[key_manager]\nfixed_key = %s\n' "$DB" "$KEY" > "$DIR/bench.conf"
chmod 600 "$DIR/bench.conf"

measure() {  # label, command...
  local label=$1; shift
  "$@" >/dev/null 2>/dev/null || true   # warm the page cache
  local out
  /usr/bin/time -f '%e %M' -o "$DIR/time.out" "$@" >/dev/null 2>/dev/null || true   # scan exits 1: rows remain
  out=$(tail -1 "$DIR/time.out")
  printf '%-44s %8s s %8s MB\n' "$label" "${out% *}" "$(awk "BEGIN { printf \"%.1f\", ${out#* } / 1024 }")"
}
rows=$(python3 -c "import sqlite3; c=sqlite3.connect('$DB'); print(sum(c.execute('select count(*) from '+t).fetchone()[0] for t in ['volumes','snapshots','backups','volume_glance_metadata']))")
echo "database: $DB ($rows rows in the four tables)"
measure "baseline: python sqlite3 reads the same rows" python3 -c "
import sqlite3; c=sqlite3.connect('$DB'); Z='0'*8+'-0000-0000-0000-'+'0'*12
for q in ['select id, host, cluster_name, user_id, project_id from volumes where deleted=0 and encryption_key_id=?',
          'select s.id, s.volume_id, s.user_id, v.host from snapshots s left join volumes v on v.id=s.volume_id where s.deleted=0 and s.encryption_key_id=?',
          'select id, host, user_id from backups where deleted=0 and encryption_key_id=?']:
    for r in c.execute(q, (Z,)): pass"
measure "keymigrate scan --all-hosts -f json" "$BIN" --config-file "$DIR/bench.conf" scan --all-hosts -f json
measure "keymigrate scan --host host7 -f json" "$BIN" --config-file "$DIR/bench.conf" scan --host host7 -f json
measure "keymigrate status --all-hosts" "$BIN" --config-file "$DIR/bench.conf" status --all-hosts
