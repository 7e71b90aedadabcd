//! Acting in the rows' own projects (`--secret-owner project`): for each project a run works
//! in, a Barbican client whose token is scoped to that project, so the secrets it stores belong
//! to the project and Barbican's own policy lets every member read them, as for a key Cinder
//! created under Barbican.
//!
//! Opening a project: when the identity holds no role there that lets it create and read
//! secrets, journal a grant of `--grant-role`, make it, then get a token scoped to the project.
//! Closing it revokes exactly the grant this run made and forgets it. A run killed in between
//! leaves the grant in the journal, and the next run revokes it before anything else
//! ([`Projects::revoke_leftovers`]). A project Keystone no longer has, or where the grant or
//! the scope is refused, is blocked: its units stay untouched and the run goes on with the
//! others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::barbican::Barbican;
use crate::error::{Error, Result};
use crate::fault;
use crate::grants::{Grant, GrantError, Grants, Revoked};
use crate::journal::Journal;
use crate::keystone::Keystone;
use crate::settings::Admin;

/// Roles that let their holder create and read secrets in a project under Barbican's default
/// policy (its new defaults accept `member` and `admin`, its legacy rules `admin` and
/// `creator`), by name: any of them held there makes a grant unnecessary.
const ACCEPTED_ROLES: [&str; 3] = ["admin", "member", "creator"];

/// Opening a project: its client or why not, and the grants made on the way.
type Outcome = (std::result::Result<Arc<Barbican>, GrantError>, Vec<Grant>);

/// A project's state in this run.
enum Opened {
    Ready(Arc<Barbican>),
    /// The one-line reason its units are left untouched.
    Blocked(String),
}

pub struct Projects {
    grants: Grants,
    journal: Arc<Journal>,
    /// Endpoint, TLS and retries for every project's client.
    barbican: Arc<Barbican>,
    /// Where the identity comes from, for messages.
    source: String,
    user: String,
    /// The role granted where none of `accepted` is held, by ID.
    role: String,
    accepted: Vec<String>,
    open: HashMap<String, Opened>,
    /// Grants this run made (journalled first) and has not revoked yet, by project.
    made: HashMap<String, Grant>,
    pub stats: Stats,
    /// Projects opened, and grants revoked, at once (`--workers`; 1 unless set).
    pub threads: usize,
}

/// What the run did in Keystone.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Projects a token was scoped to.
    pub projects: u64,
    pub grants_made: u64,
    pub grants_revoked: u64,
}

impl Projects {
    /// Authenticates the identity and looks up the roles, before anything is written: an
    /// identity Keystone refuses, or a `--grant-role` it does not know, stops the run here.
    pub fn connect(admin: &Admin, retry: crate::http::RetryPolicy, journal: Arc<Journal>, barbican: Arc<Barbican>) -> Result<Projects> {
        let keystone = Arc::new(Keystone::new(admin.keystone.clone(), retry)?);
        let grants = Grants::new(keystone);
        let me = grants.whoami().map_err(|e| context(e, &admin.source))?;
        let role = grants.role_id(&admin.grant_role).map_err(|e| match e {
            // Only a role Keystone does not have is the flag's fault; a refusal to list roles
            // is the identity's (exit 2).
            Error::Service(m) if m.contains("role named") => Error::config_value("--grant-role", m),
            e => e,
        })?;
        let mut accepted = vec![role.clone()];
        for name in ACCEPTED_ROLES {
            if name != admin.grant_role {
                // A role this Keystone does not have is simply not held by anyone.
                if let Ok(id) = grants.role_id(name) {
                    accepted.push(id);
                }
            }
        }
        log::info!("Acting in the rows' own projects as user {} ({}), granting role {} where needed", me.user_id, admin.source, admin.grant_role);
        Ok(Projects {
            grants,
            journal,
            barbican,
            source: admin.source.clone(),
            user: me.user_id,
            role,
            accepted,
            open: HashMap::new(),
            made: HashMap::new(),
            stats: Stats::default(),
            threads: 1,
        })
    }

    /// Revokes the grants an interrupted run made and did not revoke.
    pub fn revoke_leftovers(&mut self) -> Result<()> {
        for grant in self.journal.grants()? {
            log::info!("Revoking the role grant in project {} left by an interrupted run", grant.project);
            self.revoke(&grant)?;
        }
        Ok(())
    }

    /// The Barbican client for `project`, opening the project on first use. `Err(reason)`: the
    /// project is blocked (the reason is one line); fatal errors stop the run.
    pub fn barbican(&mut self, project: &str) -> Result<std::result::Result<Arc<Barbican>, String>> {
        if !self.open.contains_key(project) {
            let opened = self.open_project(project)?;
            self.open.insert(project.to_string(), opened);
        }
        Ok(match self.open.get(project) {
            Some(Opened::Ready(b)) => Ok(b.clone()),
            Some(Opened::Blocked(reason)) => Err(reason.clone()),
            None => Err(format!("project {project} was not opened")),
        })
    }

    /// Whether `project` is open and usable (blocked or never opened: false).
    pub fn is_blocked(&self, project: &str) -> Option<&str> {
        match self.open.get(project) {
            Some(Opened::Blocked(reason)) => Some(reason),
            _ => None,
        }
    }

    /// Blocks a project that was opened, for the rest of the run: its units are left, with
    /// `reason` (one line). The grant made there stays until [`Projects::close_all`], so that
    /// the units still in flight there finish as they would have. Logged once per project.
    pub fn block(&mut self, project: &str, reason: &str) {
        if self.is_blocked(project).is_none() {
            log::warn!("Not migrating the rows of project {project}: {reason}");
            self.open.insert(project.to_string(), Opened::Blocked(reason.to_string()));
        }
    }

    /// Forgets the project's client, so the next use opens it again: after its token was
    /// refused mid-run (another run revoked the role it relied on, say). Returns whether
    /// `client` was the project's current one: the jobs that were already given an older
    /// client fail the same way and are no news.
    pub fn reopen(&mut self, project: &str, client: &Arc<Barbican>) -> bool {
        match self.open.get(project) {
            Some(Opened::Ready(current)) if Arc::ptr_eq(current, client) => {
                self.open.remove(project);
                true
            }
            _ => false,
        }
    }

    fn open_project(&mut self, project: &str) -> Result<Opened> {
        let (result, made) = self.try_open(project);
        self.settle(project, result, made)
    }

    /// Opens every project of `projects` not opened yet, up to `threads` at a time (each is a
    /// few Keystone requests: its role assignments, a grant where needed, a scoped token), and
    /// records the outcomes in order. A fatal error is returned once every outcome, and every
    /// grant made, is recorded (so that [`Projects::close_all`] revokes them all).
    pub fn open_many(&mut self, projects: &[String], threads: usize) -> Result<()> {
        let todo: Vec<&String> = projects.iter().filter(|p| !self.open.contains_key(p.as_str())).collect();
        if todo.len() < 2 || threads < 2 {
            for project in todo {
                // A blocked project is recorded (and logged) here; its units are left.
                let _blocked = self.barbican(project)?;
            }
            return Ok(());
        }
        let outcomes = in_parallel(&todo, threads, |project| self.try_open(project));
        let mut first_error = None;
        for (project, (result, made)) in todo.iter().zip(outcomes) {
            match self.settle(project, result, made) {
                Ok(opened) => {
                    self.open.insert(project.to_string(), opened);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records what opening `project` did: the grants made, and the project ready, blocked, or
    /// the run's fatal error.
    fn settle(&mut self, project: &str, result: std::result::Result<Arc<Barbican>, GrantError>, made: Vec<Grant>) -> Result<Opened> {
        for grant in made {
            self.stats.grants_made += 1;
            self.made.insert(project.to_string(), grant);
        }
        match result {
            Ok(b) => {
                self.stats.projects += 1;
                Ok(Opened::Ready(b))
            }
            Err(e) => match e.blocked_project() {
                Some(_) => {
                    let reason = e.to_string();
                    log::warn!("Not migrating the rows of project {project}: {reason}");
                    // Nothing will be done there: leave no role behind either.
                    if let Some(grant) = self.made.get(project).cloned() {
                        self.revoke(&grant)?;
                    }
                    Ok(Opened::Blocked(reason))
                }
                None => Err(context_grant(e, &self.source)),
            },
        }
    }

    /// Opens `project`: its client, or why not, and the grants made on the way. Touches no
    /// state of the run, so several projects can be opened at once.
    fn try_open(&self, project: &str) -> Outcome {
        // A role held by another run's grant can go at any moment (that run revokes it when it
        // is done with the project): a scope refused right after the role was seen, or a token
        // revoked as soon as it was issued, is asked about again, a few times.
        let mut made = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let held = self.made.contains_key(project) || !made.is_empty();
            let result = self.try_open_once(project, held, &mut made);
            match result {
                Err(GrantError::NotScoped { .. }) if attempt < 3 && !held && made.is_empty() => {
                    log::info!("the role in project {project} went while it was being used (another run revoked its grant); asking again");
                }
                other => return (other, made),
            }
        }
    }

    /// `held`: this run holds a grant it made in the project. A grant made is pushed to `made`.
    fn try_open_once(&self, project: &str, held: bool, made: &mut Vec<Grant>) -> std::result::Result<Arc<Barbican>, GrantError> {
        // Asked again when a project is opened again: the role may have gone meanwhile (another
        // run on another host revoked the grant it made, which this run relied on).
        if let Some(grant) = self.grants.needed(&self.user, project, &self.accepted, &self.role)? {
            self.journal.write_grant(&grant)?;
            fault::point("grant-journalled");
            if let Err(e) = self.grants.grant(&grant) {
                if !held && matches!(e, GrantError::Forbidden { .. } | GrantError::ProjectGone { .. }) {
                    // Keystone refused it: there is nothing to revoke.
                    self.journal.forget_grant(&grant)?;
                }
                return Err(e);
            }
            fault::point("granted");
            made.push(grant);
        }
        let keystone = self.grants.scoped(project)?;
        fault::point("scoped");
        Ok(Arc::new(self.barbican.as_identity(keystone)))
    }

    /// The users, other than keymigrate's own identity, who hold a role in `project` now;
    /// none when Keystone no longer has the project.
    pub fn users_in(&self, project: &str) -> Result<Vec<String>> {
        match self.grants.users_in(project) {
            Ok(mut users) => {
                users.retain(|u| *u != self.user);
                Ok(users)
            }
            Err(GrantError::ProjectGone { .. }) => Ok(Vec::new()),
            Err(e) => Err(context_grant(e, &self.source)),
        }
    }

    /// Closes every open project: revokes the grants this run made, `threads` at a time (each
    /// grant is forgotten in the journal only once Keystone has answered its `DELETE`).
    pub fn close_all(&mut self) -> Result<()> {
        self.open.clear();
        let mut made: Vec<Grant> = self.made.values().cloned().collect();
        made.sort_by(|a, b| a.project.cmp(&b.project));
        let answers = in_parallel(&made, self.threads, |grant| self.grants.revoke(grant));
        let mut first_error = None;
        for (grant, answer) in made.iter().zip(answers) {
            if let Err(e) = self.revoked(grant, answer) {
                log::error!("Could not revoke the role grant in project {}: {e}; the next run revokes it", grant.project);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn revoke(&mut self, grant: &Grant) -> Result<()> {
        let answer = self.grants.revoke(grant);
        self.revoked(grant, answer)
    }

    /// Records Keystone's answer to a grant's `DELETE`: revoked (or already gone) is forgotten
    /// in the journal; an error keeps it there for the next run.
    fn revoked(&mut self, grant: &Grant, answer: std::result::Result<Revoked, GrantError>) -> Result<()> {
        match answer {
            Ok(Revoked::Revoked) => self.stats.grants_revoked += 1,
            Ok(Revoked::AlreadyGone) => {}
            Err(e) => return Err(context_grant(e, &self.source)),
        }
        fault::point("revoked");
        self.journal.forget_grant(grant)?;
        self.made.remove(&grant.project);
        self.open.remove(&grant.project);
        Ok(())
    }
}

/// `f` of each item, on up to `threads` threads, in the items' order.
fn in_parallel<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    // Every slot is filled: each index is taken by exactly one thread, and the scope joins them.
    results.into_iter().filter_map(|slot| slot.into_inner().ok().flatten()).collect()
}

/// Names the identity in a Keystone error, so the operator knows which credentials to fix.
fn context(e: Error, source: &str) -> Error {
    match e {
        Error::Credentials(m) => Error::Credentials(format!("{m} (the identity from {source}, which acts in the rows' projects)")),
        e => e,
    }
}

fn context_grant(e: GrantError, source: &str) -> Error {
    match e {
        GrantError::Other(e) => context(e, source),
        e @ GrantError::NeedsPassword { .. } => Error::Credentials(format!(
            "{e}; give one with --os-cloud, or keep Cinder's model with --secret-owner service ({source} is an application credential)"
        )),
        e => Error::from(e),
    }
}
