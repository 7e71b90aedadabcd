#!/usr/bin/env bash
# The main job end to end on an embedded default: a Cinder SQLite database built by Cinder's own
# migrations and seeded with encrypted volumes on the ConfKeyManager's all-zeros key ID, a local
# Keystone, Barbican and Glance on loopback (with an image uploaded from such a volume), then
# `keymigrate scan`, `migrate` and `status`, for the database and then for the image.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/testenv.sh up
# shellcheck disable=SC1091
source "${KEYMIGRATE_TESTENV:-$ROOT/.cache/testenv}/env.sh"
cargo build --release --locked
BIN="$ROOT/target/release/keymigrate"

DEMO="$ROOT/.cache/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO"
cp "$KEYMIGRATE_TEST_SQLITE_TEMPLATE" "$DEMO/cinder.sqlite"
FIXED_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

# Three encrypted volumes on this host (one with a snapshot, one with glance metadata copied from
# an image), one on another host, and a backup: what a ConfKeyManager-era cloud looks like.
python3 - "$DEMO/cinder.sqlite" "$KEYMIGRATE_TEST_ALICE_ID" "$KEYMIGRATE_TEST_BOB_ID" "$KEYMIGRATE_TEST_DEMO_PROJECT_ID" <<'PY'
import sqlite3, sys, uuid
db, alice, bob, demo = sys.argv[1:5]
Z = "00000000-0000-0000-0000-000000000000"
c = sqlite3.connect(db)
c.execute("INSERT INTO volume_types (id, name, deleted, is_public) VALUES ('demo-vt', 'luks', 0, 1)")
def volume(host, user):
    vid = str(uuid.uuid4())
    c.execute("INSERT INTO volumes (id, deleted, host, user_id, project_id, encryption_key_id, volume_type_id, status,"
              " created_at, updated_at, use_quota) VALUES (?, 0, ?, ?, ?, ?, 'demo-vt', 'available',"
              " datetime('now'), datetime('now'), 1)", (vid, host, user, demo, Z))
    return vid
v1 = volume("demo-host@lvm#pool", alice)
v2 = volume("demo-host@lvm#pool", bob)
v3 = volume("demo-host@lvm#pool", alice)
volume("other-host@lvm#pool", bob)
c.execute("INSERT INTO snapshots (id, deleted, volume_id, user_id, project_id, encryption_key_id, volume_type_id, status,"
          " use_quota) VALUES (?, 0, ?, ?, ?, ?, 'demo-vt', 'available', 1)", (str(uuid.uuid4()), v1, alice, demo, Z))
c.execute("INSERT INTO volume_glance_metadata (deleted, volume_id, key, value) VALUES (0, ?, 'cinder_encryption_key_id', ?)", (v3, Z))
c.execute("INSERT INTO backups (id, deleted, volume_id, host, user_id, project_id, encryption_key_id, status)"
          " VALUES (?, 0, ?, 'demo-host', ?, ?, ?, 'available')", (str(uuid.uuid4()), v2, bob, demo, Z))
c.commit()
PY

PASSWORD=${KEYMIGRATE_TEST_CINDER_PASSWORD//\$/\$\$}
cat > "$DEMO/cinder.conf" <<CONF
[DEFAULT]
host = demo-host
state_path = $DEMO

[database]
connection = sqlite:///$DEMO/cinder.sqlite

[key_manager]
backend = barbican
fixed_key = $FIXED_KEY

[keystone_authtoken]
auth_type = password
auth_url = ${KEYMIGRATE_TEST_KEYSTONE_URL%/v3}
username = $KEYMIGRATE_TEST_CINDER_USER
password = $PASSWORD
user_domain_name = Default
project_name = $KEYMIGRATE_TEST_CINDER_PROJECT
project_domain_name = Default

[barbican]
barbican_region_name = RegionOne
CONF
chmod 600 "$DEMO/cinder.conf"

# An encrypted volume uploaded to Glance in the ConfKeyManager era: a private image of alice's
# project whose cinder_encryption_key_id is the all-zeros ID, as cinder-api left it.
IMAGE=$(python3 - <<'PY'
import json, os, urllib.request
env = os.environ
def call(method, url, body=None, token=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers.get("X-Subject-Token"), json.loads(r.read() or b"null")
auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "alice", "domain": {"id": "default"},
        "password": env["KEYMIGRATE_TEST_ALICE_PASSWORD"]}}}, "scope": {"project": {"id": env["KEYMIGRATE_TEST_DEMO_PROJECT_ID"]}}}}
token, _ = call("POST", env["KEYMIGRATE_TEST_KEYSTONE_URL"] + "/auth/tokens", auth)
_, image = call("POST", env["KEYMIGRATE_TEST_GLANCE_URL"] + "/v2/images", {
    "name": "demo-encrypted-volume-upload", "visibility": "private", "disk_format": "raw", "container_format": "bare",
    "cinder_encryption_key_id": "00000000-0000-0000-0000-000000000000",
    "cinder_encryption_key_deletion_policy": "on_image_deletion"}, token)
print(image["id"])
PY
)
# The test stack's Glance is shared with the tests: the demo's image goes when the demo ends
# (deleted by its owner, as a user would; its deletion policy deletes its secret too).
delete_image() {
    python3 - "$IMAGE" <<'PY' || true
import json, os, sys, urllib.request
env = os.environ
auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "alice", "domain": {"id": "default"},
        "password": env["KEYMIGRATE_TEST_ALICE_PASSWORD"]}}}, "scope": {"project": {"id": env["KEYMIGRATE_TEST_DEMO_PROJECT_ID"]}}}}
req = urllib.request.Request(env["KEYMIGRATE_TEST_KEYSTONE_URL"] + "/auth/tokens", method="POST", data=json.dumps(auth).encode())
req.add_header("Content-Type", "application/json")
with urllib.request.urlopen(req, timeout=30) as r:
    token = r.headers["X-Subject-Token"]
req = urllib.request.Request(env["KEYMIGRATE_TEST_GLANCE_URL"] + "/v2/images/" + sys.argv[1], method="DELETE")
req.add_header("X-Auth-Token", token)
urllib.request.urlopen(req, timeout=30).close()
PY
}
trap delete_image EXIT
echo "Glance image $IMAGE (alice's project) carries the all-zeros key ID"

run() { echo; echo "\$ keymigrate $*"; "$BIN" --config-file "$DEMO/cinder.conf" "$@" || echo "(exit $?)"; }
run scan
run migrate
run status
run status --all-hosts
run migrate --all-hosts
# --image-owner keeps the demo to its own project's images: the test stack's Glance is shared.
# --glance-config: the local Glance's own file, checked for its key manager.
OWNER=(--image-owner "$KEYMIGRATE_TEST_DEMO_PROJECT_ID" --glance-config "$KEYMIGRATE_TEST_GLANCE_CONF")
run status --all-hosts --images "${OWNER[@]}"
run scan --images "${OWNER[@]}"
run migrate --images "${OWNER[@]}"
run status --all-hosts --images "${OWNER[@]}" -f json
