"""Barbican's CPU per request, by kind of request and by the headers sent.

    scripts/testenv.sh up && source .cache/testenv/env.sh
    .cache/venvs/barbican/bin/python bench/request_cost.py [N] [ROUNDS]

Sends each request N times in turn (default 60) from one sequential client, and reads the CPU
time (user + system) of Barbican's gunicorn master and workers from /proc before and after:
Barbican's CPU per request, which on a shared machine is what bounds how many keys a second any
migrator gets. The variants are run ROUNDS times (default 3), interleaved, so that other load
on the machine falls on all of them alike. It shows what keymigrate's requests cost Barbican
against Cinder's (POST + PUT acl), what an `Accept` header adds, and what the listing costs that
confirms the names of a batch of keys (`GET /v1/secrets?name=keymigrate-%25&sort=created:desc
&limit=16`). A listing's cost grows with the secrets of the project, so the script first prints
how many the project holds: live, live and named `keymigrate-…`, and soft-deleted (read from
Barbican's own database, through the [database] connection of the testenv's barbican.conf; left
out if that cannot be read). Uses the testenv's cinder service user; deletes every secret it
made. Barbican must serve nothing else meanwhile: its CPU is read as a whole.
"""
import configparser
import base64
import http.client
import json
import os
import sys
import time
from urllib.parse import urlparse

ENV = os.environ
KEYSTONE = urlparse(ENV["KEYMIGRATE_TEST_KEYSTONE_URL"])
BARBICAN = urlparse(ENV["KEYMIGRATE_TEST_BARBICAN_URL"])
TESTENV = ENV.get("KEYMIGRATE_TESTENV", ".cache/testenv")
PIDFILE = os.path.join(TESTENV, "barbican", "gunicorn.pid")
BARBICAN_CONF = os.path.join(TESTENV, "barbican", "home", ".barbican", "barbican.conf")
LISTING = "/v1/secrets?name=keymigrate-%25&sort=created:desc&limit=16"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
VERSION = {"OpenStack-API-Version": "key-manager 1.1"}


def request(url, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, body=data, headers=headers or {})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, r.headers, payload


def barbican_ticks():
    master = int(open(PIDFILE).read().split()[0])
    pids = [master] + [int(p) for p in open(f"/proc/{master}/task/{master}/children").read().split()]
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def soft_deleted(project_id):
    """(secrets of the project marked deleted, rows of the whole secrets table) from Barbican's
    database, or None when it cannot be read."""
    try:
        import pymysql
        conf = configparser.ConfigParser(interpolation=None)
        conf.read(BARBICAN_CONF)
        url = urlparse(conf["database"]["connection"])
        db = pymysql.connect(host=url.hostname, port=url.port or 3306, user=url.username,
                             password=url.password, database=url.path.lstrip("/"))
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM secrets s JOIN projects p ON p.id = s.project_id"
                        " WHERE p.external_id = %s AND s.deleted", (project_id,))
            deleted = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM secrets")
            table = cur.fetchone()[0]
        db.close()
        return deleted, table
    except Exception as e:  # a census, not the measurement: say why and go on
        print(f"request_cost: soft-deleted secrets not counted ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def census(token, project_id):
    """One line: the secrets the token's project holds, which a listing's cost grows with."""
    def total(path):
        status, _, body = request(BARBICAN, "GET", path, None, {**token, **VERSION})
        return json.loads(body).get("total", 0) if status == 200 else f"HTTP {status}"
    live, named = total("/v1/secrets?limit=1"), total("/v1/secrets?name=keymigrate-%25&limit=1")
    line = f"project {project_id}: {live} live secret(s), {named} of them named keymigrate-%"
    counted = soft_deleted(project_id)
    if counted:
        line += f"; {counted[0]} soft-deleted; Barbican's secrets table: {counted[1]} row(s)"
    print(line)


def main():
    auth = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": ENV["KEYMIGRATE_TEST_CINDER_USER"], "domain": {"name": "Default"},
            "password": ENV["KEYMIGRATE_TEST_CINDER_PASSWORD"]}}},
        "scope": {"project": {"name": ENV["KEYMIGRATE_TEST_CINDER_PROJECT"], "domain": {"name": "Default"}}}}}
    status, headers, answer = request(KEYSTONE, "POST", "/v3/auth/tokens", auth, {"Content-Type": "application/json"})
    if status != 201:
        sys.exit(f"request_cost: Keystone answered {status}")
    token = {"X-Auth-Token": headers["X-Subject-Token"]}
    census(token, json.loads(answer)["token"]["project"]["id"])
    key = os.urandom(32)
    secret = {"name": "request-cost", "algorithm": "AES", "bit_length": 256, "secret_type": "symmetric",
              "payload": base64.b64encode(key).decode(), "payload_content_type": "application/octet-stream",
              "payload_content_encoding": "base64"}
    made = []

    def store(extra):
        status, _, body = request(BARBICAN, "POST", "/v1/secrets", secret,
                                  {**token, **extra, "Content-Type": "application/json"})
        made.append(json.loads(body)["secret_ref"].rsplit("/", 1)[1])
        return status

    store(VERSION)
    sid = made[0]
    acl = {"read": {"users": ["request-cost"], "project-access": True}}
    tick = os.sysconf("SC_CLK_TCK")

    def get(path, extra):
        return request(BARBICAN, "GET", path, None, {**token, **extra})[0]

    variants = [
        ("POST /v1/secrets", lambda: store(VERSION)),
        ("PUT /v1/secrets/<id>/acl", lambda: request(BARBICAN, "PUT", f"/v1/secrets/{sid}/acl", acl,
                                                     {**token, **VERSION, "Content-Type": "application/json"})[0]),
        ("GET /v1/secrets/<id>, no Accept", lambda: get(f"/v1/secrets/{sid}", VERSION)),
        ("GET /v1/secrets/<id>, Accept: application/json",
         lambda: get(f"/v1/secrets/{sid}", {**VERSION, "Accept": "application/json"})),
        ("GET /v1/secrets/<id>/payload, no Accept", lambda: get(f"/v1/secrets/{sid}/payload", VERSION)),
        ("GET /v1/secrets/<id>/payload, Accept: application/octet-stream",
         lambda: get(f"/v1/secrets/{sid}/payload", {**VERSION, "Accept": "application/octet-stream"})),
        ("GET /v1/secrets?name=keymigrate-%25&sort=created:desc&limit=16", lambda: get(LISTING, VERSION)),
    ]
    # The payload without an Accept header must be the raw key, or the comparison is moot.
    status, headers, body = request(BARBICAN, "GET", f"/v1/secrets/{sid}/payload", None, {**token, **VERSION})
    if status != 200 or body != key:
        sys.exit(f"request_cost: payload without Accept: HTTP {status}, {len(body)} bytes, not the key")
    results = {label: [] for label, _ in variants}
    try:
        for _ in range(ROUNDS):
            for label, send in variants:
                before, start = barbican_ticks(), time.monotonic()
                for _ in range(N):
                    status = send()
                    if status not in (200, 201):
                        sys.exit(f"request_cost: {label}: HTTP {status}")
                cpu = (barbican_ticks() - before) / tick / N * 1000
                results[label].append((cpu, (time.monotonic() - start) / N * 1000))
    finally:
        for secret_id in made:
            request(BARBICAN, "DELETE", f"/v1/secrets/{secret_id}", None, token)
    print(f"{'request':64} {'Barbican CPU ms/request (each round)':40} {'median':>6} {'wall ms':>8}")
    for label, rows in results.items():
        cpus = sorted(c for c, _ in rows)
        walls = sorted(w for _, w in rows)
        each = " ".join(f"{c:5.1f}" for c, _ in rows)
        print(f"{label:64} {each:40} {cpus[len(cpus) // 2]:6.1f} {walls[len(walls) // 2]:8.1f}")


if __name__ == "__main__":
    main()
