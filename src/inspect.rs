//! What `verify` and `rollback` both need: connecting to Barbican with the fixed key, and
//! looking at the secret a migrated row points at (once per secret and project) to judge
//! whether it holds exactly the fixed key and whether the row's users may read it.
//!
//! A secret keymigrate made lives in one of two places. In Cinder's service project
//! (`--secret-owner service`), the `[keystone_authtoken]` identity reads it and its ACL must
//! name the row's owner. In the row's own project (`--secret-owner project`), only a token
//! scoped to that project reads it (the identity of [`Projects`], with a role grant if it has
//! none there); Barbican's policy then lets every member of the project read it, unless its ACL
//! turned project access off. A mixed database (some rows of each kind) is judged row by row.

use std::collections::HashMap;
use std::sync::Arc;

use crate::barbican::{self, ApiError, Barbican};
use crate::conditions::{Conditions, FixedKey};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::keystone::Keystone;
use crate::plan::Keyed;
use crate::projects::Projects;
use crate::scope::Scope;
use crate::settings::{Services, Settings};

/// Where a keymigrate secret was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Cinder's service project: these users are on its read ACL.
    Service { readers: Vec<String> },
    /// The row's own project; whether its members may read it (the ACL's project access), and
    /// the users its ACL names besides (`--shared-images acl`).
    Project { project: String, project_access: bool, readers: Vec<String> },
    /// Neither the service identity nor a token of the row's project may read it.
    Unreadable,
}

/// What Barbican says about one secret.
#[derive(Debug, Clone)]
pub enum SecretState {
    /// Not a secret keymigrate made (another name, not a UUID, or one it may not even see).
    NotOurs,
    /// The row points at a secret that does not exist.
    Missing,
    /// A keymigrate secret: whether it holds exactly the fixed key, and where it lives.
    Ours { holds_key: bool, place: Place },
}

/// Looks secrets up once each; rows sharing a secret reuse the answer.
pub struct Inspector<'a> {
    pub barbican: Arc<Barbican>,
    pub key: &'a FixedKey,
    cache: HashMap<(String, Option<String>), SecretState>,
    projects: Option<Projects>,
    /// How to act in the rows' projects, once a secret needs it.
    admin: Option<&'a Services>,
    scope: &'a Scope,
    /// The scope's journal, for the role grants; opened on first need when not given.
    journal: Option<Arc<Journal>>,
    /// Whether a secret the service identity may not even see is looked for in the row's
    /// project (`--secret-owner project`).
    look_in_projects: bool,
}

impl<'a> Inspector<'a> {
    /// `admin`: the identity for secrets in the rows' own projects (`None` looks in Cinder's
    /// service project only); `journal`: the scope's journal when the caller holds it already
    /// (it records the role grants; otherwise it is opened, and the scope locked, on first need).
    pub fn new(
        barbican: Arc<Barbican>,
        key: &'a FixedKey,
        admin: Option<&'a Services>,
        scope: &'a Scope,
        journal: Option<Arc<Journal>>,
        look_in_projects: bool,
    ) -> Inspector<'a> {
        Inspector { barbican, key, cache: HashMap::new(), projects: None, admin, scope, journal, look_in_projects }
    }

    /// The state of `secret` for a row of `project`.
    pub fn state(&mut self, secret: &str, project: Option<&str>) -> Result<SecretState> {
        let k = (secret.to_string(), project.map(String::from));
        if let Some(f) = self.cache.get(&k) {
            return Ok(f.clone());
        }
        let facts = self.look(secret, project)?;
        if self.cache.len() > 10_000 {
            self.cache.clear();
        }
        self.cache.insert(k, facts.clone());
        Ok(facts)
    }

    /// The Barbican that acts where `place` is: to delete the secret, say.
    pub fn barbican_for(&mut self, place: &Place) -> Result<Option<Arc<Barbican>>> {
        match place {
            Place::Service { .. } => Ok(Some(self.barbican.clone())),
            Place::Project { project, .. } => Ok(self.in_project(project)?.ok()),
            Place::Unreadable => Ok(None),
        }
    }

    /// Revokes the role grants made to look into the rows' projects.
    pub fn close(&mut self) -> Result<()> {
        self.projects.as_mut().map_or(Ok(()), |p| p.close_all())
    }

    fn look(&mut self, secret: &str, project: Option<&str>) -> Result<SecretState> {
        if !barbican::is_uuid(secret) {
            return Ok(SecretState::NotOurs);
        }
        let service = self.barbican.clone();
        let name = match service.name_of(secret) {
            Ok(Some(name)) => Some(name),
            // Barbican finds a secret by ID whatever its project: 404 is no secret at all.
            Ok(None) => return Ok(SecretState::Missing),
            Err(ApiError::Forbidden(_)) => None,
            Err(e) => return Err(Error::Service(e.to_string())),
        };
        match name.as_deref().map(|n| n.starts_with("keymigrate-")) {
            Some(false) => return Ok(SecretState::NotOurs),
            Some(true) => match service.payload(secret) {
                Ok(payload) => {
                    let (readers, _) = service.read_acl(secret).map_err(|e| Error::Service(e.to_string()))?;
                    return Ok(SecretState::Ours { holds_key: payload.as_slice() == self.key.bytes(), place: Place::Service { readers } });
                }
                // Not the service project's: look in the row's.
                Err(ApiError::Forbidden(_)) => {}
                Err(e) => return Err(Error::Service(e.to_string())),
            },
            // Hidden from the service identity: only the row's project can tell whose it is.
            // That means a role there, so only when the rows' projects are where keymigrate
            // puts secrets (`--secret-owner project`).
            None if self.look_in_projects => {}
            None => return Ok(SecretState::NotOurs),
        }
        let Some(project) = project.filter(|p| crate::cinder::is_owner(p)) else {
            return Ok(if name.is_some() { SecretState::Ours { holds_key: false, place: Place::Unreadable } } else { SecretState::NotOurs });
        };
        let in_project = match self.in_project(project)? {
            Ok(b) => b,
            Err(reason) => {
                log::warn!("cannot look at secret {secret} in project {project}: {reason}");
                return Ok(if name.is_some() { SecretState::Ours { holds_key: false, place: Place::Unreadable } } else { SecretState::NotOurs });
            }
        };
        let name = match in_project.name_of(secret) {
            Ok(Some(name)) => name,
            Ok(None) => return Ok(SecretState::Missing),
            Err(ApiError::Forbidden(_)) if name.is_none() => return Ok(SecretState::NotOurs),
            Err(ApiError::Forbidden(_)) => return Ok(SecretState::Ours { holds_key: false, place: Place::Unreadable }),
            Err(e) => return Err(Error::Service(e.to_string())),
        };
        if !name.starts_with("keymigrate-") {
            return Ok(SecretState::NotOurs);
        }
        let payload = match in_project.payload(secret) {
            Ok(p) => p,
            Err(ApiError::Forbidden(_)) => return Ok(SecretState::Ours { holds_key: false, place: Place::Unreadable }),
            Err(e) => return Err(Error::Service(e.to_string())),
        };
        let (readers, project_access) = in_project.read_acl(secret).map_err(|e| Error::Service(e.to_string()))?;
        Ok(SecretState::Ours {
            holds_key: payload.as_slice() == self.key.bytes(),
            place: Place::Project { project: project.to_string(), project_access, readers },
        })
    }

    /// The Barbican of `project`, connecting the identity that acts in projects on first use.
    fn in_project(&mut self, project: &str) -> Result<std::result::Result<Arc<Barbican>, String>> {
        if self.projects.is_none() {
            let Some(services) = self.admin else {
                return Ok(Err("no identity to act in the rows' projects".into()));
            };
            let journal = match &self.journal {
                Some(j) => j.clone(),
                None => {
                    let j = Arc::new(Journal::open(&services.state_dir, self.scope)?);
                    self.journal = Some(j.clone());
                    j
                }
            };
            let mut projects = Projects::connect(&services.admin, services.retry, journal, self.barbican.clone())?;
            projects.revoke_leftovers()?;
            self.projects = Some(projects);
        }
        match &mut self.projects {
            Some(p) => p.barbican(project),
            None => Ok(Err("no identity to act in the rows' projects".into())),
        }
    }
}

/// Connects to Keystone and Barbican for a command that needs the fixed key.
pub fn connect<'s>(settings: &'s Settings, what: &str) -> Result<(&'s FixedKey, &'s Services, Arc<Barbican>)> {
    let (Conditions::Ready { key, .. }, Some(services)) = (&settings.conditions, &settings.services) else {
        return Err(Error::Service(format!(
            "{what} compares secrets with [key_manager] fixed_key, so it needs fixed_key set and the backend set to \
             Barbican: {}",
            settings.conditions.message()
        )));
    };
    let keystone = Arc::new(Keystone::new(services.keystone.clone(), services.retry)?);
    let barbican = Barbican::connect(&services.barbican, keystone, services.retry)?;
    Ok((key, services, Arc::new(barbican)))
}

/// The verdict on one row.
pub fn judge(row: &Keyed, facts: &SecretState) -> Option<&'static str> {
    match facts {
        SecretState::NotOurs => None,
        SecretState::Missing => Some("secret missing"),
        SecretState::Ours { place: Place::Unreadable, .. } => Some("secret unreadable in the service project and in the row's project"),
        SecretState::Ours { holds_key: false, .. } => Some("secret does not hold the fixed key"),
        SecretState::Ours { place: Place::Service { readers }, .. } => match &row.owner {
            Some(o) if readers.contains(o) => Some("ok"),
            _ => Some("owner cannot read the secret"),
        },
        SecretState::Ours { place: Place::Project { project_access, .. }, .. } => {
            if !project_access {
                Some("project members cannot read the secret (its ACL turns project access off)")
            } else {
                Some("ok")
            }
        }
    }
}
