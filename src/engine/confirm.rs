//! Confirming, many secrets at a time, that the ID Barbican answered a store with names the
//! secret just stored.
//!
//! A `POST /v1/secrets` answer's `secret_ref` is not trusted: a proxy or a Barbican bug could
//! name another secret, even one holding the same bytes, and a row pointed at it would lose its
//! key when that secret's owner deletes it. So no ID reaches the journal, an ACL or a row until
//! Barbican has said, in another request, that the secret behind it carries the name just
//! stored. One `GET /v1/secrets/<id>` per key says so at the cost of a request per key; here the
//! workers that are waiting at the same moment share one listing of the project's newest
//! `keymigrate-` secrets (`GET /v1/secrets?name=keymigrate-%&sort=created:desc`), which answers
//! for all of them.
//!
//! It works as a group commit: a worker adds its ID to its project's group; if no listing of
//! that project is under way it sends one for every ID waiting, otherwise it waits for the one
//! under way to finish and then, if its ID was not in it, takes the lead itself. An ID the
//! listing does not show (it scrolled out of the page, the listing failed) is confirmed the old
//! way, by its worker, with `GET /v1/secrets/<id>`.
//!
//! Barbican's listing is not indexed by name: its database reads every secret of the project,
//! soft-deleted ones included, so its cost grows with the project. Where a project already holds
//! many keymigrate secrets (Cinder's service project after a while, under `--secret-owner
//! service`), one listing costs more than the single requests it saves (measured with
//! `bench/request_cost.py`: 70 ms of Barbican's and its database's time for a project of 14,000
//! secret rows, against 14 ms for one `GET /v1/secrets/<id>`), so once a listing reports more
//! than [`CHEAP`] of them, that project's secrets are confirmed one by one for the rest of the run.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::barbican::{self, ApiError, Barbican};

/// What a listing said about one ID.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listed {
    /// Listed, under the name just stored.
    Confirmed,
    /// Listed under another name: the secret behind the ID is not the one just stored.
    Other,
    /// Not in the listing: ask for it alone.
    Unlisted,
}

/// The names keymigrate gives its secrets (`keymigrate-<noun>-<id>`), as Barbican's `LIKE`.
const PATTERN: &str = "keymigrate-%";
/// Listed beyond the IDs waiting: secrets stored meanwhile by other workers or runs.
const SLACK: usize = 16;
/// Barbican's largest page.
const MOST: usize = 100;
/// The most keymigrate secrets a project may hold for a listing there to stay cheaper than the
/// single requests it replaces.
const CHEAP: u64 = 1_000;

#[derive(Default)]
struct Group {
    /// IDs waiting for the next listing, with the name each must carry.
    waiting: Vec<(String, String)>,
    /// A listing of this group is under way.
    listing: bool,
    /// The project holds too many keymigrate secrets for a listing to pay: confirm alone.
    alone: bool,
}

/// The groups (one per project a secret is stored in) and what the listings said.
#[derive(Default)]
pub struct Confirmer {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, Group>,
    said: HashMap<String, Listed>,
    /// Listings sent and IDs they answered for, for the run's log.
    listings: u64,
    answered: u64,
}

impl Confirmer {
    /// `Ok` once the secret behind `id`, stored a moment ago as `name` in `group`'s project
    /// through `barbican`, is known to carry that name.
    pub(super) fn confirm(&self, group: &str, barbican: &Barbican, name: &str, id: &str) -> Result<(), ApiError> {
        match self.listed(group, barbican, name, id) {
            Listed::Confirmed => Ok(()),
            Listed::Other => Err(barbican::not_just_stored(name, id)),
            Listed::Unlisted => barbican.confirm(name, id),
        }
    }

    /// (listings sent, IDs they confirmed or refused).
    pub(super) fn stats(&self) -> (u64, u64) {
        self.state.lock().map(|s| (s.listings, s.answered)).unwrap_or_default()
    }

    fn listed(&self, group: &str, barbican: &Barbican, name: &str, id: &str) -> Listed {
        let Ok(mut state) = self.state.lock() else { return Listed::Unlisted };
        state.groups.entry(group.to_string()).or_default().waiting.push((id.to_string(), name.to_string()));
        loop {
            if let Some(said) = state.said.remove(id) {
                return said;
            }
            let g = state.groups.entry(group.to_string()).or_default();
            if g.alone {
                g.waiting.retain(|(w, _)| w != id);
                return Listed::Unlisted;
            }
            if !g.listing && g.waiting.iter().any(|(w, _)| w == id) {
                g.listing = true;
                let batch = std::mem::take(&mut g.waiting);
                drop(state);
                let (answers, total) = list(barbican, &batch);
                let Ok(mut again) = self.state.lock() else { return Listed::Unlisted };
                again.listings += 1;
                again.answered += answers.iter().filter(|(_, a)| *a != Listed::Unlisted).count() as u64;
                if let Some(g) = again.groups.get_mut(group) {
                    g.listing = false;
                    if total.is_some_and(|t| t > CHEAP) {
                        log::debug!(
                            "{} holds {} keymigrate secrets: confirming each new secret's name on its own, cheaper than a listing there",
                            if group.is_empty() { "Cinder's service project".to_string() } else { format!("project {group}") },
                            total.unwrap_or_default()
                        );
                        g.alone = true;
                    }
                }
                again.said.extend(answers);
                self.done.notify_all();
                state = again;
                continue;
            }
            state = match self.done.wait(state) {
                Ok(s) => s,
                Err(_) => return Listed::Unlisted,
            };
        }
    }
}

/// One listing's word on each ID of `batch`, and how many keymigrate secrets the project holds.
fn list(barbican: &Barbican, batch: &[(String, String)]) -> (Vec<(String, Listed)>, Option<u64>) {
    let (listed, total): (HashMap<String, String>, _) = match barbican.list_named(PATTERN, (batch.len() + SLACK).min(MOST)) {
        Ok(page) => (page.secrets.into_iter().collect(), page.total),
        Err(e) => {
            log::debug!("listing the newest keymigrate secrets failed ({e}); confirming {} secret(s) one by one", batch.len());
            (HashMap::new(), None)
        }
    };
    (batch.iter().map(|(id, name)| (id.clone(), word(listed.get(id).map(String::as_str), name))).collect(), total)
}

fn word(listed_as: Option<&str>, name: &str) -> Listed {
    match listed_as {
        Some(n) if n == name => Listed::Confirmed,
        Some(_) => Listed::Other,
        None => Listed::Unlisted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_name_just_stored_confirms_and_an_absent_id_is_asked_alone() {
        assert_eq!(word(Some("keymigrate-volume-a"), "keymigrate-volume-a"), Listed::Confirmed);
        assert_eq!(word(Some("keymigrate-volume-b"), "keymigrate-volume-a"), Listed::Other);
        // Barbican's LIKE is case-insensitive on MariaDB: the name is compared exactly here.
        assert_eq!(word(Some("KEYMIGRATE-volume-a"), "keymigrate-volume-a"), Listed::Other);
        assert_eq!(word(Some(""), "keymigrate-volume-a"), Listed::Other);
        assert_eq!(word(None, "keymigrate-volume-a"), Listed::Unlisted);
    }
}
