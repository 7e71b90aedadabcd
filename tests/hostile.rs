//! Hostile input: configuration files, option values, database URLs and row values an operator
//! (or a long-lived cloud) can produce. Bad configuration is one error line and the documented
//! exit code, with nothing written and no secret echoed; odd rows are migrated byte for byte or
//! reported, never guessed at.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::cloud::Cloud;
use crate::support::*;

/// Every command that reads `fixed_key`, run on all hosts with `conf` (and a state directory
/// for those that write one).
fn every_command(w: &Workdir, conf: &std::path::Path) -> Vec<(&'static str, Output)> {
    let st = w.path("st");
    ["scan", "status", "migrate", "verify", "rollback"]
        .into_iter()
        .map(|cmd| {
            let mut args = vec!["--config-file", arg(conf), cmd, "--all-hosts"];
            if matches!(cmd, "migrate" | "rollback") {
                args.extend(["--state-dir", arg(&st)]);
            }
            (cmd, w.run(&args))
        })
        .collect()
}

/// A one-volume SQLite Cinder database, and a guarded key for it.
fn sqlite_with_a_volume() -> (CinderDb, String) {
    let db = CinderDb::new(Backend::Sqlite);
    db.volume("v1", Some("h"), Some("u"), Some(ZERO));
    (db, random_key())
}

#[test]
fn hostile_configuration_files_exit_127_and_write_nothing() {
    let (db, key) = sqlite_with_a_volume();
    let mut w = Workdir::new();
    w.guard_key(&key);
    let before = db.fingerprint();
    let good = format!("[database]\nconnection = {}\n[key_manager]\nfixed_key = {key}\n", db.url);
    let scan = |name: &str| w.run(&["--config-file", arg(&w.path(name)), "scan", "--all-hosts"]);

    // 1 MiB of binary garbage, valid UTF-8 garbage, and garbage after a good file.
    let garbage: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(w.path("bin.conf"), &garbage).expect("write");
    scan("bin.conf").assert_error(127, "bin.conf: line");
    let text: String = (0..50_000u32).filter_map(|i| char::from_u32(i.wrapping_mul(7919) % 0x3000 + 1)).collect();
    std::fs::write(w.path("text.conf"), &text).expect("write");
    scan("text.conf").assert_error(127, "text.conf: line");
    let mut tail = good.clone().into_bytes();
    tail.extend_from_slice(b"\x00\xff\xfe junk");
    std::fs::write(w.path("tail.conf"), tail).expect("write");
    scan("tail.conf").assert_error(127, "tail.conf: line 5");

    // A 4 MiB line: as an option keymigrate does not read it is harmless, as a broken line it is
    // named by number, and neither is echoed.
    let huge = "x".repeat(4 << 20);
    w.write("huge-ok.conf", &format!("[DEFAULT]\nunrelated = {huge}\n{good}"));
    scan("huge-ok.conf").assert_code(1);
    w.write("huge-bad.conf", &format!("{good}[DEFAULT]\n{huge}\n"));
    let out = scan("huge-bad.conf");
    out.assert_error(127, "huge-bad.conf: line 6: No ':' or '=' found in assignment");
    assert!(out.stderr.len() < 4096, "the line was echoed: {} bytes", out.stderr.len());
    w.write("huge-host.conf", &format!("[DEFAULT]\nhost = {huge}\n{good}"));
    w.run(&["--config-file", arg(&w.path("huge-host.conf")), "scan"]).assert_code(0);

    // Structure: an assignment before any section, an unclosed section, a continuation with
    // nothing to continue, a byte order mark.
    for (name, text, needle) in [
        ("nosection.conf", format!("fixed_key = {key}\n{good}"), "nosection.conf: line 1: Section must be started"),
        ("unclosed.conf", format!("{good}[database\n"), "unclosed.conf: line 5: Invalid section"),
        ("cont.conf", format!("{good}\n  {key}\n"), "cont.conf: line 6: Unexpected continuation line"),
        ("bom.conf", format!("\u{feff}{good}"), "byte order mark"),
    ] {
        w.write(name, &text);
        scan(name).assert_error(127, needle);
    }

    // Interpolation: loops (also through a secret), unknown names, a `$` in a password.
    for (name, text, needle) in [
        ("loop1.conf", format!("{good}[DEFAULT]\nhost = $host\n"), "interpolation loop"),
        (
            "loop2.conf",
            format!("{good}[database]\nconnection = {}?x=$DEFAULT.my_ip\n[DEFAULT]\nmy_ip = $database.connection\n", db.url),
            "interpolation loop",
        ),
        ("deep.conf", format!("{good}[DEFAULT]\nhost = ${{cluster}}\ncluster = ${{my_ip}}\nmy_ip = $$ok-$host\n"), "interpolation loop"),
        ("unknown.conf", format!("{good}[DEFAULT]\nhost = node-${{nosuch.option}}\n"), "$nosuch.option"),
    ] {
        w.write(name, &text);
        w.run(&["--config-file", arg(&w.path(name)), "scan"]).assert_error(127, needle);
    }

    // Quotes: one matching pair is removed, as oslo.config does; a mismatched pair is kept and
    // makes the key invalid, without showing it.
    w.write("quoted.conf", &good.replace(&format!("fixed_key = {key}"), &format!("fixed_key = \"{key}\"")));
    scan("quoted.conf").assert_code(1);
    w.write("single.conf", &good.replace(&format!("fixed_key = {key}"), &format!("fixed_key = '{key}'")));
    scan("single.conf").assert_code(1);
    w.write("mismatch.conf", &good.replace(&format!("fixed_key = {key}"), &format!("fixed_key = \"{key}'")));
    scan("mismatch.conf").assert_error(127, "[key_manager] fixed_key");

    // Missing sections: no [key_manager] is Cinder's "fixed_key is not in use" (rows remain:
    // exit 2); no [database] is Cinder's default SQLite file, which does not exist here.
    w.write("nokm.conf", &format!("[database]\nconnection = {}\n", db.url));
    let out = scan("nokm.conf");
    out.assert_code(2);
    assert!(out.stderr.contains("fixed_key is not in use"), "{}", out.stderr);
    w.write("nodb.conf", &format!("[DEFAULT]\nstate_path = {}\n[key_manager]\nfixed_key = {key}\n", w.path("st").display()));
    scan("nodb.conf").assert_error(2, "no such file");
    w.write("empty.conf", "");
    scan("empty.conf").assert_code(2);

    assert_eq!(db.fingerprint(), before);
}

#[test]
fn a_dollar_in_a_password_is_never_echoed() {
    let (db, key) = sqlite_with_a_volume();
    let mut w = Workdir::new();
    w.guard_key(&key);
    let base = format!("[database]\nconnection = {}\n[key_manager]\nfixed_key = {key}\n", db.url);
    // `pa$word`: `$word` is not an option, so Cinder would fail too. The error names the option,
    // and neither half of the password.
    w.secrets.extend(["Zq9pa".to_string(), "wordZq9".to_string()]);
    for (auth, option) in [("password", "password"), ("appcred", "application_credential_secret")] {
        let sections: String = service_sections(auth)
            .lines()
            .map(|l| if l.starts_with(&format!("{option} = ")) { format!("{option} = Zq9pa$wordZq9\n") } else { format!("{l}\n") })
            .collect();
        let conf = w.write("c.conf", &format!("{base}{sections}"));
        let out = w.run(&["--config-file", arg(&conf), "migrate", "--all-hosts", "--state-dir", arg(&w.path("st"))]);
        out.assert_error(127, &format!("[keystone_authtoken] {option}"));
    }
    // In the database URL, on a real server: `$$` is a literal `$`, and the refused password
    // appears nowhere.
    for (url, needle) in [
        ("mysql+pymysql://kmtest:Zq9pa$wordZq9@127.0.0.1:13306/cinder", "[database] connection"),
        ("postgresql://kmtest:Zq9pa${word}Zq9@127.0.0.1:15432/cinder", "[database] connection"),
    ] {
        let conf = w.write("c.conf", &format!("[database]\nconnection = {url}\n[key_manager]\nfixed_key = {key}\n"));
        w.run(&["--config-file", arg(&conf), "scan", "--all-hosts"]).assert_error(127, needle);
    }
    w.secrets.push("Zq9pa$wordZq9".into());
    w.secrets.push("Zq9pa$$wordZq9".into());
    for (url, needle) in [
        ("mysql+pymysql://kmtest:Zq9pa$$wordZq9@127.0.0.1:13306/cinder", "Access denied"),
        ("postgresql://kmtest:Zq9pa$$wordZq9@127.0.0.1:15432/cinder", "password authentication failed"),
        ("postgresql://kmtest:Zq9pa\\$wordZq9@127.0.0.1:15432/cinder", "password authentication failed"),
    ] {
        let conf = w.write("c.conf", &format!("[database]\nconnection = {url}\n[key_manager]\nfixed_key = {key}\n"));
        let out = w.run(&["--config-file", arg(&conf), "scan", "--all-hosts"]);
        out.assert_error(2, needle);
        assert!(out.stderr.contains(":***@"), "{}", out.stderr);
    }
    assert_eq!(db.key_of("volumes", "v1").as_deref(), Some(ZERO));
}

#[test]
fn hostile_fixed_keys_are_named_never_echoed() {
    let (db, _) = sqlite_with_a_volume();
    let long = "ab".repeat(15_001);
    let odd_long = "a".repeat(1 << 20) + "b";
    // Empty is "not set", as for Cinder's migrator: rows remain but fixed_key is gone (exit 2).
    for empty in ["", "\"\"", "   ", "''"] {
        let mut w = Workdir::new();
        let conf = w.conf(&db, Some(empty), "");
        for (cmd, out) in every_command(&w, &conf) {
            assert_eq!(out.code, 2, "{cmd} with fixed_key = {empty:?}: {}", out.stderr);
            assert!(out.stderr.contains("fixed_key"), "{cmd}: {}", out.stderr);
        }
    }
    let cases: [(&str, &str); 7] = [
        ("0x00112233445566778899aabbccddeeff", "hexadecimal"),
        ("00112233445566778899aabbccddeeff\u{feff}", "even number"),
        ("٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥", "hexadecimal"),
        ("ｆｆｆｆｆｆｆｆｆｆｆｆｆｆｆｆ", "hexadecimal"),
        ("00112233 44556677", "even number"),
        (&long, "15000 bytes"),
        (&odd_long, "even number"),
    ];
    for (bad, needle) in cases {
        let mut w = Workdir::new();
        if bad.trim().len() >= 4 {
            w.secrets.push(bad.trim().to_string());
            let digits: String = bad.chars().filter(char::is_ascii_hexdigit).take(16).collect();
            if digits.len() >= 8 {
                w.secrets.push(digits);
            }
        }
        let conf = w.conf(&db, Some(bad), "");
        for (_, out) in every_command(&w, &conf) {
            out.assert_error(127, "[key_manager] fixed_key");
            out.assert_error(127, needle);
        }
    }
    assert_eq!(db.key_of("volumes", "v1").as_deref(), Some(ZERO));
}

#[test]
fn hostile_database_urls_exit_127_or_2_and_never_show_the_password() {
    let mut w = Workdir::new();
    let key = random_key();
    w.guard_key(&key);
    w.secrets.push("Zq9-secret".into());
    let usage = [
        ("mongodb://kmtest:Zq9-secret@127.0.0.1/cinder", "unsupported database type 'mongodb'"),
        ("mysql+pymysql://kmtest:Zq9-secret@127.0.0.1:port/cinder", "port"),
        ("mysql+pymysql://kmtest:Zq9-secret@127.0.0.1:65536/cinder", "port"),
        ("postgresql://kmtest:Zq9-secret@127.0.0.1:0/cinder", "port"),
        ("postgresql://kmtest:Zq9-secret@127.0.0.1:-1/cinder", "port"),
        ("mysql+pymysql://kmtest:Zq9-secret@127.0.0.1:13306", "names no database"),
        ("mysql+pymysql://kmtest:Zq9@secret@127.0.0.1:13306/cinder", "%40"),
        ("mysql+pymysql://kmtest:Zq9-secret@127.0.0.1 13306/cinder", "host"),
        ("sqlite://", "in-memory"),
        ("Zq9-secret", "not a database URL"),
    ];
    let scan = |url: &str| {
        let conf = w.write("c.conf", &format!("[database]\nconnection = {url}\n[key_manager]\nfixed_key = {key}\n"));
        w.run(&["--config-file", arg(&conf), "scan", "--all-hosts"])
    };
    for (url, needle) in usage {
        let out = scan(url);
        out.assert_error(127, "[database] connection");
        out.assert_error(127, needle);
    }
    let unusable = [
        ("mysql+pymysql://kmtest:Zq9-secret@127.0.0.1:13306/cinder", "Access denied"),
        ("mysql+pymysql://kmtest:kmtest-pw@127.0.0.1:13306/km_no_such_db", "km_no_such_db"),
        ("postgresql://kmtest:kmtest-pw@127.0.0.1:15432/km_no_such_db", "km_no_such_db"),
        ("postgresql://kmtest:kmtest-pw@127.0.0.2:1/cinder", "127.0.0.2"),
    ];
    for (url, needle) in unusable {
        let out = scan(url);
        out.assert_error(2, needle);
        assert!(out.stderr.contains(":***@"), "{}", out.stderr);
    }
}

/// A database that is not (or no longer) Cinder's, on every backend: exit 2 naming the table,
/// and no write.
#[test]
fn databases_without_cinders_tables_or_with_the_wrong_column_types_are_refused() {
    for backend in BACKENDS {
        let mut w = Workdir::new();
        let key = random_key();
        let db = CinderDb::new(backend);
        db.volume("v1", Some("h"), Some("u"), Some(ZERO));
        let conf = w.conf(&db, Some(&key), "");
        db.exec("ALTER TABLE backups RENAME TO backups_gone");
        let out = w.run(&["--config-file", arg(&conf), "scan", "--all-hosts"]);
        out.assert_error(2, "Cinder's table `backups`");
        db.exec("ALTER TABLE backups_gone RENAME TO backups");

        // encryption_key_id as an integer: an integer 0 must never pass for the all-zeros ID
        // (MySQL compares '00000000-…' = 0 as numbers), and nothing may be written.
        let retype = match backend {
            Backend::Mysql => "ALTER TABLE backups MODIFY encryption_key_id INTEGER",
            Backend::Postgres => "ALTER TABLE backups ALTER COLUMN encryption_key_id TYPE INTEGER USING NULL",
            Backend::Sqlite => {
                "CREATE TABLE backups_int AS SELECT * FROM backups; DROP TABLE backups; \
                 CREATE TABLE backups (created_at DATETIME, updated_at DATETIME, deleted_at DATETIME, deleted BOOLEAN, \
                 id VARCHAR(36) PRIMARY KEY, volume_id VARCHAR(36), user_id VARCHAR(255), project_id VARCHAR(255), \
                 host VARCHAR(255), encryption_key_id INTEGER, status VARCHAR(255))"
            }
        };
        db.exec(retype);
        db.exec(
            "INSERT INTO backups (id, deleted, volume_id, host, user_id, project_id, encryption_key_id, status) \
             VALUES ('b-int', false, 'v1', 'h', 'u', 'p', 0, 'available')",
        );
        let before = db.keys("volumes");
        let out = w.run(&["--config-file", arg(&conf), "scan", "--all-hosts", "-f", "json"]);
        match out.code {
            2 => {
                out.assert_error(2, "backups");
            }
            _ => {
                out.assert_code(1);
                let doc = out.json();
                assert_eq!(doc["counts"]["backups"]["total"], 0, "{backend:?}: an integer 0 counted as the all-zeros ID");
                assert_eq!(doc["counts"]["volumes"]["total"], 1, "{backend:?}");
            }
        }
        let out = w.run(&["--config-file", arg(&conf), "migrate", "--dry-run", "--all-hosts", "--state-dir", arg(&w.path("st"))]);
        assert!(matches!(out.code, 1 | 2), "{backend:?}: {}", out.stderr);
        assert_eq!(db.keys("volumes"), before, "{backend:?}");
    }
}

/// The host of every hostile row in scope: `_` and `%` are LIKE wildcards.
const HOSTILE_HOST: &str = "h_1%x";

/// Rows a long-lived cloud accumulates, on the real Cinder schema of one backend: ids that are
/// not UUIDs, blank owners, hosts full of LIKE wildcards, `#`, `@` and Unicode, and key IDs that
/// only MySQL's collation (case-insensitive, trailing spaces ignored) would call all zeros. Every
/// row is on host [`HOSTILE_HOST`] (or a look-alike of it), and the cinder.conf is the service
/// user's.
struct HostileRows {
    db: CinderDb,
    w: Workdir,
    key: String,
    conf: std::path::PathBuf,
    state: std::path::PathBuf,
    /// The volume with Unicode and a quote in its id; it has glance rows and a blank-owner
    /// snapshot and backup.
    v_uni: String,
    /// Glance row ids: `glance(1)` is the migrated one, on `v_uni`.
    glance_base: i32,
    /// Rows `migrate` must move, byte-exact all zeros before, each to a secret alice reads.
    migrated: Vec<(&'static str, String)>,
    /// Rows on the all-zeros ID in scope that nobody owns (a blank or NULL `user_id`).
    blocked: Vec<(&'static str, String)>,
    /// Volumes on the all-zeros ID whose host only looks like [`HOSTILE_HOST`].
    near: Vec<String>,
    /// Rows in scope whose key ID is not the all-zeros ID but looks like it.
    look_alike_keys: usize,
}

impl HostileRows {
    fn seed(backend: Backend) -> HostileRows {
        let alice = env("KEYMIGRATE_TEST_ALICE_ID");
        let db = CinderDb::new(backend);
        let mut w = Workdir::new();
        let key = random_key();
        let conf = w.conf(&db, Some(&key), &service_sections("password"));
        let state = w.path("state");
        let r = &uuid()[..6];
        let host = HOSTILE_HOST;
        let z = Some(ZERO);
        let (v_uni, v_upper, v_long) = (format!("völ €'{r}"), uuid().to_uppercase(), format!("vol {r} with spaces"));
        let long_host = format!("{host}@{}", "b".repeat(248));
        db.volume(&v_uni, Some(&format!("{host}@lvm#p")), Some(&alice), z)
            .volume(&v_upper, Some(&format!("{host}#p")), Some(&alice), z)
            .volume(&v_long, Some(&long_host), Some(&alice), z);
        // Out of scope of `--host h_1%x`: case, trailing space, wildcard and Unicode look-alikes.
        let mut near = Vec::new();
        for (id, h) in [("n-case", "H_1%X@lvm#p"), ("n-space", "h_1%x @lvm#p"), ("n-under", "hx1%x@lvm"), ("n-pct", "h_1abcx"), ("n-uni", "h_1%x\u{301}@l")] {
            let id = format!("{id}-{r}");
            db.volume(&id, Some(h), Some(&alice), z);
            near.push(id);
        }
        // Nobody to grant the secret to.
        let mut blocked = Vec::new();
        for (id, user) in [("b-null", None), ("b-empty", Some("")), ("b-blank", Some("   ")), ("b-tab", Some("\t"))] {
            let id = format!("{id}-{r}");
            db.volume(&id, Some(&format!("{host}@lvm#p")), user, z);
            blocked.push(("volumes", id));
        }
        db.snapshot(&format!("s-blank-{r}"), &v_uni, Some("  "), z, false);
        db.backup(&format!("k-blank-{r}"), &v_uni, Some(host), Some("  "), z, false);
        db.backup(&format!("k-ok-{r}"), &v_uni, Some(host), Some(&alice), z, false);
        blocked.push(("snapshots", format!("s-blank-{r}")));
        blocked.push(("backups", format!("k-blank-{r}")));
        // Key IDs that are not the all-zeros ID byte for byte.
        let odd_keys = ["not-a-uuid", "", "00000000-0000-0000-0000-00000000000", "０0000000-0000-0000-0000-000000000000"];
        for (i, k) in odd_keys.iter().enumerate() {
            db.volume(&format!("o{i}-{r}"), Some(&format!("{host}@lvm#p")), Some(&alice), Some(k));
        }
        // A trailing space: SQLite keeps it (then it is not all zeros); MySQL and PostgreSQL trim
        // it to fit varchar(36) (then it is). Whatever is stored decides, exactly.
        let spaced = format!("o-sp-{r}");
        db.volume(&spaced, Some(&format!("{host}@lvm#p")), Some(&alice), Some(&format!("{ZERO} ")));
        let spaced_is_zero = db.key_of("volumes", &spaced).as_deref() == Some(ZERO);
        // glance metadata of a migrated volume: text columns keep trailing spaces everywhere.
        let glance_base = 9000;
        let g = |n: i32| glance_base + n;
        db.glance(g(1), Some(&v_uni), None, "cinder_encryption_key_id", ZERO, false)
            .glance(g(2), Some(&v_uni), None, "cinder_encryption_key_id", &format!("{ZERO} "), false)
            .glance(g(3), Some(&v_uni), None, "CINDER_ENCRYPTION_KEY_ID", ZERO, false)
            .glance(g(4), Some(&v_uni), None, "cinder_encryption_key_id ", ZERO, false)
            .glance(g(5), Some(&v_long), None, "cinder_encryption_key_id", &format!("{ZERO}  "), false);
        // The four odd keys, the spaced one unless it was trimmed, glance 2 and 5.
        let look_alike_keys = odd_keys.len() + usize::from(!spaced_is_zero) + 2;

        let mut migrated: Vec<(&str, String)> =
            vec![("volumes", v_uni.clone()), ("volumes", v_upper), ("volumes", v_long), ("backups", format!("k-ok-{r}"))];
        if backend == Backend::Sqlite {
            // SQLite does not enforce varchar(255): a 1 MiB host.
            let huge = format!("v-huge-{r}");
            db.volume(&huge, Some(&format!("{host}@{}", "h".repeat(1 << 20))), Some(&alice), z);
            migrated.push(("volumes", huge));
        }
        migrated.push(("volume_glance_metadata", g(1).to_string()));
        if spaced_is_zero {
            migrated.push(("volumes", spaced));
        }
        HostileRows { db, w, key, conf, state, v_uni, glance_base, migrated, blocked, near, look_alike_keys }
    }

    fn glance(&self, n: i32) -> String {
        (self.glance_base + n).to_string()
    }

    /// Units that get a secret of their own: every migrated row but glance metadata, which
    /// shares its volume's.
    fn new_secrets(&self) -> usize {
        self.migrated.iter().filter(|(t, _)| *t != "volume_glance_metadata").count()
    }

    fn is_migrated(&self, table: &str, id: &str) -> bool {
        self.migrated.iter().any(|(t, i)| *t == table && i == id)
    }

    /// `command` with the cinder.conf, the scope `--host h_1%x` unless `extra` gives one, and the
    /// state directory for the commands that take the lock.
    fn run(&self, command: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--config-file", arg(&self.conf), command];
        if !extra.iter().any(|a| matches!(*a, "--host" | "--all-hosts")) {
            args.extend(["--host", HOSTILE_HOST]);
        }
        if matches!(command, "migrate" | "rollback") {
            args.extend(["--state-dir", arg(&self.state)]);
        }
        args.extend(extra);
        self.w.run(&args)
    }

    /// Every migrated row is on a secret that holds the fixed key, which alice (its owner) reads
    /// and whose ACL names her alone; the glance row shares its volume's.
    #[track_caller]
    fn assert_migrated(&self, cloud: &Cloud) {
        let backend = self.db.backend;
        let (cinder, alice) = (cloud.cinder(), cloud.alice());
        let key_bytes = hex::decode(&self.key).expect("hex");
        for (t, id) in &self.migrated {
            let secret = self.db.key_of(t, id).unwrap_or_else(|| panic!("{t} {id}: no key"));
            assert_ne!(secret, ZERO, "{backend:?}: {t} {id} was not migrated");
            assert!(cloud.payload(&cinder, &secret).body == key_bytes, "{backend:?}: {t} {id}: not the fixed key");
            assert!(cloud.payload(&alice, &secret).body == key_bytes, "{backend:?}: {t} {id}: the owner cannot read it");
            assert_eq!(cloud.acl_users(&cinder, &secret), vec![env("KEYMIGRATE_TEST_ALICE_ID")], "{backend:?}: {t} {id}");
        }
        assert_eq!(self.db.key_of("volume_glance_metadata", &self.glance(1)), self.db.key_of("volumes", &self.v_uni));
    }
}

/// `scan` and `migrate` on [`HostileRows`] must agree, compare bytes exactly, give every migrated
/// row a secret its owner can read, and report (exit 2) the rows nobody owns instead of giving
/// them a secret.
#[test]
fn hostile_row_values_are_migrated_byte_for_byte_or_reported() {
    let cloud = Cloud::new();
    for backend in BACKENDS {
        let h = HostileRows::seed(backend);
        let db = &h.db;
        let mut untouched: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
        for t in ["volumes", "snapshots", "backups", "volume_glance_metadata"] {
            for (id, k) in db.keys(t) {
                if !h.is_migrated(t, &id) {
                    untouched.insert((t.to_string(), id), k);
                }
            }
        }

        // scan: exactly these units, the blank owners blocked (under service, the rules migrate
        // follows here; under project a blank user_id blocks nothing).
        let out = h.run("scan", &["-f", "json", "--secret-owner", "service"]);
        out.assert_code(1);
        let doc = out.json();
        let units: BTreeSet<(String, String, String)> = doc["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|u| {
                let s = |k: &str| u[k].as_str().unwrap_or_default().to_string();
                (s("table"), s("id"), s("action"))
            })
            .collect();
        let mut want: BTreeSet<(String, String, String)> = h
            .migrated
            .iter()
            .map(|(t, id)| (t.to_string(), id.clone(), if *t == "volume_glance_metadata" { "share_volume" } else { "new_secret" }.to_string()))
            .collect();
        for (t, id) in &h.blocked {
            want.insert((t.to_string(), id.clone(), "blocked".into()));
        }
        assert_eq!(units, want, "{backend:?}");
        let out = h.run("status", &["-f", "json", "--secret-owner", "service"]);
        out.assert_code(1);
        let blocked_volumes = h.blocked.iter().filter(|(t, _)| *t == "volumes").count();
        assert_eq!(out.json()["scope"]["tables"]["volumes"]["blocked"], blocked_volumes, "{backend:?}");

        // migrate: every unit it can do, then exit 2 for the rows nobody owns.
        let out = h.run("migrate", &["-f", "json"]);
        out.assert_code(2);
        assert_eq!(out.json()["report"]["secrets_created"], h.new_secrets(), "{backend:?}: {}", out.stdout);
        h.assert_migrated(&cloud);
        for ((t, id), k) in &untouched {
            assert_eq!(&db.key_of(t, id), k, "{backend:?}: {t} {id:?} must not change");
        }
        h.w.assert_state_clean(&h.state);

        // A second run: nothing new, the same answer.
        let before = db.fingerprint();
        h.run("migrate", &[]).assert_code(2);
        assert_eq!(db.fingerprint(), before, "{backend:?}");
    }
}

/// `verify` and `rollback` after `migrate` on [`HostileRows`], with look-alikes of the secret IDs
/// planted besides: verify judges exactly the rows migrate moved; rollback puts the all-zeros ID
/// back on exactly those rows, deletes exactly their secrets, and leaves every other row byte for
/// byte as it was; a second rollback does nothing, and migrate works again.
#[test]
fn verify_and_rollback_touch_exactly_the_hostile_rows_migrate_moved() {
    let cloud = Cloud::new();
    for backend in BACKENDS {
        let h = HostileRows::seed(backend);
        let db = &h.db;
        let mut litter = crate::support::tenancy::Secrets::new();
        let seeded = db.rows();
        h.run("migrate", &[]).assert_code(2);
        litter.of_rows(db);
        let migrated = db.rows();
        let is_other = |(t, id): &(String, String)| !h.is_migrated(t, id);
        for (row, text) in seeded.iter().filter(|(row, _)| is_other(row)) {
            assert_eq!(migrated.get(row), Some(text), "{backend:?}: migrate changed {row:?}");
        }
        let secrets: BTreeSet<String> = h.migrated.iter().filter_map(|(t, id)| db.key_of(t, id)).collect();
        assert_eq!(secrets.len(), h.new_secrets(), "{backend:?}: one secret per unit");

        // verify, in the scope migrate had and in all hosts: exactly the migrated rows, all ok;
        // the look-alike keys counted as not keymigrate's, never judged.
        let judged = |out: &Output| -> BTreeSet<(String, String, String)> {
            out.json()["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    (s("table"), s("id"), s("result"))
                })
                .collect()
        };
        let all_ok: BTreeSet<(String, String, String)> = h.migrated.iter().map(|(t, id)| (t.to_string(), id.clone(), "ok".to_string())).collect();
        for (scope, zero_left) in [(vec!["--host", HOSTILE_HOST], h.blocked.len()), (vec!["--all-hosts"], h.blocked.len() + h.near.len())] {
            let mut args = scope.clone();
            args.extend(["-f", "json"]);
            let out = h.run("verify", &args);
            out.assert_code(0);
            assert_eq!(judged(&out), all_ok, "{backend:?} {scope:?}");
            let doc = out.json();
            assert_eq!(doc["ok"], h.migrated.len(), "{backend:?} {scope:?}");
            assert_eq!(doc["problems"], 0, "{backend:?} {scope:?}");
            assert_eq!(doc["not_made_by_keymigrate"], h.look_alike_keys, "{backend:?} {scope:?}");
            assert_eq!(doc["still_on_all_zeros"], zero_left, "{backend:?} {scope:?}");
        }

        // Look-alikes of the secret IDs, on rows keymigrate never wrote: the ID in upper case (a
        // volume: Barbican answers 404 to an ID that is not in its canonical form); the exact ID
        // under an upper-case glance key and under a key with a trailing space (not a key ID to
        // Cinder); the ID with a trailing space in a glance value.
        let alice = env("KEYMIGRATE_TEST_ALICE_ID");
        let uni_secret = db.key_of("volumes", &h.v_uni).expect("v_uni's secret");
        let k_ok = h.migrated.iter().find(|(t, _)| *t == "backups").map(|(_, id)| id.clone()).expect("a migrated backup");
        let backup_secret = db.key_of("backups", &k_ok).expect("the backup's secret");
        let upper = format!("x-upper-{}", &uuid()[..6]);
        db.volume(&upper, Some(&format!("{HOSTILE_HOST}@lvm#p")), Some(&alice), Some(&uni_secret.to_uppercase()));
        let g = |n: i32| h.glance_base + n;
        db.glance(g(6), Some(&h.v_uni), None, "CINDER_ENCRYPTION_KEY_ID", &uni_secret, false)
            .glance(g(7), Some(&h.v_uni), None, "cinder_encryption_key_id ", &backup_secret, false)
            .glance(g(8), Some(&h.v_uni), None, "cinder_encryption_key_id", &format!("{backup_secret} "), false);
        let out = h.run("verify", &["-f", "json"]);
        out.assert_code(2);
        let mut want = all_ok.clone();
        want.insert(("volumes".into(), upper.clone(), "secret missing".into()));
        assert_eq!(judged(&out), want, "{backend:?}: only the upper-case ID is judged, as a key Barbican does not have");
        assert_eq!(out.json()["not_made_by_keymigrate"], h.look_alike_keys + 1, "{backend:?}: glance 8");
        let planted = db.rows();

        // rollback: exactly the migrated rows, their secrets deleted; the rest byte for byte.
        let out = h.run("rollback", &["-f", "json"]);
        out.assert_code(0);
        let doc = out.json();
        assert_eq!(doc["rolled_back"], h.migrated.len(), "{backend:?}: {}", out.stdout);
        assert_eq!(doc["secrets_deleted"], h.new_secrets(), "{backend:?}: {}", out.stdout);
        assert_eq!((doc["refused"].as_u64(), doc["changed_meanwhile"].as_u64()), (Some(0), Some(0)), "{backend:?}: {}", out.stdout);
        assert_eq!(doc["secret_missing"], 1, "{backend:?}: the upper-case look-alike is left alone: {}", out.stdout);
        let rolled = db.rows();
        for (row, text) in &planted {
            if is_other(row) {
                assert_eq!(rolled.get(row), Some(text), "{backend:?}: rollback changed {row:?}");
            }
        }
        for (t, id) in &h.migrated {
            assert_eq!(db.key_of(t, id).as_deref(), Some(ZERO), "{backend:?}: {t} {id} is not back on the all-zeros ID");
            // Nothing else of the row changed but updated_at (the last field).
            let (now, then) = (&rolled[&(t.to_string(), id.clone())], &seeded[&(t.to_string(), id.clone())]);
            let head = |s: &str| s.rsplit_once(", ").map(|(h, _)| h.to_string()).unwrap_or_default();
            assert_eq!(head(now), head(then), "{backend:?}: {t} {id}");
        }
        let cinder = cloud.cinder();
        for secret in &secrets {
            assert_eq!(cloud.payload(&cinder, secret).status, 404, "{backend:?}: secret {secret} was not deleted");
        }
        h.w.assert_state_clean(&h.state);

        // A second rollback finds nothing of its own.
        let out = h.run("rollback", &["-f", "json"]);
        out.assert_code(0);
        assert_eq!((out.json()["rolled_back"].as_u64(), out.json()["secrets_deleted"].as_u64()), (Some(0), Some(0)), "{backend:?}");
        assert_eq!(db.rows(), rolled, "{backend:?}: the second rollback wrote");

        // migrate again: the same rows, new secrets.
        let out = h.run("migrate", &["-f", "json"]);
        out.assert_code(2);
        litter.of_rows(db);
        assert_eq!(out.json()["report"]["secrets_created"], h.new_secrets(), "{backend:?}: {}", out.stdout);
        h.assert_migrated(&cloud);
        let again = db.rows();
        for (row, text) in planted.iter().filter(|(row, _)| is_other(row)) {
            assert_eq!(again.get(row), Some(text), "{backend:?}: migrate changed {row:?}");
        }
        for (t, id) in &h.migrated {
            let secret = db.key_of(t, id).unwrap_or_default();
            assert!(!secrets.contains(&secret), "{backend:?}: {t} {id} is on a deleted secret");
        }
        let out = h.run("verify", &["-f", "json"]);
        out.assert_code(2);
        assert_eq!(judged(&out), want, "{backend:?}");
    }
}

/// Rolling a row back compares its key ID byte for byte: on MySQL the collation alone would
/// also match the secret's ID in upper case or with a trailing space, a row keymigrate never
/// pointed at that secret. So does the question whether a row still uses the secret, asked
/// before deleting it: such look-alikes (and the exact ID under a look-alike glance key) reach no
/// secret, and must not keep one alive.
#[test]
fn rollback_compares_the_secret_id_byte_for_byte() {
    let secret = "6f1d2c3b-4a59-4e8f-9d7c-0b1a2c3d4e5f";
    let upper = secret.to_uppercase();
    let spaced = format!("{secret} ");
    for backend in [Backend::Sqlite, Backend::Mysql, Backend::Postgres] {
        let db = CinderDb::new(backend);
        // A key ID column holds 36 characters on MySQL, so only glance metadata's value (TEXT)
        // can hold the ID with a space after it.
        db.volume("v-upper", Some("h"), Some("u"), Some(&upper)).volume("v-exact", Some("h"), Some("u"), Some(secret));
        db.glance(7, Some("v-upper"), None, "cinder_encryption_key_id", &upper, false)
            .glance(8, Some("v-exact"), None, "cinder_encryption_key_id", secret, false)
            .glance(9, Some("v-exact"), None, "cinder_encryption_key_id", &spaced, false)
            .glance(10, Some("v-exact"), None, "CINDER_ENCRYPTION_KEY_ID", secret, false);
        let url = keymigrate::db::url::translate(&db.url, std::path::Path::new("/")).expect("url");
        let mut conn = keymigrate::db::Db::connect(&url, keymigrate::db::Access::ReadWrite).expect("connect");
        let unswap = |conn: &mut keymigrate::db::Db, table, id: &str| conn.unswap(table, id, secret).expect("unswap");
        use keymigrate::cinder::Table;
        assert!(!unswap(&mut conn, Table::Volumes, "v-upper"), "{backend:?}: upper case");
        assert!(!unswap(&mut conn, Table::VolumeGlanceMetadata, "7"), "{backend:?}: glance, upper case");
        assert!(!unswap(&mut conn, Table::VolumeGlanceMetadata, "9"), "{backend:?}: glance, trailing space");
        assert!(!unswap(&mut conn, Table::VolumeGlanceMetadata, "10"), "{backend:?}: glance, upper-case key");
        assert!(conn.is_referenced(secret).expect("is_referenced"), "{backend:?}");
        assert!(unswap(&mut conn, Table::Volumes, "v-exact"), "{backend:?}: the exact ID");
        assert!(conn.is_referenced(secret).expect("is_referenced"), "{backend:?}: glance 8 still uses it");
        assert!(unswap(&mut conn, Table::VolumeGlanceMetadata, "8"), "{backend:?}: glance, the exact ID");
        assert!(!conn.is_referenced(secret).expect("is_referenced"), "{backend:?}: only look-alikes are left");
        assert_eq!(db.key_of("volumes", "v-upper").as_deref(), Some(upper.as_str()), "{backend:?}");
        assert_eq!(db.key_of("volumes", "v-exact").as_deref(), Some(ZERO), "{backend:?}");
    }
}
