//! The test Nova databases are what keymigrate's Nova work will meet: an API database, made by
//! Nova 34's own migrations, whose `cell_mappings` lead to cell0, cell1 and cell2 (cell0's mapping
//! UUID being the all-zeros ID itself), and cells holding exactly the instances a test inserts,
//! the ConfKeyManager's live ones found by `ephemeral_key_uuid = <all zeros> AND deleted = 0`.
//! Nova's own `nova-manage` reads the mappings through the nova.conf the support code writes.

use std::process::Command;

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::support::nova::{connect, uuid4, InstanceSpec, NovaCloud, CELL0_UUID, CONF_KEY_MANAGER};
use crate::support::*;

#[derive(QueryableByName)]
struct Uuid {
    #[diesel(sql_type = diesel::sql_types::Text)]
    uuid: String,
}

/// Per cell: an all-zeros instance, one with a real key, a soft-deleted all-zeros one, an
/// all-zeros one in the middle of a task, one without a key. cell0's were never scheduled.
fn seed(cloud: &NovaCloud) -> Vec<(&'static str, InstanceSpec)> {
    let mut seeded = Vec::new();
    for cell in ["cell0", "cell1", "cell2"] {
        let fresh = || if cell == "cell0" { InstanceSpec::new().unscheduled() } else { InstanceSpec::new() };
        let busy = if cell == "cell0" { "deleting" } else { "rebuild_spawning" };
        for spec in [
            fresh().key(Some(ZERO)),
            fresh().key(Some(&uuid4())).owner("kmtest-other-project", "kmtest-other-user"),
            fresh().key(Some(ZERO)).deleted(),
            fresh().key(Some(ZERO)).task_state(Some(busy)),
            fresh().key(None),
        ] {
            cloud.insert_instance(cell, &spec);
            seeded.push((cell, spec));
        }
    }
    seeded
}

fn uuids(conn: &mut keymigrate::db::AnyConnection, condition: &str) -> Vec<String> {
    let sql = format!("SELECT uuid FROM instances WHERE {condition} ORDER BY id");
    diesel::sql_query(&sql).load::<Uuid>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).into_iter().map(|u| u.uuid).collect()
}

/// A boolean column as the backend renders it in JSON (0/1 or false/true).
fn truth(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0),
        other => panic!("not a boolean: {other}"),
    }
}

fn three_cells_hold_what_was_inserted(backend: Backend) {
    let cloud = NovaCloud::new(backend);
    let seeded = seed(&cloud);

    // The API database maps the three cells as nova-manage does, cell0 first.
    let mappings = cloud.api.rows("cell_mappings", "1 = 1");
    let names: Vec<&str> = mappings.iter().map(|m| m["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["cell0", "cell1", "cell2"], "{backend:?}: {mappings:?}");
    let scheme = match backend {
        Backend::Sqlite => "sqlite:////",
        Backend::Mysql => "mysql+pymysql://",
        Backend::Postgres => "postgresql+psycopg2://",
    };
    for (m, cell) in mappings.iter().zip(&cloud.cells) {
        assert_eq!(m["id"], json!(cell.id));
        assert_eq!(m["uuid"], json!(cell.uuid));
        assert_eq!(m["transport_url"], json!(cell.transport_url));
        assert_eq!(m["database_connection"], json!(cell.url));
        assert!(!truth(&m["disabled"]), "{m}");
        assert!(m["created_at"].is_string() && m["updated_at"].is_null(), "{m}");
        let url = cell.url.as_str();
        assert!(url.starts_with(scheme), "{url}");
        if backend == Backend::Mysql {
            assert!(url.ends_with("?charset=utf8"), "{url}");
        }
        // The mapping's URL leads to the cell's own database: exactly the rows inserted there.
        let want: Vec<&str> = seeded.iter().filter(|(c, _)| *c == cell.name).map(|(_, s)| s.uuid.as_str()).collect();
        assert_eq!(uuids(&mut connect(url), "1 = 1"), want, "{backend:?} {}", cell.name);
    }
    assert_eq!(mappings[0]["uuid"], json!(CELL0_UUID));
    assert_eq!(mappings[0]["transport_url"], json!("none:///"));
    assert_ne!(mappings[1]["transport_url"], mappings[2]["transport_url"], "create_cell needs distinct transport URLs");
    // The trap: the all-zeros ID is also cell0's mapping UUID.
    assert_eq!(cloud.api.texts("cell_mappings", "name", &format!("uuid = {}", q(Some(ZERO)))), [Some("cell0".to_string())]);

    // Every instance is mapped to its cell; a deleted one is queued for delete.
    let instance_mappings = cloud.api.rows("instance_mappings", "1 = 1");
    assert_eq!(instance_mappings.len(), seeded.len());
    for (cell, spec) in &seeded {
        let m = instance_mappings.iter().find(|m| m["instance_uuid"] == json!(spec.uuid)).expect("instance mapping");
        assert_eq!(m["cell_id"], json!(cloud.cell(cell).id));
        assert_eq!(m["project_id"], json!(spec.project_id));
        assert_eq!(truth(&m["queued_for_delete"]), spec.deleted);
    }

    // Each row reads back whole, with what was asked for.
    let columns = cloud.cell("cell1").db.columns("instances");
    for (cell, spec) in &seeded {
        let row = cloud.instance(cell, &spec.uuid);
        let keys: Vec<&String> = row.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), columns.len(), "{row}");
        assert!(columns.iter().all(|c| row.get(c).is_some()), "{row}");
        assert_eq!(row["ephemeral_key_uuid"], json!(spec.ephemeral_key_uuid));
        assert_eq!(cloud.ephemeral_key(cell, &spec.uuid), spec.ephemeral_key_uuid);
        assert_eq!(row["vm_state"], json!(spec.vm_state));
        assert_eq!(row["task_state"], json!(spec.task_state));
        assert_eq!(row["host"], json!(spec.host));
        assert_eq!(row["project_id"], json!(spec.project_id));
        assert_eq!(row["user_id"], json!(spec.user_id));
        if spec.deleted {
            assert_eq!(row["deleted"], row["id"], "soft-deleted rows have deleted = id");
            assert!(row["deleted_at"].is_string(), "{row}");
        } else {
            assert_eq!(row["deleted"], json!(0));
            assert!(row["deleted_at"].is_null(), "{row}");
        }
        // the columns Nova's defaults fill, never NULL in a row Nova wrote
        for c in ["created_at", "cleaned", "hidden", "locked", "power_state", "launch_index", "memory_mb", "vcpus", "root_gb"] {
            assert!(!row[c].is_null(), "{c} is NULL: {row}");
        }
    }

    // The ConfKeyManager's live instances, cell by cell.
    for cell in &cloud.cells {
        let found = uuids(&mut cell.db.conn(), &format!("ephemeral_key_uuid = {} AND deleted = 0", q(Some(ZERO))));
        let want: Vec<&str> = seeded
            .iter()
            .filter(|(c, s)| *c == cell.name && s.ephemeral_key_uuid.as_deref() == Some(ZERO) && !s.deleted)
            .map(|(_, s)| s.uuid.as_str())
            .collect();
        assert_eq!(want.len(), 2);
        assert_eq!(found, want, "{backend:?} {}", cell.name);
    }

    // Nova's own tool reads the mappings through the nova.conf written for this cloud.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("nova.conf");
    std::fs::write(&conf, cloud.nova_conf(Some(&random_key()), CONF_KEY_MANAGER)).expect("write nova.conf");
    let nova_manage = |args: &[&str]| {
        let out = Command::new(env("KEYMIGRATE_TEST_NOVA_MANAGE"))
            .arg("--config-file")
            .arg(&conf)
            .args(args)
            .env("HOME", dir.path())
            .output()
            .expect("run nova-manage");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "nova-manage {args:?}: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let listed = nova_manage(&["cell_v2", "list_cells", "--verbose"]);
    for cell in &cloud.cells {
        let line = listed.lines().find(|l| l.contains(&format!(" {} ", cell.name))).unwrap_or_else(|| panic!("{} not listed:\n{listed}", cell.name));
        for part in [&cell.uuid, &cell.transport_url, &cell.url] {
            assert!(line.contains(part.as_str()), "{part} missing from {line}");
        }
    }
    let (_, busy) = seeded.iter().find(|(c, s)| *c == "cell2" && s.task_state.is_some()).expect("seeded");
    let verified = nova_manage(&["cell_v2", "verify_instance", "--uuid", &busy.uuid]);
    assert!(verified.contains(&format!("is in cell: cell2 ({})", cloud.cell("cell2").uuid)), "{verified}");
}

#[test]
fn nova_cells_on_sqlite_are_mapped_and_hold_the_instances_inserted() {
    three_cells_hold_what_was_inserted(Backend::Sqlite);
}

#[test]
fn nova_cells_on_mariadb_are_mapped_and_hold_the_instances_inserted() {
    three_cells_hold_what_was_inserted(Backend::Mysql);
}

#[test]
fn nova_cells_on_postgresql_are_mapped_and_hold_the_instances_inserted() {
    three_cells_hold_what_was_inserted(Backend::Postgres);
}
