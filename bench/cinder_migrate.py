"""Cinder's own migrator, driven as cinder-volume's startup drives it (bench/migrate.sh).

    cinder_migrate.py CINDER_CONF HOST@BACKEND MAX_KEYS

Runs in Cinder's venv (cinder==29.0.0). What cinder-volume does, in order: eventlet monkey
patching, oslo.config from the same cinder.conf keymigrate reads ([key_manager] backend =
barbican, fixed_key, [keystone_authtoken] password auth, [barbican] region), the tooz
coordinator (file://$state_path), then VolumeManager.init_host: load the host's volumes
(VolumeList.get_all with the host filter), turn them into a VolumeMigrationList, and call
cinder.keymgr.migration.migrate_fixed_key(volumes=...). The one change: only the first
MAX_KEYS entries are handed over, so every contender of the benchmark migrates the same
number of keys.

Prints one RESULT line. Its keys/s, wall and CPU are those of Cinder's migration loop alone
(KeyMigrator._migrate_keys: one POST + one ACL per volume, then the row and its snapshots),
the most favourable way to count for Cinder; loading the volumes, importing Cinder and the
status count Cinder runs afterwards are printed apart (load_s, status_s, process_*).
"""
from cinder import monkey_patch

monkey_patch.patch()

import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402

from cinder.common import config  # noqa: E402,F401  (registers Cinder's global options)
from cinder import context  # noqa: E402
from cinder import coordination  # noqa: E402
from cinder import objects  # noqa: E402
from cinder.keymgr import migration  # noqa: E402
from cinder.volume import volume_migration  # noqa: E402

T_START = time.monotonic()


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    conf_file, host, max_keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
    CONF = cfg.CONF
    logging.register_options(CONF)
    objects.register_all()
    CONF(['--config-file', conf_file], project='cinder')
    logging.setup(CONF, 'cinder')
    coordination.COORDINATOR.start()
    ctxt = context.get_admin_context()

    t0, c0 = time.monotonic(), cpu()
    # VolumeManager._get_my_volumes without a cluster: filters={'host': self.host}
    volumes = objects.VolumeList.get_all(ctxt, filters={'host': host})
    to_migrate = volume_migration.VolumeMigrationList()
    to_migrate.append(volumes, ctxt)
    del volumes
    load_s = time.monotonic() - t0
    zero = '00000000-0000-0000-0000-000000000000'
    chosen = [v for v in to_migrate if v.encryption_key_id == zero][:max_keys]
    del to_migrate

    timing = {}
    orig_migrate_keys = migration.KeyMigrator._migrate_keys
    orig_status = migration.KeyMigrator._log_migration_status

    def timed_migrate_keys(self, volumes, backups):
        t, c = time.monotonic(), cpu()
        try:
            return orig_migrate_keys(self, volumes, backups)
        finally:
            timing['loop_s'] = time.monotonic() - t
            timing['loop_cpu_s'] = cpu() - c

    def timed_status(self):
        t = time.monotonic()
        try:
            return orig_status(self)
        finally:
            timing['status_s'] = time.monotonic() - t

    migration.KeyMigrator._migrate_keys = timed_migrate_keys
    migration.KeyMigrator._log_migration_status = timed_status

    t1 = time.monotonic()
    migration.migrate_fixed_key(volumes=chosen, conf=CONF)
    call_s = time.monotonic() - t1

    migrated = sum(1 for v in chosen if v.encryption_key_id != zero)
    loop_s = timing.get('loop_s', float('nan'))
    loop_cpu = timing.get('loop_cpu_s', float('nan'))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT contender=cinder keys=%d keys_per_s=%.2f wall_s=%.2f cpu_ms_per_key=%.3f rss_mb=%.1f "
          "errors=%d load_s=%.2f call_s=%.2f status_s=%.2f process_wall_s=%.2f process_cpu_s=%.2f"
          % (migrated, migrated / loop_s if loop_s else 0, loop_s, 1000.0 * loop_cpu / max(migrated, 1),
             rss_mb, len(chosen) - migrated, load_s, call_s, timing.get('status_s', float('nan')),
             time.monotonic() - T_START, cpu()))
    sys.stdout.flush()
    coordination.COORDINATOR.stop()


if __name__ == '__main__':
    main()
