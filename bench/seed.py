"""Fills an empty Cinder database (schema from Cinder's own migrations) for bench/migrate.sh.

    seed.py sqlite PATH N [HOSTS]
    seed.py mysql  'host=…;port=…;user=…;password=…;db=…' N [HOSTS]

N volumes on the all-zeros key ID, all served by one cinder-volume (`bench@lvm#pool`, so
Cinder's startup migrator for `bench@lvm` sees every one of them), owned by 1,000 users of one
project; N/2 snapshots (of every other volume), N/4 backups and N/4 glance-metadata rows, all
on the all-zeros ID too. Columns Cinder's objects need to load a row are filled as Cinder
itself would (status, size, timestamps, volume type). Runs in Cinder's venv (PyMySQL).
With HOSTS (bench/scan.sh), volume i is on `host<i % HOSTS>@lvm#pool` and its backups on
`host<i % HOSTS>` instead, so that a `--host` scope selects 1/HOSTS of the rows.
"""
import datetime
import sys
import time
import uuid

Z = "00000000-0000-0000-0000-000000000000"
HOST = "bench@lvm#pool"
VT = "b0000000-0000-4000-8000-00000000be4c"  # the volume type (LUKS) of every volume


def rows(n, hosts=0):
    def host(i):
        return "host%d@lvm#pool" % (i % hosts) if hosts else HOST

    def backup_host(i):
        return "host%d" % (i % hosts) if hosts else "bench"

    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    vols = [str(uuid.uuid4()) for _ in range(n)]
    volumes = [(v, now, now, 0, host(i), "user-%d" % (i % 1000), "proj", Z, VT, "available",
                "detached", 1, "nova", "vol-%d" % i, 0, 0, 1) for i, v in enumerate(vols)]
    snapshots = [(str(uuid.uuid4()), now, now, 0, vols[i * 2], "user-%d" % ((i * 2) % 1000), "proj", Z,
                  VT, "available", "100%", 1, "snap-%d" % i, 1) for i in range(n // 2)]
    backups = [(str(uuid.uuid4()), now, now, 0, vols[i * 4], backup_host(i * 4), "user-%d" % ((i * 4) % 1000), "proj", Z,
                "available", 1, "backup-%d" % i, "cinder.backup.drivers.nfs.NFSBackupDriver")
               for i in range(n // 4)]
    glance = [(now, now, 0, vols[i * 4 + 1], "cinder_encryption_key_id", Z) for i in range(n // 4)]
    return volumes, snapshots, backups, glance


VOLUMES = ("INSERT INTO volumes (id, created_at, updated_at, deleted, host, user_id, project_id, encryption_key_id,"
           " volume_type_id, status, attach_status, size, availability_zone, display_name, bootable, multiattach,"
           " use_quota) VALUES (%s)" % ", ".join(["{p}"] * 17))
SNAPSHOTS = ("INSERT INTO snapshots (id, created_at, updated_at, deleted, volume_id, user_id, project_id,"
             " encryption_key_id, volume_type_id, status, progress, volume_size, display_name, use_quota)"
             " VALUES (%s)" % ", ".join(["{p}"] * 14))
BACKUPS = ("INSERT INTO backups (id, created_at, updated_at, deleted, volume_id, host, user_id, project_id,"
           " encryption_key_id, status, size, display_name, service) VALUES (%s)" % ", ".join(["{p}"] * 13))
GLANCE = ("INSERT INTO volume_glance_metadata (created_at, updated_at, deleted, volume_id, `key`, value)"
          " VALUES (%s)" % ", ".join(["{p}"] * 6))
VTYPE = ("INSERT INTO volume_types (id, name, deleted, is_public, created_at) VALUES"
         " ('%s', 'luks', 0, 1, CURRENT_TIMESTAMP)" % VT)
ENCRYPTION = ("INSERT INTO encryption (encryption_id, volume_type_id, cipher, key_size, provider, control_location,"
              " deleted, created_at) VALUES ('b0000000-0000-4000-8000-00000000e4c0', '%s', 'aes-xts-plain64', 256, 'luks',"
              " 'front-end', 0, CURRENT_TIMESTAMP)" % VT)


def main():
    backend, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hosts = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    t = time.time()
    volumes, snapshots, backups, glance = rows(n, hosts)
    if backend == "sqlite":
        import sqlite3
        c = sqlite3.connect(target)
        c.execute("PRAGMA journal_mode=OFF")
        c.execute("PRAGMA synchronous=OFF")
        p = "?"
        cur = c
        glance_sql = GLANCE.replace("`key`", '"key"')
    else:
        import pymysql
        kv = dict(x.split("=", 1) for x in target.split(";"))
        c = pymysql.connect(host=kv["host"], port=int(kv["port"]), user=kv["user"], password=kv["password"],
                            database=kv["db"], autocommit=False)
        cur = c.cursor()
        cur.execute("SET foreign_key_checks = 0, unique_checks = 0")
        p = "%s"
        glance_sql = GLANCE
    cur.execute(VTYPE)
    cur.execute(ENCRYPTION)
    for sql, data in ((VOLUMES, volumes), (SNAPSHOTS, snapshots), (BACKUPS, backups), (glance_sql, glance)):
        sql = sql.format(p=p)
        for i in range(0, len(data), 5000):
            cur.executemany(sql, data[i:i + 5000])
    c.commit()
    c.close()
    print("seeded %d volumes, %d snapshots, %d backups, %d glance rows in %.1f s"
          % (len(volumes), len(snapshots), len(backups), len(glance), time.time() - t), file=sys.stderr)


if __name__ == "__main__":
    main()
