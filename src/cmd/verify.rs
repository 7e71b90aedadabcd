//! `keymigrate verify`: before fixed_key is removed, prove that every row keymigrate migrated
//! points at a secret that holds exactly the fixed key and that the row's owner may read.
//! Rows keymigrate migrated are known by their secret's name (`keymigrate-…`); rows on any other
//! key are counted, not judged. Exit 0 when every checked row holds, 2 otherwise.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use crate::barbican::{self, ApiError, Barbican};
use crate::cli::VerifyArgs;
use crate::conditions::{Conditions, FixedKey};
use crate::db::{Access, Cursor, Db};
use crate::error::{Error, Outcome, Result};
use crate::keystone::Keystone;
use crate::cinder::Table;
use crate::output::{Format, Listing};
use crate::plan::{self, Keyed};
use crate::settings::{Services, Settings};

const HEADERS: [&str; 4] = ["Table", "ID", "Key ID", "Result"];

/// What Barbican says about one secret, as the service user.
#[derive(Debug, Clone)]
pub enum SecretState {
    /// Not a secret keymigrate made (another name, another project, not a UUID).
    NotOurs,
    /// The row points at a secret that does not exist.
    Missing,
    /// A keymigrate secret: whether it holds exactly the fixed key, and who may read it.
    Ours { holds_key: bool, readers: Vec<String> },
}

/// Looks secrets up once each; rows sharing a secret reuse the answer.
pub struct Inspector<'a> {
    pub barbican: &'a Barbican,
    pub key: &'a FixedKey,
    cache: HashMap<String, SecretState>,
}

impl<'a> Inspector<'a> {
    pub fn new(barbican: &'a Barbican, key: &'a FixedKey) -> Inspector<'a> {
        Inspector { barbican, key, cache: HashMap::new() }
    }

    pub fn facts(&mut self, secret: &str) -> Result<SecretState> {
        if let Some(f) = self.cache.get(secret) {
            return Ok(f.clone());
        }
        let facts = self.look(secret)?;
        if self.cache.len() > 10_000 {
            self.cache.clear();
        }
        self.cache.insert(secret.to_string(), facts.clone());
        Ok(facts)
    }

    fn look(&self, secret: &str) -> Result<SecretState> {
        if !barbican::is_uuid(secret) {
            return Ok(SecretState::NotOurs);
        }
        let name = match self.barbican.name_of(secret) {
            Ok(Some(name)) => name,
            Ok(None) => return Ok(SecretState::Missing),
            Err(ApiError::Forbidden(_)) => return Ok(SecretState::NotOurs),
            Err(e) => return Err(Error::Service(e.to_string())),
        };
        if !name.starts_with("keymigrate-") {
            return Ok(SecretState::NotOurs);
        }
        let payload = self.barbican.payload(secret).map_err(|e| Error::Service(e.to_string()))?;
        let (readers, _) = self.barbican.read_acl(secret).map_err(|e| Error::Service(e.to_string()))?;
        Ok(SecretState::Ours { holds_key: payload.as_slice() == self.key.bytes(), readers })
    }
}

/// Connects to Keystone and Barbican for a command that needs the fixed key.
pub fn connect<'s>(settings: &'s Settings, what: &str) -> Result<(&'s FixedKey, &'s Services, Barbican)> {
    let (Conditions::Ready { key, .. }, Some(services)) = (&settings.conditions, &settings.services) else {
        return Err(Error::Service(format!(
            "{what} compares secrets with [key_manager] fixed_key, so it needs fixed_key set and the backend set to \
             Barbican: {}",
            settings.conditions.message()
        )));
    };
    let keystone = Arc::new(Keystone::new(services.keystone.clone(), services.retry)?);
    let barbican = Barbican::connect(&services.barbican, keystone, services.retry)?;
    Ok((key, services, barbican))
}

/// The verdict on one row.
pub fn judge(row: &Keyed, facts: &SecretState) -> Option<&'static str> {
    match facts {
        SecretState::NotOurs => None,
        SecretState::Missing => Some("secret missing"),
        SecretState::Ours { holds_key: false, .. } => Some("secret does not hold the fixed key"),
        SecretState::Ours { readers, .. } => match &row.owner {
            Some(o) if readers.contains(o) => Some("ok"),
            _ => Some("owner cannot read the secret"),
        },
    }
}

pub fn run(settings: &Settings, args: &VerifyArgs, out: &mut dyn Write) -> Result<Outcome> {
    super::log_conditions(&settings.conditions);
    let (key, _, barbican) = connect(settings, "verify")?;
    let mut db = Db::connect(&settings.database, Access::ReadOnly)?;
    let mut inspector = Inspector::new(&barbican, key);
    let format = args.output.format.unwrap_or(Format::Table);
    let (mut ok, mut bad, mut others) = (0u64, 0u64, 0u64);
    let mut rows_json = Vec::new();
    {
        let mut table = (format != Format::Json).then(|| Listing::new(out, format, &HEADERS, &args.output.column)).transpose()?;
        for t in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End {
                for row in plan::keyed_page(&mut db, &settings.scope, t, &mut cursor)? {
                    let facts = inspector.facts(&row.key)?;
                    let Some(verdict) = judge(&row, &facts) else {
                        others += 1;
                        continue;
                    };
                    if verdict == "ok" {
                        ok += 1;
                    } else {
                        bad += 1;
                        log::error!("{} {}: {verdict} (key ID {})", row.table.noun(), row.id, row.key);
                    }
                    match table.as_mut() {
                        Some(table) => table.row(vec![row.table.name().into(), row.id.clone(), row.key.clone(), verdict.into()])?,
                        None => rows_json.push(serde_json::json!({"table": row.table, "id": row.id, "key_id": row.key,
                            "result": verdict, "ok": verdict == "ok"})),
                    }
                }
            }
        }
        if let Some(table) = table {
            table.finish()?;
        }
    }
    // Rows still on the all-zeros ID are not verify's to judge, but fixed_key cannot go yet.
    let (left, _) = plan::tally(&mut db, &settings.scope, plan::Lookup::BOUNDED)?;
    if left.units() > 0 {
        log::warn!(
            "{} row(s) in scope still use the all-zeros key ID: run `keymigrate migrate` before removing fixed_key",
            left.units()
        );
    }
    if format == Format::Json {
        let doc = serde_json::json!({"scope": super::scope_json(&settings.scope), "rows": rows_json, "ok": ok, "problems": bad,
            "not_made_by_keymigrate": others, "still_on_all_zeros": left.units()});
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)?;
    }
    log::info!(
        "Verified {} row(s) migrated by keymigrate in scope [{}]: {ok} hold the fixed key and are readable by their owner, {bad} do not; {others} row(s) on keys keymigrate did not make",
        ok + bad,
        settings.scope.describe()
    );
    Ok(if bad == 0 { Outcome::Done } else { Outcome::NeedsOperator })
}
