//! What `verify` and `rollback` both need: connecting to Barbican with the fixed key, and
//! looking at the secret a migrated row points at (once per secret) to judge whether it holds
//! exactly the fixed key and whether the row's owner may read it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::barbican::{self, ApiError, Barbican};
use crate::conditions::{Conditions, FixedKey};
use crate::error::{Error, Result};
use crate::keystone::Keystone;
use crate::plan::Keyed;
use crate::settings::{Services, Settings};

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

    pub fn state(&mut self, secret: &str) -> Result<SecretState> {
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
