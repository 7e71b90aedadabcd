//! `scan` and `status` on every backend: exactly the rows the scope rules select, what migrate
//! will do with each, exit codes, and proof that nothing is written.

use std::collections::BTreeSet;

use crate::support::*;

/// Every edge case of scope and planning, in one database.
fn seed(db: &CinderDb) {
    let z = Some(ZERO);
    let real = Some("11111111-2222-3333-4444-555555555555");
    db.volume("v-a1", Some("hostA@lvm#pool"), Some("alice"), z)
        .volume("v-a2", Some("hostA@lvm"), Some("alice"), z)
        .volume("v-a3", Some("hostA"), Some("alice"), z)
        .volume("v-aa", Some("hostAA@lvm#pool"), Some("alice"), z)
        .volume("v-upper", Some("HOSTA@lvm#pool"), Some("alice"), z)
        .volume("v-ceph", Some("hostA@ceph#rbd"), Some("bob"), z)
        .volume("v-null", None, Some("alice"), z)
        .volume("v-noowner", Some("hostA@lvm#pool"), None, z)
        .volume("v-real", Some("hostA@lvm#pool"), Some("alice"), real)
        .volume("v-nokey", Some("hostA@lvm#pool"), Some("alice"), None)
        .volume("v-us1", Some("node_1@lvm#p"), Some("carol"), z)
        .volume("v-usx", Some("nodeX1@lvm#p"), Some("carol"), z)
        .volume("v-pct", Some("nodeabc@lvm#p"), Some("carol"), z)
        .volume_full("v-del", Some("hostA@lvm#pool"), None, Some("alice"), z, true)
        .volume_full("v-cl", Some("other@lvm#p"), Some("cl1@lvm#p"), Some("dave"), z, false);
    db.snapshot("s-a1", "v-a1", Some("alice"), z, false)
        .snapshot("s-a1-real", "v-a1", Some("alice"), real, false)
        .snapshot("s-a1-del", "v-a1", Some("alice"), z, true)
        .snapshot("s-real", "v-real", Some("alice"), z, false)
        .snapshot("s-aa", "v-aa", Some("alice"), z, false)
        .snapshot("s-noowner", "v-noowner", Some("alice"), z, false)
        .snapshot("s-nokey", "v-real", Some("alice"), None, false);
    db.glance(1, Some("v-a1"), None, "cinder_encryption_key_id", ZERO, false)
        .glance(2, None, Some("s-a1"), "cinder_encryption_key_id", ZERO, false)
        .glance(3, Some("v-real"), None, "cinder_encryption_key_id", ZERO, false)
        .glance(4, None, Some("s-real"), "cinder_encryption_key_id", ZERO, false)
        .glance(5, Some("v-a1"), None, "other_key", ZERO, false)
        .glance(6, Some("v-a1"), None, "cinder_encryption_key_id", ZERO, true)
        .glance(7, None, Some("s-a1-real"), "cinder_encryption_key_id", ZERO, false)
        .glance(8, Some("v-aa"), None, "cinder_encryption_key_id", ZERO, false)
        // From an image property onto unencrypted rows: never given the fixed key.
        .glance(9, Some("v-nokey"), None, "cinder_encryption_key_id", ZERO, false)
        .glance(10, None, Some("s-nokey"), "cinder_encryption_key_id", ZERO, false);
    db.backup("b-a", "v-a1", Some("hostA"), Some("alice"), z, false)
        .backup("b-a2", "v-a1", Some("hostA@x"), Some("alice"), z, false)
        .backup("b-b", "v-a1", Some("hostB"), Some("alice"), z, false)
        .backup("b-del", "v-a1", Some("hostA"), Some("alice"), z, true)
        .backup("b-real", "v-a1", Some("hostA"), Some("alice"), real, false);
}

pub(crate) fn rows(out: &Output) -> BTreeSet<(String, String, String)> {
    out.json()["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let action = match r["shares_with"].as_str() {
                Some(w) => format!("{} {w}", r["action"].as_str().unwrap_or_default()),
                None => r["action"].as_str().unwrap_or_default().to_string(),
            };
            (r["table"].as_str().unwrap_or_default().to_string(), r["id"].as_str().unwrap_or_default().to_string(), action)
        })
        .collect()
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
}

#[test]
fn scan_selects_exactly_the_rows_of_a_host_on_every_backend() {
    for backend in BACKENDS {
        let db = CinderDb::new(backend);
        seed(&db);
        let mut w = Workdir::new();
        let conf = w.conf(&db, Some(&random_key()), "");
        let conf = conf.to_str().expect("path");
        let before = db.fingerprint();

        // Under service (Cinder's own model) a row needs a user_id: v-noowner and s-noowner wait.
        let out = w.run(&["--config-file", conf, "scan", "--host", "hostA", "-f", "json", "--secret-owner", "service"]);
        out.assert_code(1);
        let expected = set(&[
            ("volumes", "v-a1", "new_secret"),
            ("volumes", "v-a2", "new_secret"),
            ("volumes", "v-a3", "new_secret"),
            ("volumes", "v-ceph", "new_secret"),
            ("volumes", "v-noowner", "blocked"),
            ("volumes", "v-null", "skipped"),
            ("snapshots", "s-a1", "share_volume v-a1"),
            ("snapshots", "s-real", "new_secret"),
            ("snapshots", "s-noowner", "blocked"),
            ("volume_glance_metadata", "1", "share_volume v-a1"),
            ("volume_glance_metadata", "2", "share_volume v-a1"),
            ("volume_glance_metadata", "3", "new_secret"),
            ("volume_glance_metadata", "4", "share_snapshot s-real"),
            ("volume_glance_metadata", "7", "share_volume v-a1"),
            ("volume_glance_metadata", "9", "blocked"),
            ("volume_glance_metadata", "10", "blocked"),
            ("backups", "b-a", "new_secret"),
            ("backups", "b-a2", "new_secret"),
        ]);
        assert_eq!(rows(&out), expected, "{backend:?}");
        let doc = out.json();
        assert_eq!(doc["deleted"]["volumes"], 1, "{backend:?}");
        assert_eq!(doc["deleted"]["snapshots"], 1);
        assert_eq!(doc["deleted"]["backups"], 1);
        assert_eq!(doc["deleted"]["volume_glance_metadata"], 1);
        assert_eq!(doc["counts"]["volumes"]["blocked"], 1);
        assert_eq!(doc["counts"]["volume_glance_metadata"]["blocked"], 2);
        assert_eq!(doc["scope"]["description"], "host hostA; backups of hostA");

        // Backend and pool levels, case, and literal wildcards.
        let host = |h: &str| {
            let out = w.run(&["--config-file", conf, "scan", "--host", h, "-f", "json", "--backup-host", "none"]);
            rows(&out).into_iter().filter(|r| r.0 == "volumes").map(|r| r.1).collect::<BTreeSet<_>>()
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(host("hostA@lvm"), ids(&["v-a1", "v-a2", "v-noowner", "v-null"]), "{backend:?}");
        assert_eq!(host("hostA@lvm#pool"), ids(&["v-a1", "v-noowner", "v-null"]), "{backend:?}");
        assert_eq!(host("hosta"), ids(&["v-null"]), "case-sensitive on {backend:?}");
        assert_eq!(host("node_1"), ids(&["v-us1", "v-null"]), "_ is literal on {backend:?}");
        assert_eq!(host("node%"), ids(&["v-null"]), "% is literal on {backend:?}");

        let out = w.run(&["--config-file", conf, "scan", "--cluster", "cl1@lvm", "-f", "json"]);
        assert!(rows(&out).contains(&("volumes".into(), "v-cl".into(), "new_secret".into())), "{backend:?}");

        let out = w.run(&["--config-file", conf, "scan", "--all-hosts", "-f", "json"]);
        let all = rows(&out);
        for id in ["v-aa", "v-upper", "v-null", "v-usx", "v-pct", "v-cl"] {
            assert!(all.contains(&("volumes".into(), id.into(), "new_secret".into())), "{id} on {backend:?}");
        }
        assert!(all.contains(&("backups".into(), "b-b".into(), "new_secret".into())));
        assert_eq!(db.fingerprint(), before, "scan wrote to the {backend:?} database");
    }
}

#[test]
fn scan_and_status_never_write() {
    for backend in BACKENDS {
        let db = CinderDb::new(backend);
        seed(&db);
        let mut w = Workdir::new();
        let conf = w.conf(&db, Some(&random_key()), "");
        let conf = conf.to_str().expect("path");
        let before = db.fingerprint();
        let sqlite_bytes = (backend == Backend::Sqlite).then(|| std::fs::read(db.url.trim_start_matches("sqlite:///")).expect("read"));
        for args in [
            vec!["scan", "--all-hosts"],
            vec!["scan", "--host", "hostA", "-f", "value"],
            vec!["status", "--all-hosts", "-f", "json"],
            vec!["status"],
            vec!["migrate", "--dry-run", "--all-hosts"],
        ] {
            let mut full = vec!["--config-file", conf];
            full.extend(args.iter());
            let out = w.run(&full);
            assert!(out.code == 1 || out.code == 0, "{args:?} on {backend:?}: {}", out.stderr);
        }
        assert_eq!(db.fingerprint(), before, "{backend:?}");
        if let Some(bytes) = sqlite_bytes {
            assert_eq!(std::fs::read(db.url.trim_start_matches("sqlite:///")).expect("read"), bytes, "the SQLite file changed");
        }
    }
}

#[test]
fn status_counts_scope_and_database_and_sets_the_exit_code() {
    for backend in BACKENDS {
        let db = CinderDb::new(backend);
        seed(&db);
        let mut w = Workdir::new();
        let key = random_key();
        let conf = w.conf(&db, Some(&key), "");
        let conf = conf.to_str().expect("path");
        let out = w.run(&["--config-file", conf, "status", "--host", "hostA", "-f", "json"]);
        out.assert_code(1);
        let doc = out.json();
        assert_eq!(doc["scope"]["tables"]["volumes"]["total"], 5, "{backend:?}");
        assert_eq!(doc["scope"]["tables"]["snapshots"]["total"], 3);
        assert_eq!(doc["scope"]["tables"]["volume_glance_metadata"]["total"], 7);
        assert_eq!(doc["scope"]["tables"]["backups"]["total"], 2);
        assert_eq!(doc["database"]["tables"]["volumes"], 12);
        assert_eq!(doc["done"], false);

        // The default output is one line; Cinder's status sentences go to the log.
        let out = w.run(&["--config-file", conf, "status", "--host", "nobody"]);
        out.assert_code(0);
        assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
        assert!(out.stdout.starts_with("done: 0 row(s) left in scope"), "{}", out.stdout);
        assert!(out.stderr.contains("There are still 12 volume(s) using the ConfKeyManager's all-zeros encryption key ID."), "{}", out.stderr);

        // Rows remain but the ConfKeyManager is still configured: an operator must act.
        let conf2 = w.write("ckm.conf", &format!("[database]\nconnection = {}\n[key_manager]\nbackend = cinder.keymgr.conf_key_mgr.ConfKeyManager\nfixed_key = {key}\n", db.url));
        let out = w.run(&["--config-file", conf2.to_str().expect("path"), "status", "--all-hosts"]);
        out.assert_code(2);
        assert!(out.stderr.contains("Not migrating encryption keys because the ConfKeyManager is still in use."), "{}", out.stderr);

        // Rows remain but fixed_key is gone: the volumes can no longer be migrated.
        let conf3 = w.write("nokey.conf", &format!("[database]\nconnection = {}\n", db.url));
        let out = w.run(&["--config-file", conf3.to_str().expect("path"), "status", "--all-hosts"]);
        out.assert_code(2);
        assert!(out.stderr.contains("fixed_key is not in use"), "{}", out.stderr);
    }
}

#[test]
fn scope_is_derived_from_cinder_conf_like_cinder_volume() {
    let db = CinderDb::new(Backend::Sqlite);
    seed(&db);
    let mut w = Workdir::new();
    let key = random_key();
    w.guard_key(&key);
    let conf = w.write(
        "cinder.conf",
        &format!(
            "[DEFAULT]\nhost = hostA\nenabled_backends = lvm, ceph\n[ceph]\nbackend_host = hostA\n[database]\nconnection = {}\n[key_manager]\nfixed_key = {key}\n",
            db.url
        ),
    );
    let out = w.run(&["--config-file", conf.to_str().expect("path"), "scan", "-f", "json"]);
    out.assert_code(1);
    assert_eq!(out.json()["scope"]["description"], "host hostA@lvm, host hostA@ceph; backups of hostA");
    let ids: BTreeSet<String> = rows(&out).into_iter().filter(|r| r.0 == "volumes").map(|r| r.1).collect();
    assert_eq!(ids, ["v-a1", "v-a2", "v-ceph", "v-noowner", "v-null"].iter().map(|s| s.to_string()).collect());
    assert!(out.stderr.contains("Scope: host hostA@lvm, host hostA@ceph"), "{}", out.stderr);
}

#[test]
fn table_and_value_formats() {
    let db = CinderDb::new(Backend::Sqlite);
    db.volume("v1", Some("h@b#p"), Some("alice"), Some(ZERO));
    let mut w = Workdir::new();
    let conf = w.conf(&db, Some(&random_key()), "");
    let conf = conf.to_str().expect("path");
    let out = w.run(&["--config-file", conf, "scan", "--host", "h"]);
    out.assert_code(1);
    assert!(out.stdout.contains("| Table   | ID | Host  | Owner | Action     |"), "{}", out.stdout);
    let out = w.run(&["--config-file", conf, "scan", "--host", "h", "-f", "value", "-c", "ID", "-c", "Action"]);
    assert_eq!(out.stdout, "v1 new secret\n");
    let out = w.run(&["--config-file", conf, "scan", "--host", "h", "-c", "Nope"]);
    out.assert_error(127, "unknown column");
}

/// `scan` and `status` plan from one sequential pass per table (child rows find their volume in
/// memory); `migrate`'s counts read each page's volumes by ID; `migrate` plans page by page,
/// reading each child's volume with a join. All must give the same plan for every scope, on
/// every backend.
#[test]
fn the_census_walk_and_migrates_page_by_page_plan_agree() {
    use keymigrate::cinder::{SecretOwner, Table};
    use keymigrate::plan::{self, Item};
    use keymigrate::scope::{Field, Matcher, Scope};
    let u = |n: u32| format!("{n:08x}-0000-4000-8000-{n:012x}");
    for backend in BACKENDS {
        let db = CinderDb::new(backend);
        seed(&db);
        let z = Some(ZERO);
        // Canonical UUIDs, and the cases a parent lookup can get wrong.
        db.volume(&u(1), Some("hostA@lvm#pool"), Some("alice"), z)
            .volume(&u(2), Some("hostA@lvm#pool"), Some("bob"), Some("11111111-2222-3333-4444-555555555555"))
            .volume(&u(3), None, Some("alice"), z)
            .volume_full(&u(4), Some("hostA@lvm#pool"), None, Some("alice"), z, true)
            .volume_full(&u(5), None, Some("cl1@lvm#p"), Some("dave"), z, false)
            .volume(&u(6), Some("hostB@lvm#pool"), Some(""), z)
            .volume(&u(0xab), Some("hostA@lvm#pool"), Some("alice"), z);
        for (i, v) in [1, 2, 3, 4, 5, 6].into_iter().enumerate() {
            let sid = u(100 + v);
            db.snapshot(&sid, &u(v), Some("carol"), z, false);
            db.glance(100 + i as i32, None, Some(&sid), "cinder_encryption_key_id", ZERO, false);
            db.glance(200 + i as i32, Some(&u(v)), None, "cinder_encryption_key_id", ZERO, false);
        }
        match backend {
            // MySQL's collation matches IDs whatever their case.
            Backend::Mysql => {
                db.snapshot(&u(300), &u(0xab).to_uppercase(), Some("carol"), z, false);
            }
            // No foreign keys enforced: a snapshot whose volume is gone.
            Backend::Sqlite => db.exec(&format!(
                "PRAGMA foreign_keys = OFF; INSERT INTO snapshots (id, deleted, volume_id, user_id, project_id, encryption_key_id, \
                 volume_type_id, status, use_quota) VALUES ('{}', false, '{}', 'carol', 'p', '{ZERO}', 'kmtest-vt', 'available', true)",
                u(301),
                u(999)
            )),
            Backend::Postgres => {}
        }
        // Hostile values: blank owners, ids that are not UUIDs, and key IDs that only MySQL's
        // collation (case-insensitive, trailing spaces ignored) would call all zeros.
        db.volume("völ €'x", Some("hostA@lvm#pool"), Some("   "), z)
            .volume("vol odd", Some("hostA@lvm#pool"), Some("alice"), z)
            .volume("vol-fw", Some("hostA@lvm#pool"), Some("alice"), Some("\u{ff10}0000000-0000-0000-0000-000000000000"));
        db.snapshot("s-blank", "vol odd", Some(" "), z, false).snapshot("s-null", &u(1), None, z, false);
        db.glance(400, Some("vol odd"), None, "cinder_encryption_key_id", &format!("{ZERO} "), false)
            .glance(401, Some("vol odd"), None, "CINDER_ENCRYPTION_KEY_ID", ZERO, false)
            .glance(402, Some("vol-fw"), None, "cinder_encryption_key_id", ZERO, false)
            .glance(403, None, Some("s-blank"), "cinder_encryption_key_id", ZERO, false);
        db.backup("b-blank", "vol odd", Some("hostA"), Some("\t"), z, false);
        // Under project: a snapshot (with its glance rows) in another project than its volume,
        // one whose project differs only as MySQL's collation would ignore, and a volume
        // without a project.
        db.exec(&format!(
            "UPDATE snapshots SET project_id = 'proj-2' WHERE id = '{}'; UPDATE snapshots SET project_id = 'PROJ-1 ' WHERE id = '{}'; \
             UPDATE volumes SET project_id = NULL WHERE id = '{}'",
            u(102),
            u(101),
            u(6)
        ));
        let url = keymigrate::db::url::translate(&db.url, std::path::Path::new("/")).expect("url");
        let mut conn = keymigrate::db::Db::connect(&url, keymigrate::db::Access::ReadOnly).expect("connect");
        let host = |v: &str| Matcher { field: Field::Host, value: v.into() };
        let scopes = [
            Scope::all_hosts(),
            Scope { all: false, volumes: vec![host("hostA")], backups: vec!["hostA".into()], source: String::new() },
            Scope { all: false, volumes: vec![host("hostA@lvm#pool")], backups: vec![], source: String::new() },
            Scope { all: false, volumes: vec![host("hostB")], backups: vec![], source: String::new() },
            Scope {
                all: false,
                volumes: vec![Matcher { field: Field::ClusterName, value: "cl1@lvm".into() }],
                backups: vec![],
                source: String::new(),
            },
        ];
        let show = |item: &Item| match item {
            Item::Unit(u) => format!("{:?}", u),
            Item::Skipped(s) => format!("{:?}", s),
        };
        for (scope, owner) in scopes.iter().flat_map(|s| [(s, SecretOwner::Service), (s, SecretOwner::Project)]) {
            let mut walked = Vec::new();
            plan::walk(&mut conn, scope, owner, plan::Lookup::Index, |item| {
                walked.push(show(&item));
                Ok(())
            })
            .expect("walk");
            // Looking each page's volumes up by ID plans the same items, in the same order,
            // from the start or once an index outgrows its limit halfway through the volumes.
            let counts = plan::tally(&mut conn, scope, owner, plan::Lookup::Index).expect("tally");
            for lookup in [plan::Lookup::ByPage, plan::Lookup::IndexUpTo(4), plan::Lookup::BOUNDED] {
                let mut by_page = Vec::new();
                plan::walk(&mut conn, scope, owner, lookup, |item| {
                    by_page.push(show(&item));
                    Ok(())
                })
                .expect("walk by page");
                assert_eq!(walked, by_page, "{backend:?} {owner}, scope {}: the walks with {lookup:?} and an index differ", scope.describe());
                assert_eq!(counts, plan::tally(&mut conn, scope, owner, lookup).expect("tally by page"), "{backend:?} {owner} {lookup:?}");
            }
            let mut paged = Vec::new();
            for table in Table::ALL {
                let mut cursor = keymigrate::db::Cursor::Start;
                while cursor != keymigrate::db::Cursor::End {
                    paged.extend(plan::page(&mut conn, scope, owner, table, &mut cursor).expect("page").iter().map(show));
                }
            }
            assert!(walked.len() > 3, "{backend:?} {:?}: {walked:?}", scope.describe());
            for not_zero in ["id: \"400\"", "id: \"401\"", "id: \"vol-fw\""] {
                assert!(!walked.iter().any(|w| w.contains(not_zero)), "{backend:?}: {not_zero} is not on the all-zeros ID");
            }
            // Under project a blank user_id blocks nothing: the project decides who reads.
            for blank in ["id: \"s-blank\"", "id: \"s-null\"", "id: \"b-blank\"", "id: \"völ €'x\""] {
                if let Some(w) = walked.iter().find(|w| w.contains(blank)).filter(|_| owner == SecretOwner::Service) {
                    assert!(w.contains("Blocked"), "{backend:?}: a row without an owner must be blocked: {w}");
                }
            }
            walked.sort();
            paged.sort();
            assert_eq!(walked, paged, "{backend:?} {owner}, scope {}", scope.describe());
        }
    }
}

/// Rows that `migrate` would never rewrite are never planned as shared, which would leave the
/// scope forever "more to do": the snapshots and glance rows of a volume with no host (skipped
/// outside --all-hosts, even when its cluster matches) stay out of scope with it, and a glance
/// row waiting for a snapshot that has no owner is blocked with that snapshot.
#[test]
fn rows_waiting_for_a_skipped_or_blocked_row_are_not_planned_as_shared() {
    for backend in BACKENDS {
        let db = CinderDb::new(backend);
        let (z, real) = (Some(ZERO), Some("11111111-2222-3333-4444-555555555555"));
        db.volume_full("v-nohost", None, Some("cl1@lvm#p"), Some("alice"), z, false)
            .volume("v-real", Some("hostA@lvm#p"), Some("alice"), real);
        db.snapshot("s-nohost", "v-nohost", Some("alice"), z, false).snapshot("s-blank", "v-real", Some(" "), z, false);
        db.glance(1, Some("v-nohost"), None, "cinder_encryption_key_id", ZERO, false)
            .glance(2, None, Some("s-blank"), "cinder_encryption_key_id", ZERO, false);
        let mut w = Workdir::new();
        let conf = w.conf(&db, Some(&random_key()), "");
        let conf = arg(&conf);
        let scan = |scope: &[&str]| {
            // Under service, where a blank user_id blocks a row.
            let mut args = vec!["--config-file", conf, "scan", "-f", "json", "--secret-owner", "service"];
            args.extend(scope);
            w.run(&args)
        };
        let out = scan(&["--cluster", "cl1@lvm"]);
        assert_eq!(rows(&out), set(&[("volumes", "v-nohost", "skipped")]), "{backend:?}");
        let out = scan(&["--host", "hostA"]);
        assert_eq!(
            rows(&out),
            set(&[("volumes", "v-nohost", "skipped"), ("snapshots", "s-blank", "blocked"), ("volume_glance_metadata", "2", "blocked")]),
            "{backend:?}"
        );
        out.assert_code(2);
        let out = scan(&["--all-hosts"]);
        assert_eq!(
            rows(&out),
            set(&[
                ("volumes", "v-nohost", "new_secret"),
                ("snapshots", "s-nohost", "share_volume v-nohost"),
                ("volume_glance_metadata", "1", "share_volume v-nohost"),
                ("snapshots", "s-blank", "blocked"),
                ("volume_glance_metadata", "2", "blocked"),
            ]),
            "{backend:?}"
        );
        let status = w.run(&["--config-file", conf, "status", "--host", "hostA", "--secret-owner", "service"]);
        status.assert_code(2);
    }
}

/// `--secret-owner` decides the plan: under project a NULL user_id blocks nothing, a NULL
/// project blocks, and a snapshot in another project than its volume (with its glance row) gets
/// a secret of its own; `scan` says what each mode means and `status` decides by the mode.
#[test]
fn scan_and_status_plan_for_the_secret_owner_given() {
    let db = CinderDb::new(Backend::Sqlite);
    let z = Some(ZERO);
    db.volume("va", Some("hostA@lvm#p"), Some("alice"), z)
        .volume("vb", Some("hostA@lvm#p"), Some("bob"), z)
        .volume("vc", Some("hostA@lvm#p"), Some("carol"), z)
        .volume("vp", Some("hostA@lvm#p"), Some("dave"), z)
        .volume("vn", Some("hostN@lvm#p"), None, z);
    db.snapshot("sa", "va", Some("alice"), z, false).snapshot("sa2", "va", Some("alice"), z, false);
    db.glance(1, None, Some("sa"), "cinder_encryption_key_id", ZERO, false)
        .glance(2, Some("va"), None, "cinder_encryption_key_id", ZERO, false);
    db.backup("bb", "vb", Some("hostA"), Some("bob"), z, false);
    // proj-1: alice and bob; proj-2: carol and a volume without a user; proj-3: a snapshot of
    // alice's volume, transferred; vp has no project at all.
    db.exec(
        "UPDATE volumes SET project_id = 'proj-2' WHERE id IN ('vc', 'vn'); UPDATE volumes SET project_id = NULL WHERE id = 'vp'; \
         UPDATE snapshots SET project_id = 'proj-3' WHERE id = 'sa'",
    );
    let mut w = Workdir::new();
    let conf = w.conf(&db, Some(&random_key()), "");
    let conf = arg(&conf);
    let scan = |owner: &str| {
        let out = w.run(&["--config-file", conf, "scan", "--all-hosts", "-f", "json", "--secret-owner", owner]);
        out.assert_code(1);
        out
    };

    let out = scan("service");
    assert_eq!(
        rows(&out),
        set(&[
            ("volumes", "va", "new_secret"),
            ("volumes", "vb", "new_secret"),
            ("volumes", "vc", "new_secret"),
            ("volumes", "vp", "new_secret"),
            ("volumes", "vn", "blocked"),
            ("snapshots", "sa", "share_volume va"),
            ("snapshots", "sa2", "share_volume va"),
            ("volume_glance_metadata", "1", "share_volume va"),
            ("volume_glance_metadata", "2", "share_volume va"),
            ("backups", "bb", "new_secret"),
        ])
    );
    let doc = out.json();
    assert_eq!(doc["secret_owner"], "service");
    assert_eq!(doc["new_secrets"], 5);
    assert_eq!(doc["counts"]["volumes"]["blocked"], 1);
    // va, vb, sa2 and bb are in proj-1, where alice and bob both own rows.
    assert_eq!(doc["shared_projects_units"], 4);
    assert_eq!(doc["holder_projects"], serde_json::Value::Null);
    assert_eq!(doc["separate_under_project"], serde_json::Value::Null);

    let out = scan("project");
    assert_eq!(
        rows(&out),
        set(&[
            ("volumes", "va", "new_secret"),
            ("volumes", "vb", "new_secret"),
            ("volumes", "vc", "new_secret"),
            ("volumes", "vp", "blocked"),
            ("volumes", "vn", "new_secret"),
            ("snapshots", "sa", "new_secret"),
            ("snapshots", "sa2", "share_volume va"),
            ("volume_glance_metadata", "1", "share_snapshot sa"),
            ("volume_glance_metadata", "2", "share_volume va"),
            ("backups", "bb", "new_secret"),
        ])
    );
    let doc = out.json();
    assert_eq!(doc["secret_owner"], "project");
    assert_eq!(doc["new_secrets"], 6);
    assert_eq!(doc["units"], 10);
    assert_eq!(doc["holder_projects"], 3, "proj-1, proj-2 and proj-3");
    assert_eq!(doc["separate_under_project"], 2, "sa and its glance row");
    // Under project the volume's glance row is counted in proj-1 too.
    assert_eq!(doc["shared_projects_units"], 5);
    let glance: Vec<&serde_json::Value> =
        doc["rows"].as_array().expect("rows").iter().filter(|r| r["table"] == "volume_glance_metadata").collect();
    assert_eq!(glance.iter().map(|r| r["project"].as_str()).collect::<Vec<_>>(), [Some("proj-3"), Some("proj-1")]);

    // The table form says which mode it planned for, and what it means.
    let out = w.run(&["--config-file", conf, "scan", "--all-hosts", "--secret-owner", "project"]);
    assert!(out.stdout.contains("Secret owner: project"), "{}", out.stdout);
    assert!(out.stdout.contains("secrets in 3 project(s)"), "{}", out.stdout);
    let out = w.run(&["--config-file", conf, "scan", "--all-hosts", "--secret-owner", "service"]);
    assert!(out.stdout.contains("Secret owner: service"), "{}", out.stdout);
    assert!(out.stdout.contains("With --secret-owner service: 4 unit(s)"), "{}", out.stdout);

    // A host whose only volume has no user: stuck under service, work to do under project.
    let status = |owner: &str| w.run(&["--config-file", conf, "status", "--host", "hostN", "--secret-owner", owner]);
    status("service").assert_code(2);
    status("project").assert_code(1);
    assert_eq!(db.keys("volumes").iter().filter(|(_, k)| k.as_deref() == Some(ZERO)).count(), 5, "scan and status never write");
}

/// Under `--secret-owner project` what the plan says shares a volume's secret is exactly what
/// the volume's swap (`Share::Project`) rewrites, on every backend: its snapshots and their
/// glance rows in the volume's very project, byte for byte (MySQL's collation would call
/// `PROJ-1 ` and `proj-1` equal), never those of another project, which are their own units.
#[test]
fn a_volumes_project_swap_rewrites_exactly_the_rows_planned_to_share_it() {
    use keymigrate::cinder::{SecretOwner, Table};
    use keymigrate::db::swap::Share;
    use keymigrate::plan::{self, Action, Item};
    for backend in BACKENDS {
        let db = CinderDb::new(backend);
        let z = Some(ZERO);
        db.volume("v1", Some("hostA@lvm#p"), Some("alice"), z);
        db.snapshot("s-same", "v1", Some("bob"), z, false)
            .snapshot("s-other", "v1", Some("alice"), z, false)
            .snapshot("s-fold", "v1", Some("alice"), z, false)
            .snapshot("s-del", "v1", Some("alice"), z, true)
            .snapshot("s-other-del", "v1", Some("alice"), z, true);
        db.exec(
            "UPDATE snapshots SET project_id = 'proj-2' WHERE id IN ('s-other', 's-other-del'); \
             UPDATE snapshots SET project_id = 'PROJ-1 ' WHERE id = 's-fold'",
        );
        for (i, snapshot) in ["s-same", "s-other", "s-fold", "s-del", "s-other-del"].into_iter().enumerate() {
            db.glance(2 + i as i32, None, Some(snapshot), "cinder_encryption_key_id", ZERO, false);
        }
        db.glance(1, Some("v1"), None, "cinder_encryption_key_id", ZERO, false);
        // Hand-made rows naming v1 and a snapshot of another volume: the one in v1's project
        // shares v1's secret and its swap must take it; the other belongs to its snapshot.
        db.volume("v2", Some("hostA@lvm#p"), Some("alice"), Some("k-v2"));
        db.snapshot("s-w", "v2", Some("alice"), Some("k-v2"), false).snapshot("s-w2", "v2", Some("alice"), Some("k-v2"), false);
        db.exec("UPDATE snapshots SET project_id = 'proj-2' WHERE id = 's-w2'");
        db.glance(10, Some("v1"), Some("s-w"), "cinder_encryption_key_id", ZERO, false);
        db.glance(11, Some("v1"), Some("s-w2"), "cinder_encryption_key_id", ZERO, false);
        let url = keymigrate::db::url::translate(&db.url, std::path::Path::new("/")).expect("url");
        let mut conn = keymigrate::db::Db::connect(&url, keymigrate::db::Access::ReadWrite).expect("connect");
        let mut sharing = BTreeSet::new();
        plan::walk(&mut conn, &keymigrate::scope::Scope::all_hosts(), SecretOwner::Project, plan::Lookup::Index, |item| {
            if let Item::Unit(u) = item {
                if u.action == Action::ShareVolume("v1".into()) || u.id.as_str() == "v1" {
                    sharing.insert((u.table.name().to_string(), u.id.to_string()));
                }
            }
            Ok(())
        })
        .expect("walk");
        let expected: BTreeSet<(String, String)> =
            [("volumes", "v1"), ("snapshots", "s-same"), ("volume_glance_metadata", "1"), ("volume_glance_metadata", "2"), ("volume_glance_metadata", "5"), ("volume_glance_metadata", "10")]
                .iter()
                .map(|(t, i)| (t.to_string(), i.to_string()))
                .collect();
        assert_eq!(sharing, expected, "{backend:?}: the plan");

        let secret = "5ec2e7a1-0000-4000-8000-000000000001";
        let swapped = conn.swap(Table::Volumes, "v1", secret, Share::Project("proj-1")).expect("swap").expect("not lost");
        assert_eq!((swapped.volumes, swapped.snapshots, swapped.volume_glance_metadata), (1, 1, 4), "{backend:?}");
        let mut rewritten = BTreeSet::new();
        for table in ["volumes", "snapshots", "volume_glance_metadata"] {
            for (id, key) in db.keys(table) {
                if key.as_deref() == Some(secret) {
                    rewritten.insert((table.to_string(), id));
                }
            }
        }
        assert_eq!(rewritten, expected, "{backend:?}: the swap");
        let state = conn.row_state(Table::VolumeGlanceMetadata, "3").expect("row state").expect("row");
        assert_eq!(state.project.as_deref(), Some("proj-2"), "{backend:?}: a snapshot's glance row is in the snapshot's project");
        let state = conn.row_state(Table::VolumeGlanceMetadata, "1").expect("row state").expect("row");
        assert_eq!(state.project.as_deref(), Some("proj-1"), "{backend:?}: a volume's glance row is in the volume's project");
    }
}

/// A host scope that names no volume or backup at all (a pod's host name, say) while rows
/// elsewhere are left is said to be suspicious; a real host with nothing left is not.
#[test]
fn status_warns_when_the_scope_names_no_row_at_all() {
    let db = CinderDb::new(Backend::Sqlite);
    db.volume("v-elsewhere", Some("node1@lvm#pool"), Some("alice"), Some(ZERO))
        .volume("v-done", Some("node2@lvm#pool"), Some("alice"), Some("11111111-2222-3333-4444-555555555555"))
        .backup("b-done", "v-done", Some("node3"), Some("alice"), Some("11111111-2222-3333-4444-555555555555"), false);
    let mut w = Workdir::new();
    let conf = w.conf(&db, Some(&random_key()), "");
    let conf = arg(&conf);
    let warning = "names no volume or backup in the database";

    // cinder.conf's own host (`testhost`) holds nothing: done in scope, but said to be odd.
    let out = w.run(&["--config-file", conf, "status"]);
    out.assert_code(0);
    let line = out.stderr.lines().find(|l| l.contains(warning)).unwrap_or_else(|| panic!("no warning:\n{}", out.stderr));
    assert!(line.contains("WARNING") && line.contains("testhost") && line.contains("--host"), "{line}");

    // A host whose volumes are all migrated, or one with only backups: done, nothing odd.
    for host in ["node2", "node3"] {
        let out = w.run(&["--config-file", conf, "status", "--host", host]);
        out.assert_code(0);
        assert!(!out.stderr.contains(warning), "{host}: {}", out.stderr);
    }
    // The host with work left is not done, and not odd either.
    let out = w.run(&["--config-file", conf, "status", "--host", "node1"]);
    out.assert_code(1);
    assert!(!out.stderr.contains(warning), "{}", out.stderr);
}
