//! Real Nova databases for one test: an API database and three cell databases (cell0, cell1,
//! cell2), each a fresh copy of a template that `scripts/testenv.sh up` built with Nova 34's own
//! migrations (`nova-manage api_db sync`, `nova-manage db sync --local_cell`), on SQLite, MariaDB
//! or PostgreSQL. The API database's `cell_mappings` name the three cells as `nova-manage cell_v2
//! map_cell0` and `create_cell` write them; instances are inserted into a cell with every column
//! a real Nova fills, and mapped in the API database's `instance_mappings`.
//!
//! What `nova-manage` (nova 34.0.0) writes into `cell_mappings`, seen on all three backends by
//! running `api_db sync`, `cell_v2 map_cell0 --database_connection …`, `cell_v2 create_cell
//! --name cell1 --database_connection … --transport-url rabbit://nowhere:5672/cell1` and `db sync`
//! against scratch databases and reading the table back:
//!
//! | column                | cell0                                  | a cell from `create_cell`          |
//! |-----------------------|----------------------------------------|------------------------------------|
//! | `id`                  | autoincrement (1 when mapped first)    | autoincrement                      |
//! | `uuid`                | `00000000-0000-0000-0000-000000000000` | a random UUID4, lower-case         |
//! | `name`                | `cell0`                                | `--name`                           |
//! | `transport_url`       | `none:///` (RPC never targets cell0)   | `--transport-url`, verbatim        |
//! | `database_connection` | `--database_connection`, verbatim      | `--database_connection`, verbatim  |
//! | `disabled`            | false (0 on SQLite and MariaDB)        | false                              |
//! | `created_at`          | UTC now: `2026-12-03 12:17:56.594119` on SQLite and PostgreSQL, whole seconds on MariaDB (DATETIME) | same |
//! | `updated_at`          | NULL                                   | NULL                               |
//!
//! Without `--database_connection`, `map_cell0` takes `[database] connection` and appends `_cell0`
//! to its database name, keeping the query (`…/nova?charset=utf8` → `…/nova_cell0?charset=utf8`).
//! The URLs are stored as given: with their passwords, in SQLAlchemy form
//! (`sqlite:////abs/path`, `mysql+pymysql://user:pw@host:port/db?charset=utf8`,
//! `postgresql+psycopg2://user:pw@host:port/db`). The trap for keymigrate: cell0's mapping UUID
//! *is* the ConfKeyManager's all-zeros key ID.
//!
//! `instances` has only two NOT NULL columns in Nova 34's schema (all three backends): `id`
//! (autoincrement) and `uuid`. Nova's defaults (`deleted = 0`, `cleaned = 0`, `hidden`, `locked`
//! and the like) are Python-side, so a raw INSERT that skips them leaves NULLs that Nova itself
//! never writes; [`NovaCloud::insert_instance`] writes the columns Nova's `Instance.create()`
//! writes (seen by creating one with Nova's own objects) plus the scheduled instance's host fields.
//! No `instance_extra` or `instance_info_caches` rows are made: nothing keymigrate reads is there.

#![allow(dead_code)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use keymigrate::db::AnyConnection;
use rand::Rng;
use serde_json::Value;

use super::{env, q, Backend, ZERO};

/// `nova.objects.CellMapping.CELL0_UUID`: the same string as the ConfKeyManager's key ID.
pub const CELL0_UUID: &str = ZERO;

/// `[key_manager] backend` for Nova's own ConfKeyManager (castellan imports it by path).
pub const CONF_KEY_MANAGER: &str = "nova.keymgr.conf_key_mgr.ConfKeyManager";

/// The two schemas Nova's migrations make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Api,
    Cell,
}

/// One fresh database, a copy of a Nova template; dropped with the value.
pub struct NovaDb {
    pub backend: Backend,
    /// SQLAlchemy form, as nova.conf and `cell_mappings.database_connection` say it.
    pub url: String,
    diesel_url: String,
    /// The server's database name (MariaDB, PostgreSQL); dropped on drop.
    name: Option<String>,
}

impl NovaDb {
    fn new(backend: Backend, schema: Schema, dir: &std::path::Path, name: &str) -> NovaDb {
        let (sqlite_template, mysql_schema, pg_template) = match schema {
            Schema::Api => (
                "KEYMIGRATE_TEST_NOVA_API_SQLITE_TEMPLATE",
                "KEYMIGRATE_TEST_NOVA_API_MYSQL_SCHEMA",
                "KEYMIGRATE_TEST_NOVA_PG_API_TEMPLATE",
            ),
            Schema::Cell => (
                "KEYMIGRATE_TEST_NOVA_CELL_SQLITE_TEMPLATE",
                "KEYMIGRATE_TEST_NOVA_CELL_MYSQL_SCHEMA",
                "KEYMIGRATE_TEST_NOVA_PG_CELL_TEMPLATE",
            ),
        };
        match backend {
            Backend::Sqlite => {
                let path = dir.join(format!("{name}.sqlite"));
                std::fs::copy(env(sqlite_template), &path).expect("copy the SQLite Nova template");
                NovaDb { backend, url: format!("sqlite:///{}", path.display()), diesel_url: path.display().to_string(), name: None }
            }
            Backend::Mysql => {
                let admin = env("KEYMIGRATE_TEST_MYSQL_URL");
                let mut conn = MysqlConnection::establish(&admin).expect("connect to MariaDB");
                conn.batch_execute(&format!("CREATE DATABASE {name} CHARACTER SET utf8")).expect("create database");
                // Owned from here on: a panic below still drops the database.
                let db = NovaDb {
                    backend,
                    url: format!("{}/{name}?charset=utf8", admin.replacen("mysql://", "mysql+pymysql://", 1)),
                    diesel_url: format!("{admin}/{name}"),
                    name: Some(name.to_string()),
                };
                let dump = std::fs::read_to_string(env(mysql_schema)).expect("Nova's schema dump");
                db.exec(&format!("SET FOREIGN_KEY_CHECKS=0;\n{dump}\nSET FOREIGN_KEY_CHECKS=1;"));
                db
            }
            Backend::Postgres => {
                let admin = env("KEYMIGRATE_TEST_PG_URL");
                let mut conn = PgConnection::establish(&format!("{admin}/postgres")).expect("connect to PostgreSQL");
                conn.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {}", env(pg_template))).expect("create database");
                NovaDb {
                    backend,
                    url: format!("{}/{name}", admin.replacen("postgres://", "postgresql+psycopg2://", 1)),
                    diesel_url: format!("{admin}/{name}"),
                    name: Some(name.to_string()),
                }
            }
        }
    }

    pub fn conn(&self) -> AnyConnection {
        connect_diesel(self.backend, &self.diesel_url)
    }

    pub fn exec(&self, sql: &str) {
        self.conn().batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The table's columns in the database's own order, from its catalog.
    pub fn columns(&self, table: &str) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Column {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let sql = match self.backend {
            Backend::Sqlite => format!("SELECT name FROM pragma_table_info({}) ORDER BY cid", q(Some(table))),
            Backend::Mysql => format!(
                "SELECT CAST(column_name AS CHAR) AS name FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = {} ORDER BY ordinal_position",
                q(Some(table))
            ),
            Backend::Postgres => format!(
                "SELECT CAST(column_name AS TEXT) AS name FROM information_schema.columns \
                 WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = {} \
                 ORDER BY ordinal_position",
                q(Some(table))
            ),
        };
        let cols: Vec<Column> = diesel::sql_query(&sql).load(&mut self.conn()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!cols.is_empty(), "no table {table}");
        cols.into_iter().map(|c| c.name).collect()
    }

    /// Every row of `table` matching `condition` (SQL, e.g. `uuid = '…'`), ordered by `id`: a
    /// JSON object of every column each, as the backend's JSON functions render the values
    /// (compare rows of one backend with each other).
    pub fn rows(&self, table: &str, condition: &str) -> Vec<Value> {
        #[derive(QueryableByName)]
        struct Json {
            #[diesel(sql_type = diesel::sql_types::Text)]
            j: String,
        }
        let objects: Vec<String> = match self.backend {
            Backend::Postgres => vec!["row_to_json(t)::text".to_string()],
            // SQLite takes at most 127 arguments per function: one object per 40 columns, merged
            // here (a JSON merge patch in SQL would drop the NULL columns)
            Backend::Sqlite | Backend::Mysql => {
                let quote = if self.backend == Backend::Sqlite { '"' } else { '`' };
                self.columns(table)
                    .chunks(40)
                    .map(|chunk| {
                        let pairs: Vec<String> = chunk.iter().map(|c| format!("{}, t.{quote}{c}{quote}", q(Some(c)))).collect();
                        format!("json_object({})", pairs.join(", "))
                    })
                    .collect()
            }
        };
        let mut rows: Vec<Value> = Vec::new();
        let mut conn = self.conn();
        for object in objects {
            let sql = format!("SELECT {object} AS j FROM {table} t WHERE {condition} ORDER BY t.id");
            let part: Vec<Json> = diesel::sql_query(&sql).load(&mut conn).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let part: Vec<Value> =
                part.into_iter().map(|r| serde_json::from_str(&r.j).unwrap_or_else(|e| panic!("{sql}: not JSON ({e}): {}", r.j))).collect();
            if rows.is_empty() {
                rows = part;
                continue;
            }
            assert_eq!(rows.len(), part.len(), "{table} changed while it was read");
            for (row, more) in rows.iter_mut().zip(part) {
                if let (Some(row), Value::Object(more)) = (row.as_object_mut(), more) {
                    row.extend(more);
                }
            }
        }
        rows
    }

    /// The values of one text column (NULL as None) of the rows matching `condition`, by `id`.
    pub fn texts(&self, table: &str, column: &str, condition: &str) -> Vec<Option<String>> {
        #[derive(QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            v: Option<String>,
        }
        let sql = format!("SELECT {column} AS v FROM {table} WHERE {condition} ORDER BY id");
        let rows: Vec<Text> = diesel::sql_query(&sql).load(&mut self.conn()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.v).collect()
    }
}

impl Drop for NovaDb {
    fn drop(&mut self) {
        let Some(name) = &self.name else { return };
        let sql = format!("DROP DATABASE IF EXISTS {name}");
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

fn connect_diesel(backend: Backend, diesel_url: &str) -> AnyConnection {
    match backend {
        Backend::Sqlite => {
            // Tests read while a run writes: wait for its locks, as keymigrate does.
            let mut c = SqliteConnection::establish(diesel_url).expect("connect");
            c.batch_execute("PRAGMA busy_timeout = 30000").expect("busy timeout");
            AnyConnection::Sqlite(c)
        }
        Backend::Mysql => AnyConnection::Mysql(MysqlConnection::establish(diesel_url).expect("connect")),
        Backend::Postgres => AnyConnection::Postgresql(PgConnection::establish(diesel_url).expect("connect")),
    }
}

/// Connects to a database named in SQLAlchemy form (a `cell_mappings.database_connection`, a
/// nova.conf `connection`), the way Nova would reach it: proof that a URL leads somewhere.
pub fn connect(sqlalchemy_url: &str) -> AnyConnection {
    let (backend, url) = if let Some(path) = sqlalchemy_url.strip_prefix("sqlite:///") {
        (Backend::Sqlite, path.split('?').next().unwrap_or(path).to_string())
    } else if let Some(rest) = sqlalchemy_url.strip_prefix("mysql+pymysql://") {
        (Backend::Mysql, format!("mysql://{}", rest.split('?').next().unwrap_or(rest)))
    } else if let Some(rest) = sqlalchemy_url.strip_prefix("postgresql+psycopg2://") {
        (Backend::Postgres, format!("postgres://{}", rest.split('?').next().unwrap_or(rest)))
    } else {
        panic!("not a URL NovaCloud writes: {sqlalchemy_url}")
    };
    connect_diesel(backend, &url)
}

/// A cell: its `cell_mappings` row and its database.
pub struct NovaCell {
    /// `cell_mappings.id`, which `instance_mappings.cell_id` names.
    pub id: i32,
    pub name: String,
    pub uuid: String,
    pub transport_url: String,
    /// `cell_mappings.database_connection` (SQLAlchemy form).
    pub url: String,
    pub db: NovaDb,
}

/// One instance to insert. [`InstanceSpec::new`] is a running instance on `compute-1` without
/// an ephemeral key; the builder methods change one thing each.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub uuid: String,
    /// The compute host; None for an instance never scheduled (cell0's).
    pub host: Option<String>,
    pub project_id: String,
    pub user_id: String,
    pub ephemeral_key_uuid: Option<String>,
    /// Soft-deleted as Nova does it: `deleted = id`, `deleted_at` set.
    pub deleted: bool,
    pub vm_state: String,
    pub task_state: Option<String>,
}

impl Default for InstanceSpec {
    fn default() -> Self {
        InstanceSpec::new()
    }
}

impl InstanceSpec {
    pub fn new() -> InstanceSpec {
        InstanceSpec {
            uuid: uuid4(),
            host: Some("compute-1".into()),
            project_id: "kmtest-project".into(),
            user_id: "kmtest-user".into(),
            ephemeral_key_uuid: None,
            deleted: false,
            vm_state: "active".into(),
            task_state: None,
        }
    }

    /// `ephemeral_key_uuid` (None for NULL).
    pub fn key(mut self, key: Option<&str>) -> InstanceSpec {
        self.ephemeral_key_uuid = key.map(str::to_string);
        self
    }

    pub fn host(mut self, host: Option<&str>) -> InstanceSpec {
        self.host = host.map(str::to_string);
        self
    }

    pub fn owner(mut self, project_id: &str, user_id: &str) -> InstanceSpec {
        self.project_id = project_id.to_string();
        self.user_id = user_id.to_string();
        self
    }

    pub fn vm_state(mut self, vm_state: &str) -> InstanceSpec {
        self.vm_state = vm_state.to_string();
        self
    }

    pub fn task_state(mut self, task_state: Option<&str>) -> InstanceSpec {
        self.task_state = task_state.map(str::to_string);
        self
    }

    /// Deleted by Nova: vm_state `deleted`, no task, then soft-deleted.
    pub fn deleted(mut self) -> InstanceSpec {
        self.deleted = true;
        self.vm_state = "deleted".into();
        self.task_state = None;
        self
    }

    /// What an instance that failed before scheduling looks like: no host, vm_state `error`.
    pub fn unscheduled(self) -> InstanceSpec {
        self.host(None).vm_state("error")
    }
}

/// An API database and cell0, cell1 and cell2, mapped as `nova-manage cell_v2` maps them.
pub struct NovaCloud {
    pub backend: Backend,
    /// `[api_database] connection` (SQLAlchemy form).
    pub api_url: String,
    pub api: NovaDb,
    /// cell0, cell1, cell2, in `cell_mappings.id` order.
    pub cells: Vec<NovaCell>,
    _dir: tempfile::TempDir,
}

/// A random UUID4 in lower case, as `oslo_utils.uuidutils.generate_uuid()` makes Nova's.
pub fn uuid4() -> String {
    uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid().hyphenated().to_string()
}

/// UTC now as SQLAlchemy writes a DateTime (MariaDB's DATETIME keeps the whole seconds).
fn now() -> String {
    chrono::Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

impl NovaCloud {
    pub fn new(backend: Backend) -> NovaCloud {
        let stem = format!("km_nova_{}", rand::rng().random_range(0..u64::MAX) % 1_000_000_000_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let api = NovaDb::new(backend, Schema::Api, dir.path(), &format!("{stem}_api"));
        let mut cells = Vec::new();
        // map_cell0 comes first (the install guide's order), then create_cell for each cell
        for name in ["cell0", "cell1", "cell2"] {
            let db = NovaDb::new(backend, Schema::Cell, dir.path(), &format!("{stem}_{name}"));
            let (cell_uuid, transport_url) =
                if name == "cell0" { (CELL0_UUID.to_string(), "none:///".to_string()) } else { (uuid4(), format!("rabbit://nowhere:5672/{name}")) };
            api.exec(&format!(
                "INSERT INTO cell_mappings (created_at, updated_at, uuid, name, transport_url, database_connection, disabled) \
                 VALUES ({}, NULL, {}, {}, {}, {}, false)",
                q(Some(&now())),
                q(Some(&cell_uuid)),
                q(Some(name)),
                q(Some(&transport_url)),
                q(Some(&db.url))
            ));
            #[derive(QueryableByName)]
            struct Id {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                id: i32,
            }
            let sql = format!("SELECT id FROM cell_mappings WHERE uuid = {}", q(Some(&cell_uuid)));
            let id = diesel::sql_query(&sql).get_result::<Id>(&mut api.conn()).unwrap_or_else(|e| panic!("{sql}: {e}")).id;
            cells.push(NovaCell { id, name: name.to_string(), uuid: cell_uuid, transport_url, url: db.url.clone(), db });
        }
        NovaCloud { backend, api_url: api.url.clone(), api, cells, _dir: dir }
    }

    pub fn cell(&self, name: &str) -> &NovaCell {
        self.cells.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no cell {name}"))
    }

    /// Inserts an instance into `cell` as Nova builds (and, with `spec.deleted`, soft-deletes)
    /// it, and maps it in the API database's `instance_mappings`.
    pub fn insert_instance(&self, cell: &str, spec: &InstanceSpec) {
        let c = self.cell(cell);
        let created = now();
        let short = &spec.uuid[..8];
        // nova.compute.power_state: NOSTATE 0, RUNNING 1, PAUSED 3, SHUTDOWN 4, SUSPENDED 7
        let power_state = match spec.vm_state.as_str() {
            "active" | "rescued" | "resized" => 1,
            "paused" => 3,
            "stopped" | "shelved" | "shelved_offloaded" => 4,
            "suspended" => 7,
            _ => 0,
        };
        let host = spec.host.as_deref();
        let launched_at = host.map(|_| created.as_str());
        c.db.exec(&format!(
            "INSERT INTO instances (created_at, updated_at, uuid, user_id, project_id, image_ref, launch_index, \
             power_state, vm_state, task_state, memory_mb, vcpus, root_gb, ephemeral_gb, instance_type_id, \
             hostname, display_name, reservation_id, availability_zone, host, node, launched_on, launched_at, \
             config_drive, locked, shutdown_terminate, disable_terminate, deleted, cleaned, hidden, ephemeral_key_uuid) \
             VALUES ({created}, {created}, {}, {}, {}, {}, 0, \
             {power_state}, {}, {}, 2048, 1, 20, 10, 42, \
             {name}, {name}, {}, 'nova', {host}, {host}, {host}, {}, \
             '', false, false, false, 0, 0, false, {})",
            q(Some(&spec.uuid)),
            q(Some(&spec.user_id)),
            q(Some(&spec.project_id)),
            q(Some(&uuid4())),
            q(Some(&spec.vm_state)),
            q(spec.task_state.as_deref()),
            q(Some(&format!("r-{}", &uuid4()[..8]))),
            q(launched_at),
            q(spec.ephemeral_key_uuid.as_deref()),
            created = q(Some(&created)),
            name = q(Some(&format!("kmtest-{short}"))),
            host = q(host),
        ));
        if spec.deleted {
            // oslo.db's soft_delete(): deleted takes the row's id; Nova's delete sets terminated_at
            let at = q(Some(&now()));
            c.db.exec(&format!(
                "UPDATE instances SET deleted = id, deleted_at = {at}, terminated_at = {at} WHERE uuid = {}",
                q(Some(&spec.uuid))
            ));
        }
        self.api.exec(&format!(
            "INSERT INTO instance_mappings (created_at, instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ({}, {}, {}, {}, {}, {})",
            q(Some(&now())),
            q(Some(&spec.uuid)),
            c.id,
            q(Some(&spec.project_id)),
            q(Some(&spec.user_id)),
            spec.deleted
        ));
    }

    /// Every column of the instance's row in `cell` (panics when there is no such row).
    pub fn instance(&self, cell: &str, uuid: &str) -> Value {
        let mut rows = self.cell(cell).db.rows("instances", &format!("uuid = {}", q(Some(uuid))));
        assert_eq!(rows.len(), 1, "instance {uuid} in {cell}: {rows:?}");
        rows.remove(0)
    }

    /// Every instance row of `cell`, deleted ones too, by id.
    pub fn instances(&self, cell: &str) -> Vec<Value> {
        self.cell(cell).db.rows("instances", "1 = 1")
    }

    /// The instance's `ephemeral_key_uuid` (panics when there is no such row).
    pub fn ephemeral_key(&self, cell: &str, uuid: &str) -> Option<String> {
        let keys = self.cell(cell).db.texts("instances", "ephemeral_key_uuid", &format!("uuid = {}", q(Some(uuid))));
        assert_eq!(keys.len(), 1, "instance {uuid} in {cell}");
        keys.into_iter().next().flatten()
    }

    /// A nova.conf for this cloud as cell1's services read it: the API database, cell1's
    /// database, `[key_manager] backend` (`barbican` or [`CONF_KEY_MANAGER`]) with `fixed_key` when
    /// given, and encrypted ephemeral storage.
    pub fn nova_conf(&self, fixed_key: Option<&str>, backend: &str) -> String {
        let cell1 = self.cell("cell1");
        let fixed_key = fixed_key.map(|k| format!("fixed_key = {k}\n")).unwrap_or_default();
        format!(
            "[DEFAULT]\nhost = compute-1\ntransport_url = {}\n\n[api_database]\nconnection = {}\n\n[database]\nconnection = {}\n\n\
             [key_manager]\nbackend = {backend}\n{fixed_key}\n[ephemeral_storage_encryption]\nenabled = true\n",
            cell1.transport_url, self.api_url, cell1.url
        )
    }
}
