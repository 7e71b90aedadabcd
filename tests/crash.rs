//! What the infrastructure around a run can do to it: the database connection dropped mid-run,
//! the state directory's disk filling up, Cinder writing the same rows, kills at random moments
//! of a long run with several workers, and several runs on disjoint hosts at once. After each,
//! the invariant holds (checked through Barbican by `Fixture::check`).

use std::process::{Child, Command};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use rand::Rng;

use crate::migrate::Fixture;
use crate::support::cloud::Cloud;
use crate::support::*;

/// Starts `keymigrate migrate` in the background with the fixture's configuration.
fn spawn(f: &Fixture, extra: &[&str], vars: &[(&str, &str)]) -> Child {
    let mut args = vec!["--config-file", f.conf(), "migrate"];
    args.extend(extra);
    f.w.spawn_env(&args, vars)
}

/// Waits for a background run; its output is checked for leaks like every other run's.
fn finish(f: &Fixture, child: Child) -> Output {
    f.w.finish(child)
}

/// Waits until a run pauses at its `wait:` fault point.
fn await_gate(f: &Fixture, gate: &std::path::Path) {
    let reached = std::path::PathBuf::from(format!("{}.reached", gate.display()));
    for _ in 0..1200 {
        if reached.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the run never reached its pause point ({:?})", f.db.backend);
}

#[derive(QueryableByName)]
struct ProcessId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Drops every other connection to the test's database, as a server restart or a network cut
/// would, without disturbing the other tests sharing the server.
fn drop_connections(db: &CinderDb) -> usize {
    let mut conn = db.conn();
    match db.backend {
        Backend::Mysql => {
            let ids: Vec<ProcessId> = diesel::sql_query(
                "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
            )
            .load(&mut conn)
            .expect("list connections");
            for p in &ids {
                conn.batch_execute(&format!("KILL CONNECTION {}", p.id)).expect("kill connection");
            }
            ids.len()
        }
        Backend::Postgres => {
            let ids: Vec<ProcessId> = diesel::sql_query(
                "SELECT CAST(pg_terminate_backend(pid) AS INTEGER)::BIGINT AS id FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .load(&mut conn)
            .expect("terminate connections");
            ids.len()
        }
        Backend::Sqlite => 0,
    }
}

#[test]
fn a_dropped_database_connection_stops_the_run_and_the_next_run_finishes() {
    let cloud = Cloud::new();
    for backend in [Backend::Mysql, Backend::Postgres] {
        let mut f = Fixture::new(backend, "password");
        f.seed_host("hostL");
        f.seed_host("hostL");
        let gate = f.w.path("gate");
        let state = f.state.to_str().expect("path").to_string();
        let spec = format!("verified@2=wait:{}", gate.display());
        let child = spawn(&f, &["--state-dir", &state, "--host", "hostL", "--workers", "1"], &[("KEYMIGRATE_FAULT", &spec)]);
        await_gate(&f, &gate);
        assert_eq!(drop_connections(&f.db), 1, "keymigrate's connection to {backend:?}");
        std::fs::write(&gate, "go").expect("gate");
        let out = finish(&f, child);
        // Stopped with one line that names the database (password redacted), not a retry loop.
        assert_eq!(out.code, 2, "{backend:?}: {}", out.stderr);
        let error = out.stderr.lines().filter(|l| l.starts_with("keymigrate: error:")).collect::<Vec<_>>();
        assert_eq!(error.len(), 1, "{}", out.stderr);
        assert!(error[0].contains("kmtest:***@127.0.0.1"), "{}", error[0]);
        // The verified secret waits in the journal; the next run puts it in.
        let out = f.migrate(&["--host", "hostL", "-f", "json"]);
        out.assert_code(0);
        assert!(out.json()["report"]["recovered"].as_u64() >= Some(1), "{}", out.stdout);
        f.check(&cloud);
    }
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: std::path::PathBuf) -> SmallDisk {
        std::fs::create_dir_all(&path).expect("mkdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "keymigrate-test", path.to_str().expect("path")])
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a 512 KiB tmpfs needs root (the test script runs as root in CI)");
        SmallDisk(path)
    }

    /// Fills the disk to the last byte.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.0.join("filler")).expect("create filler");
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_disk_stops_the_run_and_leaves_no_secret_behind() {
    let cloud = Cloud::new();
    let mut f = Fixture::new(Backend::Sqlite, "password");
    f.seed_host("hostM");
    f.seed_host("hostM");
    let disk = SmallDisk::mount(f.w.path("small"));
    let state = disk.0.join("state");
    let state_s = state.to_str().expect("path").to_string();
    let gate = f.w.path("gate");
    // Paused once the first unit is done and its journal entry gone: then the disk fills up,
    // and the next unit's entry, written before its secret is stored, cannot be.
    let spec = format!("finished=wait:{}", gate.display());
    let child = spawn(&f, &["--state-dir", &state_s, "--host", "hostM", "--workers", "1"], &[("KEYMIGRATE_FAULT", &spec)]);
    await_gate(&f, &gate);
    disk.fill();
    let before = f.db.fingerprint();
    std::fs::write(&gate, "go").expect("gate");
    let out = finish(&f, child);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let error = out.stderr.lines().filter(|l| l.starts_with("keymigrate: error:")).collect::<Vec<_>>();
    assert_eq!(error.len(), 1, "{}", out.stderr);
    assert!(error[0].contains("No space left on device") && error[0].contains(&state_s), "{}", error[0]);
    assert_eq!(f.db.fingerprint(), before, "nothing is written after the disk filled up");
    let token = cloud.cinder();
    let left: Vec<String> = f.db.keys("volumes").into_iter().filter(|(_, k)| k.as_deref() == Some(ZERO)).map(|(id, _)| id).collect();
    assert!(!left.is_empty());
    for id in &left {
        assert_eq!(cloud.named_like(&token, &format!("keymigrate-volume-{id}-")), Vec::<String>::new(), "a secret stored without a journal entry");
    }
    // The next run, with room again, finishes: one secret per row, none unreferenced.
    disk.free();
    f.state = state;
    f.migrate(&["--host", "hostM"]).assert_code(0);
    f.check(&cloud);
}

#[test]
fn cinder_writing_the_same_volumes_during_a_run_keeps_its_changes() {
    let cloud = Cloud::new();
    for backend in [Backend::Sqlite, Backend::Mysql] {
        let mut f = Fixture::new(backend, "password");
        for _ in 0..4 {
            f.seed_host("hostN");
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writes = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                // cinder-volume updating status and updated_at, as attach/detach do.
                let mut conn = f.db.conn();
                if backend == Backend::Sqlite {
                    conn.batch_execute("PRAGMA busy_timeout = 30000").expect("busy timeout");
                }
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    conn.batch_execute(&format!(
                        "UPDATE volumes SET status = 'status-{n}', updated_at = CURRENT_TIMESTAMP; \
                         UPDATE snapshots SET progress = '{n}%', updated_at = CURRENT_TIMESTAMP"
                    ))
                    .expect("cinder's write");
                    std::thread::sleep(Duration::from_millis(5));
                }
                n
            });
            let out = f.migrate(&["--host", "hostN"]);
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            out.assert_code(0);
            writer.join().expect("writer")
        });
        assert!(writes > 3, "the writer barely ran ({writes} writes)");
        // Every volume carries the writer's last status: the swap touched only the key.
        let mut conn = f.db.conn();
        #[derive(QueryableByName)]
        struct Status {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            status: Option<String>,
        }
        let statuses: Vec<Status> = diesel::sql_query("SELECT status FROM volumes").load(&mut conn).expect("statuses");
        assert!(statuses.iter().all(|s| s.status.as_deref() == Some(&format!("status-{writes}"))), "{backend:?}");
        f.check(&cloud);
    }
}

#[test]
fn kills_at_random_moments_of_a_long_run_with_workers_lose_nothing() {
    let cloud = Cloud::new();
    let seed: u64 = rand::rng().random();
    eprintln!("random kill seed: {seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    for backend in [Backend::Sqlite, Backend::Mysql] {
        let mut f = Fixture::new(backend, "password");
        for _ in 0..8 {
            f.seed_host("hostO");
        }
        let state = f.state.to_str().expect("path").to_string();
        // 16 volumes of hostO and 8 of hostOX start on the all-zeros key.
        let zeros = |f: &Fixture| f.db.keys("volumes").iter().filter(|(_, k)| k.as_deref() == Some(ZERO)).count();
        let mut kills = 0;
        for _ in 0..4 {
            let start = zeros(&f);
            let mut child = spawn(&f, &["--state-dir", &state, "--host", "hostO", "--workers", "4"], &[]);
            // Kill at a random moment after the run has written its first row, so that the kill
            // lands mid-run however slow the machine is, with units in flight at any step.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while zeros(&f) == start && child.try_wait().expect("try_wait").is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
            if child.try_wait().expect("try_wait").is_none() {
                child.kill().expect("SIGKILL");
                kills += 1;
            }
            let _ = finish(&f, child);
        }
        eprintln!("{backend:?}: {kills} kill(s) landed mid-run");
        assert!(kills >= 1, "no kill landed mid-run ({backend:?})");
        assert!(zeros(&f) < 24, "the killed runs migrated nothing ({backend:?})");
        f.migrate(&["--host", "hostO"]).assert_code(0);
        f.check(&cloud);
    }
}

#[test]
fn runs_on_disjoint_hosts_at_once_each_finish_their_own() {
    let cloud = Cloud::new();
    for backend in [Backend::Sqlite, Backend::Mysql] {
        let mut f = Fixture::new(backend, "password");
        let hosts = ["hostP1", "hostP2", "hostP3", "hostP4"];
        for h in hosts {
            f.seed_host(h);
        }
        let state = f.state.to_str().expect("path").to_string();
        let runs: Vec<Child> = hosts.iter().map(|h| spawn(&f, &["--state-dir", &state, "--host", h], &[])).collect();
        for run in runs {
            let out = finish(&f, run);
            assert_eq!(out.code, 0, "{backend:?}: {}", out.stderr);
        }
        f.check(&cloud);
    }
}
