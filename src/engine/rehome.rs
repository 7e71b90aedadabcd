//! `migrate --secret-owner project --rehome`: rows an earlier run of keymigrate moved to a
//! secret in Cinder's service project (Cinder's model: only the owner, on the ACL, reads it)
//! move to a new secret in the row's own project, where every member reads it. For an operator
//! who started with `--secret-owner service` and wants native behaviour after all.
//!
//! Each row is a unit of its own, journalled like any other: store the key in the row's
//! project, read it back, compare-and-swap the row from the old secret's ID to the new one
//! (so a row Cinder or an operator changed meanwhile is left alone), and delete the old secret
//! once no row, live or deleted, points at it. Only secrets that Cinder's service identity
//! reads and that hold exactly the fixed key are moved away from: those keymigrate made under
//! `--secret-owner service`, and those Cinder's own migrator made when cinder-volume restarted
//! with Barbican configured and `fixed_key` still set (the same model).

use std::collections::{HashMap, HashSet};

use crate::barbican::{self, ApiError};
use crate::cinder::{self, Table};
use crate::db::Cursor;
use crate::error::{Error, Result};
use crate::plan;
use crate::scope::Scope;

use super::{Engine, Job, Target, LOG, PROJECTS_PER_PASS};

/// One row to move: its project, table, ID and the service-project secret it holds now.
type Candidate = (String, Table, String, String);

impl Engine<'_> {
    pub(super) fn rehome(&mut self, scope: &Scope) -> Result<()> {
        let candidates = self.rehome_candidates(scope)?;
        if candidates.is_empty() {
            return Ok(());
        }
        log::info!(target: LOG, "Moving {} row(s) from secrets in Cinder's service project to secrets in their own projects", candidates.len());
        let mut dispatched = self.report.migrated + self.report.failed + self.report.lost;
        let projects: Vec<&str> = {
            let mut seen = Vec::new();
            for (p, ..) in &candidates {
                if seen.last() != Some(&p.as_str()) {
                    seen.push(p.as_str());
                }
            }
            seen
        };
        for group in projects.chunks(PROJECTS_PER_PASS) {
            let group: HashSet<&str> = group.iter().copied().collect();
            let mut jobs = Vec::new();
            for (project, table, id, old) in candidates.iter().filter(|c| group.contains(c.0.as_str())) {
                let target = match self.in_project(project)? {
                    Target::Job(t) => t,
                    _ => {
                        self.report.blocked_units += 1;
                        continue;
                    }
                };
                if self.opts.max_count.is_some_and(|m| dispatched >= m) {
                    self.report.stopped_early = true;
                    break;
                }
                dispatched += 1;
                let tag: u32 = rand::random();
                let name = format!("keymigrate-{}-{id}-{tag:08x}", table.noun());
                jobs.push(Job { table: *table, id: id.clone(), name, target, sweep: false, from: Some(old.clone()) });
                // Bounded batches: every job's result is handled before the next batch starts.
                if jobs.len() >= 1000 {
                    self.run_jobs(std::mem::take(&mut jobs))?;
                }
            }
            self.run_jobs(jobs)?;
            if let Some(p) = &mut self.projects {
                p.close_all()?;
            }
            if self.report.stopped_early {
                break;
            }
        }
        Ok(())
    }

    /// The rows in scope on a keymigrate secret of Cinder's service project, by project.
    fn rehome_candidates(&mut self, scope: &Scope) -> Result<Vec<Candidate>> {
        let mut checked: HashMap<String, bool> = HashMap::new();
        let mut candidates = Vec::new();
        for table in Table::ALL {
            let mut cursor = Cursor::Start;
            while cursor != Cursor::End {
                for row in plan::keyed_page(self.db, scope, table, &mut cursor)? {
                    let Some(project) = row.project.filter(|p| cinder::is_owner(p)) else { continue };
                    // A row of Cinder's own project: its secret is in the row's project already,
                    // and a new one would qualify again on every run.
                    if self.service_project.as_deref() == Some(project.as_str()) {
                        continue;
                    }
                    let ours = match checked.get(&row.key) {
                        Some(ours) => *ours,
                        None => {
                            let ours = self.in_service_project(&row.key)?;
                            if checked.len() > 100_000 {
                                checked.clear();
                            }
                            checked.insert(row.key.clone(), ours);
                            ours
                        }
                    };
                    if ours {
                        candidates.push((project, table, row.id, row.key));
                    }
                }
            }
        }
        candidates.sort();
        Ok(candidates)
    }

    /// Whether Cinder's service identity reads `secret` and it holds exactly the fixed key: a
    /// copy of the ConfKeyManager's key in Cinder's model. A key a user created reads as 403.
    fn in_service_project(&self, secret: &str) -> Result<bool> {
        if !barbican::is_uuid(secret) {
            return Ok(false);
        }
        match self.barbican.payload(secret) {
            Ok(p) if p.as_slice() == self.key.bytes() => Ok(true),
            Ok(_) => {
                log::warn!(target: LOG, "not moving rows off secret {secret}: it does not hold the fixed key (run keymigrate verify)");
                Ok(false)
            }
            // A secret of another project (a row's own, made by a project-mode run).
            Err(ApiError::Forbidden(_)) => Ok(false),
            // No such secret (deleted by hand, say): nothing to move from, and no reason to
            // stop the other rows' moves.
            Err(e @ ApiError::Rejected(_)) => match self.barbican.name_of(secret) {
                Ok(None) => {
                    log::warn!(target: LOG, "not moving rows off secret {secret}: Barbican has no such secret (run keymigrate verify)");
                    Ok(false)
                }
                _ => Err(Error::Service(e.to_string())),
            },
            Err(e) => Err(Error::Service(e.to_string())),
        }
    }
}
