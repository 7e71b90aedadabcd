//! Nova's encrypted ephemeral disks: the other service whose database can hold the
//! ConfKeyManager's all-zeros key ID. With `[ephemeral_storage_encryption] enabled` (LVM
//! ephemeral disks), Nova stored `instances.ephemeral_key_uuid = 00000000-…` for every instance
//! created while nova.conf's key manager was the ConfKeyManager, keyed by nova.conf's own
//! `fixed_key`. The libvirt driver reads that key whenever it (re)creates the disk (spawn,
//! rebuild, unshelve, evacuate, a hard reboot that recreates the dm-crypt mapping): once
//! `fixed_key` is gone from nova.conf, those fail and the disk's data cannot be opened.
//!
//! What keymigrate reads: nova.conf (`--nova-config-file`, the same oslo.config reader as for
//! cinder.conf) for `[api_database] connection`, `[database] connection` (the default a cell
//! mapping's URL template is filled from, as Nova's `CellMapping.format_db_url` does), the key
//! manager and `fixed_key`; the API database's `cell_mappings` for every cell's database (cell0,
//! whose mapping's own UUID is the all-zeros ID, included: it holds instances that failed before
//! scheduling, and Nova creates the key before scheduling); in each cell, the live instances
//! (`deleted = 0`) whose `ephemeral_key_uuid` is exactly the all-zeros ID. Nothing is written.

use std::path::{Path, PathBuf};

use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable, Text};

use crate::cinder::ZERO_KEY_ID;
use crate::conditions::FixedKey;
use crate::conf::{self, Conf, ConfigArg, Opt};
use crate::db::{self, Access, AnyConnection, Backend, DbUrl};
use crate::error::{Error, Result};
use crate::secret::Sensitive;

const API_CONNECTION: Opt = Opt { group: "api_database", name: "connection", deprecated: &[], default: None };
/// Nova's own `[database] connection`, without Cinder's default.
const CELL_CONNECTION: Opt = Opt { group: "database", name: "connection", deprecated: &[], default: None };
const EPHEMERAL_ENABLED: Opt = Opt { group: "ephemeral_storage_encryption", name: "enabled", deprecated: &[], default: Some("false") };

/// Instances read per query.
const PAGE: i64 = 1000;

/// What nova.conf says.
pub struct NovaConf {
    /// The files read, for messages.
    pub files: Vec<PathBuf>,
    /// `[api_database] connection`, translated.
    pub api: DbUrl,
    /// `[database] connection` as written: what a cell mapping's template is filled from.
    database: Option<Sensitive>,
    /// `[key_manager] backend`.
    pub backend: String,
    /// nova.conf's own `fixed_key`, when set.
    pub key: Option<FixedKey>,
    /// `[ephemeral_storage_encryption] enabled`.
    pub ephemeral_encryption: bool,
}

impl NovaConf {
    /// Reads `paths` in order, as nova-compute reads its `--config-file`s. `cwd` resolves a
    /// relative SQLite path.
    pub fn load(paths: &[PathBuf], cwd: &Path) -> Result<NovaConf> {
        let args: Vec<ConfigArg> = paths.iter().cloned().map(ConfigArg::File).collect();
        let conf = Conf::load(&args, std::iter::empty::<(String, String)>())?;
        let origin = || paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let api = conf.get(&API_CONNECTION)?.filter(|v| !v.value.is_empty()).ok_or_else(|| {
            Error::config_value(
                "[api_database] connection",
                format!("is not set in {}: keymigrate finds Nova's cells through the API database", origin()),
            )
        })?;
        let api_url = db::url::translate(api.value.expose(), cwd)
            .map_err(|e| Error::config_value("[api_database] connection", format!("{e} ({})", api.origin)))?;
        // Refused before any command runs; a cell's URL is checked when it is opened.
        db::require_built_in(&api_url)?;
        let database = conf.get(&CELL_CONNECTION)?.filter(|v| !v.value.is_empty()).map(|v| v.value);
        let backend = conf.get(&conf::KEY_MANAGER_BACKEND)?.map(|v| v.value.expose().trim().to_string()).unwrap_or_default();
        let key = match conf.get(&conf::FIXED_KEY)?.filter(|v| !v.value.is_empty()) {
            Some(v) => Some(FixedKey::from_hex(v.value.expose()).map_err(|e| match e {
                Error::ConfigValue { option, message } => Error::ConfigValue { option: format!("nova.conf {option}"), message: format!("{message} ({})", v.origin) },
                other => other,
            })?),
            None => None,
        };
        let ephemeral_encryption = conf.get_bool(&EPHEMERAL_ENABLED)?;
        Ok(NovaConf { files: paths.to_vec(), api: api_url, database, backend, key, ephemeral_encryption })
    }

    /// Nova's key manager is still the ConfKeyManager.
    pub fn conf_key_manager(&self) -> bool {
        self.backend.rsplit('.').next() == Some("ConfKeyManager")
    }
}

/// One row of the API database's `cell_mappings`.
pub struct Cell {
    pub uuid: String,
    pub name: Option<String>,
    /// The cell database's URL, translated; or why it cannot be used.
    pub url: std::result::Result<DbUrl, String>,
}

impl Cell {
    /// `name(uuid)`, as Nova names a cell in its logs.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{n}({})", self.uuid),
            _ => self.uuid.clone(),
        }
    }
}

/// A live instance on the all-zeros ephemeral key ID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub uuid: String,
    pub host: Option<String>,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub vm_state: Option<String>,
    /// An operation in progress: the instance is left until it ends.
    pub task_state: Option<String>,
}

/// What `migrate --nova` is to do with an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    /// A secret in the instance's project, and the row swapped.
    NewSecret,
    /// Left for a later run: an operation is in progress.
    Wait,
    /// Reported, never changed; the reason says why.
    Reported(&'static str),
}

impl std::fmt::Display for InstanceAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceAction::NewSecret => f.write_str("new secret"),
            InstanceAction::Wait => f.write_str("wait: an operation is in progress (task_state)"),
            InstanceAction::Reported(reason) => write!(f, "reported: {reason}"),
        }
    }
}

pub const NO_PROJECT: &str = "the instance has no project for the secret to belong to";

pub fn rule(instance: &Instance) -> InstanceAction {
    if !instance.project_id.as_deref().is_some_and(crate::cinder::is_owner) {
        return InstanceAction::Reported(NO_PROJECT);
    }
    if instance.task_state.as_deref().is_some_and(|t| !t.is_empty()) {
        return InstanceAction::Wait;
    }
    InstanceAction::NewSecret
}

/// The cells the API database maps, in its order (cell0 first when Nova made it first).
pub fn cells(nova: &NovaConf, cwd: &Path) -> Result<Vec<Cell>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        uuid: String,
        #[diesel(sql_type = Nullable<Text>)]
        name: Option<String>,
        #[diesel(sql_type = Text)]
        database_connection: String,
    }
    let mut conn = db::open(&nova.api, Access::ReadOnly)?;
    let fail = |e: diesel::result::Error| Error::Database { url: nova.api.redacted.clone(), message: format!("reading cell_mappings: {e}") };
    let rows: Vec<Row> = diesel::sql_query("SELECT uuid, name, database_connection FROM cell_mappings ORDER BY id").load(&mut conn).map_err(fail)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let raw = Sensitive::new(r.database_connection);
            let url = format_db_url(raw.expose(), nova.database.as_ref().map(Sensitive::expose))
                .and_then(|u| db::url::translate(u.expose(), cwd).map_err(|e| e.to_string()));
            Cell { uuid: r.uuid, name: r.name, url }
        })
        .collect())
}

/// A cell mapping's `database_connection`, its template filled from `default` (nova.conf's
/// `[database] connection`) as Nova's `CellMapping._format_url` does with Python's
/// `str.format`: `{scheme}`, `{username}`, `{password}`, `{hostname}`, `{port}`, `{path}`,
/// `{query}`, `{fragment}`; a part the default lacks is `None`, as Python writes it. A URL
/// without `{` is used as it is.
pub fn format_db_url(url: &str, default: Option<&str>) -> std::result::Result<Sensitive, String> {
    if !url.contains('{') {
        return Ok(Sensitive::new(url));
    }
    let Some(default) = default else {
        return Err("its database_connection is a template, but nova.conf has no [database] connection to fill it".into());
    };
    let parts = UrlParts::parse(default);
    let mut out = zeroize::Zeroizing::new(String::with_capacity(url.len() + default.len()));
    let mut rest = url;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("its database_connection template has a single '}'".into());
        }
        let Some(end) = tail.find('}') else {
            return Err("its database_connection template has an unclosed '{'".into());
        };
        let field = &tail[1..end];
        let value = match field {
            "scheme" => Some(parts.scheme.clone()),
            "username" => parts.username.clone(),
            "password" => parts.password.clone(),
            "hostname" => parts.hostname.clone(),
            "port" => parts.port.clone(),
            "path" => Some(parts.path.clone()),
            "query" => Some(parts.query.clone()),
            "fragment" => Some(parts.fragment.clone()),
            other => return Err(format!("its database_connection template names {{{other}}}, which Nova does not fill")),
        };
        out.push_str(value.as_deref().unwrap_or("None"));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(Sensitive::new(out.as_str()))
}

/// A URL split as Python's `urllib.parse.urlparse` splits it, for the parts Nova fills.
struct UrlParts {
    scheme: String,
    username: Option<String>,
    password: Option<String>,
    hostname: Option<String>,
    port: Option<String>,
    path: String,
    query: String,
    fragment: String,
}

impl UrlParts {
    fn parse(url: &str) -> UrlParts {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => (String::new(), url),
        };
        let (rest, fragment) = rest.split_once('#').map_or((rest, ""), |(a, b)| (a, b));
        let (rest, query) = rest.split_once('?').map_or((rest, ""), |(a, b)| (a, b));
        let (netloc, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match netloc.rfind('@') {
            Some(i) => (Some(&netloc[..i]), &netloc[i + 1..]),
            None => (None, netloc),
        };
        let (username, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((n, p)) => (Some(n.to_string()), Some(p.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let (hostname, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, p)) => (h.to_string(), p.strip_prefix(':').filter(|p| !p.is_empty()).map(String::from)),
                None => (v6.to_string(), None),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.to_string()).filter(|p| !p.is_empty())),
                None => (hostport.to_string(), None),
            }
        };
        UrlParts {
            scheme,
            username,
            password,
            hostname: Some(hostname.to_ascii_lowercase()).filter(|h| !h.is_empty()),
            // Python's `port` is an integer: leading zeros go.
            port: port.map(|p| p.parse::<u32>().map_or(p, |n| n.to_string())),
            path: path.trim_start_matches('/').to_string(),
            query: query.to_string(),
            fragment: fragment.to_string(),
        }
    }
}

/// A cell database opened for `migrate --nova`: the compare-and-swap of one instance's key ID,
/// and the read that tells what became of it.
pub struct CellDb {
    conn: AnyConnection,
    pub url: DbUrl,
}

impl CellDb {
    pub fn open(url: &DbUrl, access: Access) -> Result<CellDb> {
        Ok(CellDb { conn: db::open(url, access)?, url: url.clone() })
    }

    fn fail(&self, context: &str, e: diesel::result::Error) -> Error {
        Error::Database { url: self.url.redacted.clone(), message: format!("{context}: {e}") }
    }

    /// `UPDATE instances SET ephemeral_key_uuid = new` for this live instance, only while it is
    /// still exactly the all-zeros ID and no task is in progress. `true`: this statement changed
    /// the row. Nothing else of the row changes (not even `updated_at`).
    pub fn swap(&mut self, uuid: &str, new: &str) -> Result<bool> {
        let zero = db::sql::exact(self.url.backend, "ephemeral_key_uuid", "=", ZERO_KEY_ID);
        let sql = format!(
            "UPDATE instances SET ephemeral_key_uuid = $1 WHERE uuid = $2 AND deleted = 0 AND {zero} \
             AND (task_state IS NULL OR task_state = '')"
        );
        let sql = self.placeholders(sql);
        let n = diesel::sql_query(sql)
            .bind::<Text, _>(new)
            .bind::<Text, _>(uuid)
            .execute(&mut self.conn)
            .map_err(|e| self.fail("updating instances", e))?;
        Ok(n == 1)
    }

    /// `UPDATE instances SET ephemeral_key_uuid = '0…0'` for this live instance, only while it is
    /// exactly `secret` (rollback). `true`: this statement changed the row.
    pub fn unswap(&mut self, uuid: &str, secret: &str) -> Result<bool> {
        let key = db::sql::bytewise(self.url.backend, "ephemeral_key_uuid");
        let sql = self.placeholders(format!(
            "UPDATE instances SET ephemeral_key_uuid = '{ZERO_KEY_ID}' WHERE uuid = $1 AND deleted = 0 AND {key} = $2"
        ));
        let n = diesel::sql_query(sql)
            .bind::<Text, _>(uuid)
            .bind::<Text, _>(secret)
            .execute(&mut self.conn)
            .map_err(|e| self.fail("updating instances", e))?;
        Ok(n == 1)
    }

    /// The live instance's `ephemeral_key_uuid` and `task_state` now; `None` when there is no
    /// live instance with this UUID.
    pub fn state(&mut self, uuid: &str) -> Result<Option<(Option<String>, Option<String>)>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<Text>)]
            ephemeral_key_uuid: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            task_state: Option<String>,
        }
        let sql = self.placeholders("SELECT ephemeral_key_uuid, task_state FROM instances WHERE uuid = $1 AND deleted = 0".to_string());
        let rows: Vec<Row> = diesel::sql_query(sql).bind::<Text, _>(uuid).load(&mut self.conn).map_err(|e| self.fail("reading instances", e))?;
        Ok(rows.into_iter().next().map(|r| (r.ephemeral_key_uuid, r.task_state)))
    }

    /// The live instances on exactly the all-zeros ephemeral key ID; scoped to `hosts` when
    /// it is not empty.
    pub fn zero(&mut self, hosts: &[String]) -> Result<Vec<Instance>> {
        let zero = db::sql::exact(self.url.backend, "ephemeral_key_uuid", "=", ZERO_KEY_ID);
        Ok(self.live_instances(&zero, hosts)?.into_iter().map(|(i, _)| i).collect())
    }

    /// Live instances whose key ID is not the all-zeros ID and not NULL: what verify and
    /// rollback look at.
    pub fn keyed(&mut self, hosts: &[String]) -> Result<Vec<(Instance, String)>> {
        let not_zero = db::sql::exact(self.url.backend, "ephemeral_key_uuid", "<>", ZERO_KEY_ID);
        let condition = format!("ephemeral_key_uuid IS NOT NULL AND {not_zero}");
        Ok(self.live_instances(&condition, hosts)?.into_iter().filter_map(|(i, k)| Some((i, k?))).collect())
    }

    /// The live instances (`deleted = 0`) that meet `condition` (constant SQL), with their key
    /// ID, by `id`, a page at a time; scoped to `hosts` when it is not empty.
    fn live_instances(&mut self, condition: &str, hosts: &[String]) -> Result<Vec<(Instance, Option<String>)>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Integer)]
            id: i32,
            #[diesel(sql_type = Text)]
            uuid: String,
            #[diesel(sql_type = Nullable<Text>)]
            host: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            project_id: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            user_id: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            vm_state: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            task_state: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            ephemeral_key_uuid: Option<String>,
        }
        let sql = self.placeholders(format!(
            "SELECT id, uuid, host, project_id, user_id, vm_state, task_state, ephemeral_key_uuid FROM instances \
             WHERE deleted = 0 AND {condition} AND id > $1 ORDER BY id LIMIT {PAGE}"
        ));
        let mut found = Vec::new();
        let mut after = 0i32;
        loop {
            let page: Vec<Row> =
                diesel::sql_query(&sql).bind::<Integer, _>(after).load(&mut self.conn).map_err(|e| self.fail("reading instances", e))?;
            let full = page.len() as i64 == PAGE;
            for r in page {
                after = r.id;
                if hosts.is_empty() || r.host.as_ref().is_some_and(|h| hosts.contains(h)) {
                    let i = Instance { uuid: r.uuid, host: r.host, project_id: r.project_id, user_id: r.user_id, vm_state: r.vm_state, task_state: r.task_state };
                    found.push((i, r.ephemeral_key_uuid));
                }
            }
            if !full {
                return Ok(found);
            }
        }
    }

    fn placeholders(&self, sql: String) -> String {
        match self.url.backend {
            Backend::Postgres => sql,
            _ => sql.replace("$1", "?").replace("$2", "?"),
        }
    }
}

/// A cell, its database opened, and its live instances with the key ID each names.
pub type KeyedCell = (Cell, CellDb, Vec<(Instance, String)>);

/// Every live instance, in every cell, whose key ID is set and is not the all-zeros ID: what
/// `verify --nova` and `rollback --nova` look at. A cell that cannot be read is an error: neither
/// may say all is well without it.
pub fn keyed_instances(nova: &NovaConf, hosts: &[String], cwd: &Path, access: Access) -> Result<Vec<KeyedCell>> {
    let mut out = Vec::new();
    for cell in cells(nova, cwd)? {
        let url = match &cell.url {
            Ok(u) => u.clone(),
            Err(e) => return Err(Error::config_value("cell_mappings.database_connection", format!("Nova cell {}: {e}", cell.label()))),
        };
        let mut db = CellDb::open(&url, access)?;
        let keyed = db.keyed(hosts)?;
        out.push((cell, db, keyed));
    }
    Ok(out)
}

/// One cell's findings.
pub struct CellReport {
    pub uuid: String,
    pub name: Option<String>,
    pub label: String,
    /// The cell database, password removed; `None` when its URL could not be made.
    pub url: Option<String>,
    /// The cell database's URL, for `migrate`.
    pub db: Option<DbUrl>,
    /// Why the cell could not be read; its instances are unknown.
    pub error: Option<String>,
    pub instances: Vec<Instance>,
}

/// What `--nova` found: every cell, and what nova.conf says.
pub struct NovaReport {
    pub cells: Vec<CellReport>,
    pub backend: String,
    pub conf_key_manager: bool,
    pub key_bits: Option<usize>,
    /// nova.conf's `fixed_key` equals cinder.conf's; `None` when either is unset.
    pub same_key_as_cinder: Option<bool>,
    pub ephemeral_encryption: bool,
}

impl NovaReport {
    /// Reads every cell. A cell that cannot be read is reported with its error; the others are
    /// still read.
    pub fn look(nova: &NovaConf, cinder_key: Option<&FixedKey>, hosts: &[String], cwd: &Path) -> Result<NovaReport> {
        let mut cells = Vec::new();
        for cell in self::cells(nova, cwd)? {
            let label = cell.label();
            let (url, result) = match &cell.url {
                Ok(url) => (Some(url.redacted.clone()), CellDb::open(url, Access::ReadOnly).and_then(|mut c| c.zero(hosts)).map_err(|e| e.to_string())),
                Err(e) => (None, Err(e.clone())),
            };
            let (instances, error) = match result {
                Ok(i) => (i, None),
                Err(e) => {
                    log::error!("Cannot read Nova cell {label}: {e}");
                    (Vec::new(), Some(e))
                }
            };
            let db = cell.url.ok();
            cells.push(CellReport { uuid: cell.uuid, name: cell.name, label, url, db, error, instances });
        }
        let same_key_as_cinder = match (&nova.key, cinder_key) {
            (Some(n), Some(c)) => Some(n.bytes() == c.bytes()),
            _ => None,
        };
        let report = NovaReport {
            cells,
            backend: nova.backend.clone(),
            conf_key_manager: nova.conf_key_manager(),
            key_bits: nova.key.as_ref().map(FixedKey::bit_length),
            same_key_as_cinder,
            ephemeral_encryption: nova.ephemeral_encryption,
        };
        report.log(nova);
        Ok(report)
    }

    fn log(&self, nova: &NovaConf) {
        let files = nova.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        log::info!("Nova: {} cell(s) mapped in the API database {} (from {files})", self.cells.len(), nova.api.redacted);
        if self.conf_key_manager {
            log::warn!(
                "Nova's [key_manager] backend is still the ConfKeyManager ({}): switch every nova.conf to barbican before any key changes (Nova's ConfKeyManager can fetch no other key)",
                self.backend
            );
        }
        match (self.key_bits, self.same_key_as_cinder) {
            (None, _) if self.instances() > 0 => log::warn!(
                "nova.conf has no fixed_key, but {} instance(s) use the all-zeros ephemeral key ID: their disks need the key Nova had",
                self.instances()
            ),
            (Some(_), Some(false)) => log::warn!(
                "nova.conf's fixed_key differs from cinder.conf's: Nova's instances need nova.conf's key, Cinder's volumes cinder.conf's"
            ),
            (Some(_), Some(true)) => log::info!("nova.conf's fixed_key is the same as cinder.conf's"),
            _ => {}
        }
        if self.instances() == 0 {
            log::info!("No Nova instances are using the ConfKeyManager's all-zeros ephemeral key ID.");
        } else {
            log::warn!(
                "There are still {} Nova instance(s) whose ephemeral_key_uuid is the ConfKeyManager's all-zeros key ID: keep fixed_key in nova.conf (migrate --nova moves them).",
                self.instances()
            );
        }
        let unreadable = self.cells.iter().filter(|c| c.error.is_some()).count();
        if unreadable > 0 {
            log::warn!("{unreadable} Nova cell database(s) could not be read: their instances are not counted");
        }
    }

    /// Instances `migrate --nova` takes, now or once their task ends.
    pub fn to_migrate(&self) -> usize {
        self.cells.iter().flat_map(|c| &c.instances).filter(|i| rule(i) != InstanceAction::Reported(NO_PROJECT)).count()
    }

    /// Instances on the all-zeros ID, in every readable cell.
    pub fn instances(&self) -> usize {
        self.cells.iter().map(|c| c.instances.len()).sum()
    }

    pub fn unreadable_cells(&self) -> usize {
        self.cells.iter().filter(|c| c.error.is_some()).count()
    }

    /// Nothing left: every cell read, no instance on the all-zeros ID.
    pub fn done(&self) -> bool {
        self.instances() == 0 && self.unreadable_cells() == 0
    }

    /// Instances on the all-zeros ID per compute host (`None`: no host), sorted.
    pub fn by_host(&self) -> std::collections::BTreeMap<Option<String>, usize> {
        let mut m = std::collections::BTreeMap::new();
        for i in self.cells.iter().flat_map(|c| &c.instances) {
            *m.entry(i.host.clone()).or_insert(0) += 1;
        }
        m
    }

    pub const HEADERS: [&'static str; 7] = ["Cell", "Instance", "Host", "Project", "VM State", "Task State", "Action"];

    /// The table's rows: one per instance, and one per cell that could not be read.
    pub fn cells_rows(&self) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for c in &self.cells {
            if let Some(e) = &c.error {
                rows.push(vec![c.label.clone(), String::new(), String::new(), String::new(), String::new(), String::new(), format!("unreadable: {e}")]);
            }
            for i in &c.instances {
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                rows.push(vec![c.label.clone(), i.uuid.clone(), o(&i.host), o(&i.project_id), o(&i.vm_state), o(&i.task_state), rule(i).to_string()]);
            }
        }
        rows
    }

    pub fn json(&self) -> serde_json::Value {
        let cells: Vec<serde_json::Value> = self
            .cells
            .iter()
            .map(|c| {
                let instances: Vec<serde_json::Value> = c
                    .instances
                    .iter()
                    .map(|i| {
                        let action = rule(i);
                        serde_json::json!({"uuid": i.uuid, "host": i.host, "project_id": i.project_id, "user_id": i.user_id,
                            "vm_state": i.vm_state, "task_state": i.task_state, "action": action.to_string(),
                            "migrate": action == InstanceAction::NewSecret})
                    })
                    .collect();
                serde_json::json!({"uuid": c.uuid, "name": c.name, "database": c.url, "error": c.error, "instances": instances})
            })
            .collect();
        let by_host: Vec<serde_json::Value> =
            self.by_host().into_iter().map(|(h, n)| serde_json::json!({"host": h, "instances": n})).collect();
        serde_json::json!({
            "cells": cells,
            "instances": self.instances(),
            "unreadable_cells": self.unreadable_cells(),
            "by_host": by_host,
            "key_manager_backend": self.backend,
            "conf_key_manager": self.conf_key_manager,
            "fixed_key_bits": self.key_bits,
            "same_key_as_cinder": self.same_key_as_cinder,
            "ephemeral_storage_encryption": self.ephemeral_encryption,
            "done": self.done(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_template_is_filled_as_nova_fills_it() {
        let default = "mysql+pymysql://nova:p%40ss@DB.example:3306/nova_cell1?charset=utf8#frag";
        let f = |t: &str| format_db_url(t, Some(default)).map(|s| s.expose().to_string());
        assert_eq!(f("{scheme}://{username}:{password}@{hostname}:{port}/nova_cell2?{query}").as_deref(),
            Ok("mysql+pymysql://nova:p%40ss@db.example:3306/nova_cell2?charset=utf8"));
        assert_eq!(f("{scheme}://{username}:{password}@{hostname}/{path}").as_deref(), Ok("mysql+pymysql://nova:p%40ss@db.example/nova_cell1"));
        assert_eq!(f("sqlite:////var/lib/nova/{{cell}}.sqlite").as_deref(), Ok("sqlite:////var/lib/nova/{cell}.sqlite"));
        assert_eq!(f("{fragment}").as_deref(), Ok("frag"));
        // No port in the default: Python writes None.
        assert_eq!(format_db_url("{hostname}:{port}", Some("mysql://h/db")).map(|s| s.expose().to_string()).as_deref(), Ok("h:None"));
        assert_eq!(format_db_url("{hostname}", Some("mysql://[::1]:3306/db")).map(|s| s.expose().to_string()).as_deref(), Ok("::1"));
        assert!(f("{transport_url}").unwrap_err().contains("{transport_url}"));
        assert!(f("{scheme").is_err());
        assert!(f("{scheme}}").is_err());
        // Nova formats only with a default at hand, and a URL without `{` comes out unchanged.
        assert_eq!(f("x}").as_deref(), Ok("x}"));
        // Not a template: as it is, whatever the default.
        assert_eq!(format_db_url("sqlite:////tmp/x.sqlite", None).map(|s| s.expose().to_string()).as_deref(), Ok("sqlite:////tmp/x.sqlite"));
        assert!(format_db_url("{scheme}://x", None).is_err());
        // An error never shows the default's password.
        for t in ["{nope}", "{scheme", "{scheme}}"] {
            assert!(!f(t).unwrap_err().contains("p%40ss"));
        }
    }

    #[test]
    fn an_instance_waits_for_its_task_and_needs_a_project() {
        let i = Instance { uuid: "u".into(), host: Some("c1".into()), project_id: Some("p".into()), user_id: None, vm_state: Some("active".into()), task_state: None };
        assert_eq!(rule(&i), InstanceAction::NewSecret);
        assert_eq!(rule(&Instance { task_state: Some("rebuilding".into()), ..i.clone() }), InstanceAction::Wait);
        assert_eq!(rule(&Instance { task_state: Some(String::new()), ..i.clone() }), InstanceAction::NewSecret);
        for p in [None, Some(String::new()), Some("  ".into())] {
            assert_eq!(rule(&Instance { project_id: p, ..i.clone() }), InstanceAction::Reported(NO_PROJECT));
        }
    }
}
