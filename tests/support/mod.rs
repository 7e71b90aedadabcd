//! Test support: a real Cinder database (built by Cinder's own migrations) on SQLite, MariaDB
//! or PostgreSQL, seeded per test; the real `keymigrate` binary run against it; and a client for
//! the real Keystone and Barbican that `scripts/testenv.sh up` started on loopback. Real Nova
//! databases (an API database and its cells) are in [`nova`].
//!
//! Every run of the binary is checked for leaked secrets: the fixed key (hex, base64), the
//! database and Keystone passwords never appear in its output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use rand::Rng;

/// Held by every test that runs dpkg (installs or removes keymigrate's package): one at a time.
static DPKG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// keymigrate's package on this machine for the length of one test: dpkg is held meanwhile,
/// and when dropped (also by a panic) the package is purged and only then the next dpkg test
/// may go.
pub struct InstalledPackage {
    _dpkg: std::sync::MutexGuard<'static, ()>,
}

impl InstalledPackage {
    /// Holds dpkg; the test installs the package itself (`dpkg -i`, or a playbook).
    pub fn hold() -> InstalledPackage {
        InstalledPackage { _dpkg: DPKG.lock().unwrap_or_else(std::sync::PoisonError::into_inner) }
    }

    /// `dpkg-query`'s status and version of the package (`install ok installed 0.1.0-1`).
    pub fn status() -> String {
        let out = std::process::Command::new("dpkg-query")
            .args(["-W", "-f", "${Status} ${Version}", "keymigrate"])
            .output()
            .expect("dpkg-query");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl InstalledPackage {
    /// Purges the package now, dpkg still held: what the test then checks is not another
    /// test's installation.
    pub fn purge(&self) {
        let _ = std::process::Command::new("dpkg").args(["--purge", "keymigrate"]).output();
    }
}

impl Drop for InstalledPackage {
    fn drop(&mut self) {
        self.purge();
    }
}

/// A file `scripts/test.sh` builds and names in the environment variable `var` (the release
/// binary, the SQLite-only binary, the .deb), as an absolute path; `None` (said on stderr, past
/// the harness's capture, so a passing run still says it) when it is unset outside CI. In CI
/// an unset variable fails the test: what it checks must be checked. `made_by` says what sets it.
pub fn built_by_test_script(var: &str, test: &str, made_by: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{var}={} is not a file", path.display());
            Some(std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{var}={}: {e}", path.display())))
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: in CI {test} must run (scripts/test.sh sets it after {made_by})")
        }
        None => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "NOT RUN: {test} needs {var} (scripts/test.sh sets it after {made_by})");
            None
        }
    }
}

pub const ZERO: &str = "00000000-0000-0000-0000-000000000000";

/// A variable `scripts/testenv.sh up` exports; the suite cannot run without it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts the real servers")
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
    Postgres,
}

pub const BACKENDS: [Backend; 3] = [Backend::Sqlite, Backend::Mysql, Backend::Postgres];

/// A fresh Cinder database for one test, dropped afterwards.
pub struct CinderDb {
    pub backend: Backend,
    /// `[database] connection` as an operator writes it (SQLAlchemy form).
    pub url: String,
    /// The URL diesel connects with, for the test's own queries.
    diesel_url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl CinderDb {
    pub fn new(backend: Backend) -> CinderDb {
        let name = format!("km_{}", rand::rng().random_range(0..u64::MAX) % 1_000_000_000_000);
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("cinder.sqlite");
                std::fs::copy(env("KEYMIGRATE_TEST_SQLITE_TEMPLATE"), &path).expect("copy the SQLite template");
                CinderDb {
                    backend,
                    url: format!("sqlite:///{}", path.display()),
                    diesel_url: path.display().to_string(),
                    name,
                    _dir: Some(dir),
                }
            }
            Backend::Mysql => {
                let admin = env("KEYMIGRATE_TEST_MYSQL_URL");
                let mut conn = MysqlConnection::establish(&admin).expect("connect to MariaDB");
                conn.batch_execute(&format!("CREATE DATABASE {name} CHARACTER SET utf8")).expect("create database");
                let schema = std::fs::read_to_string(env("KEYMIGRATE_TEST_MYSQL_SCHEMA")).expect("schema dump");
                let diesel_url = format!("{admin}/{name}");
                let mut db = MysqlConnection::establish(&diesel_url).expect("connect");
                db.batch_execute(&format!("SET FOREIGN_KEY_CHECKS=0;\n{schema}\nSET FOREIGN_KEY_CHECKS=1;"))
                    .expect("load Cinder's schema");
                let url = format!("mysql+pymysql://kmtest:kmtest-pw@127.0.0.1:13306/{name}?charset=utf8");
                CinderDb { backend, url, diesel_url, name, _dir: None }
            }
            Backend::Postgres => {
                let admin = env("KEYMIGRATE_TEST_PG_URL");
                let mut conn = PgConnection::establish(&format!("{admin}/postgres")).expect("connect to PostgreSQL");
                conn.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE cinder_template")).expect("create database");
                let diesel_url = format!("{admin}/{name}");
                let url = format!("postgresql+psycopg2://kmtest:kmtest-pw@127.0.0.1:15432/{name}");
                CinderDb { backend, url, diesel_url, name, _dir: None }
            }
        }
        .with_volume_type()
    }

    /// A SQLite Cinder database that stores text as UTF-16 (`PRAGMA encoding`), with the
    /// template's tables and indexes: SQLAlchemy never makes one, but nothing stops an operator.
    pub fn new_sqlite_utf16() -> CinderDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cinder-utf16.sqlite");
        let mut conn = SqliteConnection::establish(&path.display().to_string()).expect("create");
        conn.batch_execute("PRAGMA encoding = 'UTF-16le'").expect("set the encoding");
        #[derive(QueryableByName)]
        struct Schema {
            #[diesel(sql_type = diesel::sql_types::Text)]
            sql: String,
        }
        let mut template = SqliteConnection::establish(&env("KEYMIGRATE_TEST_SQLITE_TEMPLATE")).expect("open the template");
        let schema = diesel::sql_query(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid",
        )
        .load::<Schema>(&mut template)
        .expect("read the template's schema");
        for s in schema {
            conn.batch_execute(&s.sql).unwrap_or_else(|e| panic!("{}: {e}", s.sql));
        }
        #[derive(QueryableByName)]
        struct Encoding {
            #[diesel(sql_type = diesel::sql_types::Text)]
            encoding: String,
        }
        let e = diesel::sql_query("PRAGMA encoding").get_result::<Encoding>(&mut conn).expect("encoding");
        assert_eq!(e.encoding, "UTF-16le");
        CinderDb {
            backend: Backend::Sqlite,
            url: format!("sqlite:///{}", path.display()),
            diesel_url: path.display().to_string(),
            name: "utf16".into(),
            _dir: Some(dir),
        }
        .with_volume_type()
    }

    fn with_volume_type(self) -> CinderDb {
        self.exec("INSERT INTO volume_types (id, name, deleted, is_public) VALUES ('kmtest-vt', 'kmtest', false, true)");
        self
    }

    pub fn conn(&self) -> keymigrate::db::AnyConnection {
        use keymigrate::db::AnyConnection;
        match self.backend {
            Backend::Sqlite => {
                // Tests read while a run writes: wait for its locks, as keymigrate does.
                let mut c = SqliteConnection::establish(&self.diesel_url).expect("connect");
                c.batch_execute("PRAGMA busy_timeout = 30000").expect("busy timeout");
                AnyConnection::Sqlite(c)
            }
            Backend::Mysql => AnyConnection::Mysql(MysqlConnection::establish(&self.diesel_url).expect("connect")),
            Backend::Postgres => AnyConnection::Postgresql(PgConnection::establish(&self.diesel_url).expect("connect")),
        }
    }

    pub fn exec(&self, sql: &str) {
        self.conn().batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A live volume. `key` is its encryption_key_id (None for NULL).
    pub fn volume(&self, id: &str, host: Option<&str>, user: Option<&str>, key: Option<&str>) -> &Self {
        self.volume_full(id, host, None, user, key, false)
    }

    pub fn volume_full(&self, id: &str, host: Option<&str>, cluster: Option<&str>, user: Option<&str>, key: Option<&str>, deleted: bool) -> &Self {
        self.exec(&format!(
            "INSERT INTO volumes (id, deleted, host, cluster_name, user_id, project_id, encryption_key_id, volume_type_id, status, \
             created_at, updated_at, use_quota) VALUES ({}, {deleted}, {}, {}, {}, 'proj-1', {}, 'kmtest-vt', 'available', \
             '2025-01-01 00:00:00', '2025-01-01 00:00:00', true)",
            q(Some(id)), q(host), q(cluster), q(user), q(key)
        ));
        self
    }

    pub fn snapshot(&self, id: &str, volume_id: &str, user: Option<&str>, key: Option<&str>, deleted: bool) -> &Self {
        self.exec(&format!(
            "INSERT INTO snapshots (id, deleted, volume_id, user_id, project_id, encryption_key_id, volume_type_id, status, \
             created_at, updated_at, use_quota) VALUES ({}, {deleted}, {}, {}, 'proj-1', {}, 'kmtest-vt', 'available', \
             '2025-01-01 00:00:00', '2025-01-01 00:00:00', true)",
            q(Some(id)), q(Some(volume_id)), q(user), q(key)
        ));
        self
    }

    pub fn backup(&self, id: &str, volume_id: &str, host: Option<&str>, user: Option<&str>, key: Option<&str>, deleted: bool) -> &Self {
        self.exec(&format!(
            "INSERT INTO backups (id, deleted, volume_id, host, user_id, project_id, encryption_key_id, status, \
             created_at, updated_at) VALUES ({}, {deleted}, {}, {}, {}, 'proj-1', {}, 'available', \
             '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
            q(Some(id)), q(Some(volume_id)), q(host), q(user), q(key)
        ));
        self
    }

    /// A glance-metadata row of a volume (`volume_id`) or of a snapshot (`snapshot_id`).
    pub fn glance(&self, id: i32, volume_id: Option<&str>, snapshot_id: Option<&str>, key: &str, value: &str, deleted: bool) -> &Self {
        self.exec(&format!(
            "INSERT INTO volume_glance_metadata (id, deleted, volume_id, snapshot_id, {k}, value, created_at, updated_at) \
             VALUES ({id}, {deleted}, {}, {}, {}, {}, '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
            q(volume_id), q(snapshot_id), q(Some(key)), q(Some(value)),
            k = if self.backend == Backend::Mysql { "`key`" } else { "key" }
        ));
        self
    }

    /// `encryption_key_id` (or glance `value`) of every row of a table, by id.
    pub fn keys(&self, table: &str) -> Vec<(String, Option<String>)> {
        use keymigrate::db::schema::*;
        let mut c = self.conn();
        match table {
            "volumes" => volumes::table.select((volumes::id, volumes::encryption_key_id)).order(volumes::id).load(&mut c),
            "snapshots" => snapshots::table.select((snapshots::id, snapshots::encryption_key_id)).order(snapshots::id).load(&mut c),
            "backups" => backups::table.select((backups::id, backups::encryption_key_id)).order(backups::id).load(&mut c),
            "volume_glance_metadata" => volume_glance_metadata::table
                .select((volume_glance_metadata::id, volume_glance_metadata::value))
                .order(volume_glance_metadata::id)
                .load::<(i32, Option<String>)>(&mut c)
                .map(|v| v.into_iter().map(|(i, k)| (i.to_string(), k)).collect()),
            other => panic!("unknown table {other}"),
        }
        .expect("read keys")
    }

    pub fn key_of(&self, table: &str, id: &str) -> Option<String> {
        self.keys(table).into_iter().find(|(i, _)| i == id).and_then(|(_, k)| k)
    }

    /// A full dump of the four tables, to prove a command wrote nothing: [`CinderDb::rows`] as
    /// one string.
    pub fn fingerprint(&self) -> String {
        format!("{:?}", self.rows())
    }

    /// Every row of the four tables, by (table, id): every column keymigrate's schema declares
    /// (ids, hosts, owners, projects, the key ID or glance key and value, `deleted`,
    /// `updated_at`), written out so that two equal strings mean the same bytes.
    pub fn rows(&self) -> std::collections::BTreeMap<(String, String), String> {
        use keymigrate::db::schema::*;
        type Text = Option<String>;
        type Stamp = Option<chrono::NaiveDateTime>;
        // id, deleted, the text columns, updated_at.
        type Row<Id> = (Id, Option<bool>, Text, Text, Text, Text, Stamp);
        type VolumeRow = (String, Option<bool>, Text, Text, Text, Text, Text, Stamp);
        let mut c = self.conn();
        let mut out = std::collections::BTreeMap::new();
        let v: Vec<VolumeRow> = volumes::table
            .select((
                volumes::id,
                volumes::deleted,
                volumes::host,
                volumes::cluster_name,
                volumes::user_id,
                volumes::project_id,
                volumes::encryption_key_id,
                volumes::updated_at,
            ))
            .load(&mut c)
            .expect("volumes");
        for r in v {
            out.insert(("volumes".to_string(), r.0.clone()), format!("{r:?}"));
        }
        let s: Vec<Row<String>> = snapshots::table
            .select((
                snapshots::id,
                snapshots::deleted,
                snapshots::volume_id,
                snapshots::user_id,
                snapshots::project_id,
                snapshots::encryption_key_id,
                snapshots::updated_at,
            ))
            .load(&mut c)
            .expect("snapshots");
        for r in s {
            out.insert(("snapshots".to_string(), r.0.clone()), format!("{r:?}"));
        }
        let b: Vec<Row<String>> = backups::table
            .select((
                backups::id,
                backups::deleted,
                backups::host,
                backups::user_id,
                backups::project_id,
                backups::encryption_key_id,
                backups::updated_at,
            ))
            .load(&mut c)
            .expect("backups");
        for r in b {
            out.insert(("backups".to_string(), r.0.clone()), format!("{r:?}"));
        }
        let g: Vec<Row<i32>> = volume_glance_metadata::table
            .select((
                volume_glance_metadata::id,
                volume_glance_metadata::deleted,
                volume_glance_metadata::volume_id,
                volume_glance_metadata::snapshot_id,
                volume_glance_metadata::key,
                volume_glance_metadata::value,
                volume_glance_metadata::updated_at,
            ))
            .load(&mut c)
            .expect("glance");
        for r in g {
            out.insert(("volume_glance_metadata".to_string(), r.0.to_string()), format!("{r:?}"));
        }
        out
    }
}

impl Drop for CinderDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        match self.backend {
            Backend::Sqlite => {}
            Backend::Mysql => {
                if let Ok(mut c) = MysqlConnection::establish(&env("KEYMIGRATE_TEST_MYSQL_URL")) {
                    let _ = c.batch_execute(&sql);
                }
            }
            Backend::Postgres => {
                if let Ok(mut c) = PgConnection::establish(&format!("{}/postgres", env("KEYMIGRATE_TEST_PG_URL"))) {
                    let _ = c.batch_execute(&format!("{sql} WITH (FORCE)"));
                }
            }
        }
    }
}

/// An SQL literal or NULL.
/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("path")
}

pub fn q(v: Option<&str>) -> String {
    match v {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".into(),
    }
}

/// A random 32-byte fixed_key, as hex.
pub fn random_key() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// A place for one test's files (config, state directory, HOME).
pub struct Workdir {
    pub dir: tempfile::TempDir,
    /// Strings that must never appear in any output of the binary.
    pub secrets: Vec<String>,
    /// The fixed keys' raw bytes, which must not appear either (in any output, log or journal).
    pub raw_secrets: Vec<Vec<u8>>,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Workdir {
    pub fn new() -> Workdir {
        let mut secrets = vec!["kmtest-pw".to_string()];
        for var in ["KEYMIGRATE_TEST_CINDER_PASSWORD", "KEYMIGRATE_TEST_APPCRED_SECRET", "KEYMIGRATE_TEST_ALICE_PASSWORD"] {
            if let Ok(v) = std::env::var(var) {
                secrets.push(v);
            }
        }
        Workdir { dir: tempfile::tempdir().expect("tempdir"), secrets, raw_secrets: Vec::new() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Registers a fixed key so every later run is checked for it (hex either case, base64).
    pub fn guard_key(&mut self, hex_key: &str) {
        let bytes = hex::decode(hex_key).expect("hex");
        self.secrets.push(hex_key.to_lowercase());
        self.secrets.push(hex_key.to_uppercase());
        self.secrets.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        self.secrets.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes));
        self.raw_secrets.push(bytes);
    }

    /// A cinder.conf for `db` with `fixed_key` and anything in `extra` (whole sections).
    pub fn conf(&mut self, db: &CinderDb, fixed_key: Option<&str>, extra: &str) -> PathBuf {
        self.conf_url(&db.url, fixed_key, extra)
    }

    /// A cinder.conf whose `[database] connection` is `url`, otherwise as [`Workdir::conf`].
    pub fn conf_url(&mut self, url: &str, fixed_key: Option<&str>, extra: &str) -> PathBuf {
        let key = match fixed_key {
            Some(k) => {
                if !k.is_empty() && hex::decode(k).is_ok() {
                    self.guard_key(k);
                }
                format!("fixed_key = {k}\n")
            }
            None => String::new(),
        };
        self.write(
            "cinder.conf",
            &format!("[DEFAULT]\nhost = testhost\n\n[database]\nconnection = {url}\n\n[key_manager]\nbackend = barbican\n{key}\n{extra}"),
        )
    }

    /// Runs the binary with `args`, HOME in the workdir and no OS_* variables from outside.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.run_binary(Path::new(env!("CARGO_BIN_EXE_keymigrate")), args, vars)
    }

    /// Runs another build of keymigrate (the release binary) the way [`Workdir::run_env`] runs
    /// the tests' own build, which has the fault points.
    pub fn run_binary(&self, binary: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.checked(self.command(binary, args, vars).output().expect("run keymigrate"))
    }

    /// Starts keymigrate in the background as [`Workdir::run_env`] runs it; [`Workdir::finish`]
    /// waits for it.
    pub fn spawn_env(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = self.command(Path::new(env!("CARGO_BIN_EXE_keymigrate")), args, vars);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn keymigrate")
    }

    /// Waits for a background run; its output is checked like every other run's.
    pub fn finish(&self, child: std::process::Child) -> Output {
        self.checked(child.wait_with_output().expect("wait"))
    }

    /// The command every run of the tests uses: the work directory as home and working
    /// directory, no `RUST_LOG` or `OS_*` from the test's own environment, then `vars`.
    fn command(&self, binary: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(binary);
        cmd.args(args).env("HOME", self.dir.path()).env_remove("RUST_LOG").current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        // The tests written for Cinder's model (secrets in the service project, seeded with
        // made-up project IDs) keep it; the tests of secrets in the rows' own projects say
        // `--secret-owner project`, which wins over the variable.
        cmd.env("KEYMIGRATE_SECRET_OWNER", "service");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// A finished run's output, checked for leaked secrets (raw and as text) and panics.
    fn checked(&self, out: std::process::Output) -> Output {
        self.assert_no_raw_leak(&out.stdout, "stdout");
        self.assert_no_raw_leak(&out.stderr, "stderr");
        let output = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_leak(&output.stdout, "stdout");
        self.assert_no_leak(&output.stderr, "stderr");
        assert!(!output.stderr.contains("panicked"), "keymigrate panicked:\n{}", output.stderr);
        output
    }

    pub fn assert_no_leak(&self, text: &str, what: &str) {
        for s in &self.secrets {
            assert!(!text.contains(s.as_str()), "{what} leaks a secret:\n{text}");
        }
    }

    /// Every file under the workdir's state directory is scanned too.
    /// The fixed key's raw bytes, anywhere in `bytes`.
    pub fn assert_no_raw_leak(&self, bytes: &[u8], what: &str) {
        for key in &self.raw_secrets {
            assert!(!bytes.windows(key.len()).any(|w| w == key.as_slice()), "{what} holds the fixed key's raw bytes");
        }
    }

    pub fn assert_state_clean(&self, state: &Path) {
        for entry in walk(state) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            self.assert_no_raw_leak(&bytes, &entry.display().to_string());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            self.assert_no_leak(&text, &entry.display().to_string());
        }
    }
}

/// Every journal entry under a state directory, with its text: each per-item file (`*.json`:
/// images, Nova instances, grants, units of earlier versions) and, from the unit journal's
/// group files (`*.jsonl`), each unit's latest line. A group file lives until its last unit is
/// finished, so with several workers it may still hold units finished since; with one worker
/// each file holds one unit.
pub fn journal_entries(state: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut units = std::collections::BTreeMap::new();
    let mut files = walk(state);
    files.sort();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if p.extension().is_some_and(|x| x == "json") {
            out.push((p, text));
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                // A unit the file marks finished is no longer in flight.
                if v.get("done").is_some() {
                    units.remove(&(v["done"]["table"].to_string(), v["done"]["id"].to_string()));
                } else {
                    units.insert((v["table"].to_string(), v["id"].to_string()), (p.clone(), line.to_string()));
                }
            }
        }
    }
    out.extend(units.into_values());
    out
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

impl Output {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// The error line: one line, on stderr, naming the problem.
    #[track_caller]
    pub fn assert_error(&self, code: i32, needle: &str) -> &Self {
        self.assert_code(code);
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("keymigrate: error:")).collect();
        assert_eq!(errors.len(), 1, "expected one error line:\n{}", self.stderr);
        assert!(errors[0].contains(needle), "error line lacks {needle:?}: {}", errors[0]);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

pub mod castellan;
pub mod cloud;
pub mod glance;
pub mod nova;
pub mod proxy;
pub mod stall;
pub mod tenancy;
pub mod tls;

/// A random UUID-shaped id, so tests sharing one Barbican never collide.
pub fn uuid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `[keystone_authtoken]` and `[barbican]` for the cinder service user on the test Keystone.
pub fn service_sections(auth: &str) -> String {
    let password = env("KEYMIGRATE_TEST_CINDER_PASSWORD").replace('$', "$$");
    let keystone = env("KEYMIGRATE_TEST_KEYSTONE_URL");
    let versionless = keystone.trim_end_matches("/v3");
    match auth {
        "password" => format!(
            "[keystone_authtoken]\nauth_type = password\nauth_url = {versionless}\nusername = {}\npassword = {password}\n\
             user_domain_name = Default\nproject_name = {}\nproject_domain_name = Default\n\n[barbican]\nbarbican_region_name = RegionOne\n",
            env("KEYMIGRATE_TEST_CINDER_USER"),
            env("KEYMIGRATE_TEST_CINDER_PROJECT")
        ),
        "appcred" => format!(
            "[keystone_authtoken]\nauth_type = v3applicationcredential\nauth_url = {keystone}\napplication_credential_id = {}\n\
             application_credential_secret = {}\n\n[barbican]\nbarbican_region_name = RegionOne\n",
            env("KEYMIGRATE_TEST_APPCRED_ID"),
            env("KEYMIGRATE_TEST_APPCRED_SECRET").replace('$', "$$")
        ),
        other => panic!("unknown auth {other}"),
    }
}
