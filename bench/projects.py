"""The Keystone projects of bench/migrate.sh's project-mode contenders, made idempotently.

    projects.py COUNT DIR

Run with the testenv's settings in the environment (`source .cache/testenv/env.sh`): as
Keystone's admin (KEYMIGRATE_TEST_ADMIN_PASSWORD), makes sure that
* projects keymigrate-bench-0 … keymigrate-bench-<COUNT-1> exist in the Default domain, and
  writes their IDs to DIR/projects.ids, one a line;
* a user keymigrate-bench exists and holds `member` in each of them: the identity of the
  ceiling's `project` sequence and of the clean-up, which delete secrets with a token of each
  project. Its password is DIR/bench-user.pw (0600), made on the first run;
* DIR/clouds.yaml (0600) has cloud `bench-admin`: Keystone's admin, password authentication,
  project admin, the identity `keymigrate migrate --secret-owner project --os-cloud bench-admin`
  acts with. It holds no role in the bench projects, so keymigrate grants itself `member` there
  for each run and revokes that grant, as in a real cloud.
Nothing is deleted: the projects and the user are kept for the next run. Retries Keystone's
5xx answers (its SQLite database is busy when tests run beside the benchmark).
"""
import http.client
import json
import os
import secrets
import sys
import time
from urllib.parse import quote, urlparse

ENV = os.environ
KEYSTONE = urlparse(ENV["KEYMIGRATE_TEST_KEYSTONE_URL"])  # …/v3
USER = "keymigrate-bench"


def call(method, path, token=None, body=None):
    """(status, headers, parsed JSON or None) for `path` under /v3; retried on 5xx."""
    for attempt in range(10):
        conn = http.client.HTTPConnection(KEYSTONE.hostname, KEYSTONE.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        try:
            conn.request(method, KEYSTONE.path.rstrip("/") + path,
                         body=json.dumps(body) if body is not None else None, headers=headers)
            r = conn.getresponse()
            raw = r.read()
        except OSError:
            time.sleep(0.25 * (attempt + 1))
            continue
        finally:
            conn.close()
        if r.status >= 500:
            time.sleep(0.25 * (attempt + 1))
            continue
        return r.status, r.headers, json.loads(raw) if raw else None
    sys.exit(f"projects.py: Keystone: no answer to {method} {path}")


def expect(status, ok, what, answer):
    if status not in ok:
        sys.exit(f"projects.py: {what}: HTTP {status} {answer}")


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def main():
    count, out = int(sys.argv[1]), sys.argv[2]
    admin_pw = ENV["KEYMIGRATE_TEST_ADMIN_PASSWORD"]
    auth = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": admin_pw}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    status, headers, answer = call("POST", "/auth/tokens", body=auth)
    expect(status, (201,), "admin token", answer)
    token = headers["X-Subject-Token"]

    ids = []
    for i in range(count):
        name = f"keymigrate-bench-{i}"
        status, _, answer = call("GET", f"/projects?name={quote(name)}&domain_id=default", token)
        expect(status, (200,), f"find project {name}", answer)
        if answer["projects"]:
            ids.append(answer["projects"][0]["id"])
            continue
        body = {"project": {"name": name, "domain_id": "default",
                            "description": "bench/migrate.sh: rows of the project-mode contenders"}}
        status, _, answer = call("POST", "/projects", token, body)
        expect(status, (201,), f"create project {name}", answer)
        ids.append(answer["project"]["id"])

    pw_file = os.path.join(out, "bench-user.pw")
    status, _, answer = call("GET", f"/users?name={USER}&domain_id=default", token)
    expect(status, (200,), f"find user {USER}", answer)
    if not os.path.exists(pw_file) or not answer["users"]:
        write_private(pw_file, secrets.token_urlsafe(24))
    password = open(pw_file).read().strip()
    if answer["users"]:
        user_id = answer["users"][0]["id"]
        # The password file is the truth: set it again (cheap, and mends a lost file).
        status, _, answer = call("PATCH", f"/users/{user_id}", token, {"user": {"password": password}})
        expect(status, (200,), f"set the password of {USER}", answer)
    else:
        body = {"user": {"name": USER, "domain_id": "default", "password": password,
                         "description": "bench/migrate.sh: the ceiling's and the clean-up's identity"}}
        status, _, answer = call("POST", "/users", token, body)
        expect(status, (201,), f"create user {USER}", answer)
        user_id = answer["user"]["id"]
    status, _, answer = call("GET", "/roles?name=member", token)
    expect(status, (200,), "find role member", answer)
    member = answer["roles"][0]["id"]
    for pid in ids:
        status, _, answer = call("PUT", f"/projects/{pid}/users/{user_id}/roles/{member}", token)
        expect(status, (201, 204), f"grant member to {USER} in {pid}", answer)

    write_private(os.path.join(out, "projects.ids"), "".join(f"{pid}\n" for pid in ids))
    root = ENV["KEYMIGRATE_TEST_KEYSTONE_URL"].rstrip("/").removesuffix("/v3")
    # JSON strings are YAML strings, and keep any character of the password intact.
    write_private(os.path.join(out, "clouds.yaml"), (
        "clouds:\n  bench-admin:\n    auth_type: password\n    auth:\n"
        f"      auth_url: {json.dumps(root)}\n      username: admin\n      password: {json.dumps(admin_pw)}\n"
        "      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n    interface: public\n"))
    print(f"{len(ids)} bench project(s), user {USER} ({user_id}) a member of each", file=sys.stderr)


if __name__ == "__main__":
    main()
