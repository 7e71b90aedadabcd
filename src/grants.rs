//! Keystone role assignments, for creating secrets in a row's own project with an admin
//! identity: who the identity is, which roles it holds in a project, a role grant and its
//! revoke, and a token scoped to the project.
//!
//! The sequence for one owner project, so that the number of grants is the number of projects:
//! [`Grants::needed`] (the identity's effective roles there: direct, through a group, inherited
//! or implied) → when it holds none that Barbican accepts, journal the [`Grant`], then
//! [`Grants::grant`] → [`Grants::scoped`] → that project's units → [`Grants::revoke`] exactly
//! the journalled grant. A role the identity held before is never journalled, so never revoked.
//!
//! Every call carries the admin identity's token from [`Keystone`] (renewed before it expires,
//! once more on a 401: [`Keystone::send_authorized`], which Barbican uses too) and is retried like every other Keystone call. Errors
//! that concern one project only ([`GrantError`]) are typed, so the caller can block that
//! project and go on with the others.

use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::http::{self, Body, GaveUp, Response};
use crate::keystone::{AuthorizedError, Keystone, Request, Subject};

/// One role assignment keymigrate makes, by IDs: what the journal records before the `PUT`,
/// and what the revoke removes, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub project: String,
    pub user: String,
    pub role: String,
}

/// What a token says about the identity that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whoami {
    pub user_id: String,
    /// The project the token is scoped to; `None` for an unscoped or domain-scoped token.
    pub project_id: Option<String>,
    /// The token comes from an application credential, which cannot be rescoped.
    pub application_credential: bool,
    /// The names of the roles the token carries (implied ones included).
    pub roles: Vec<String>,
}

/// How a revoke ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The assignment existed and is gone now.
    Revoked,
    /// There was no such assignment (revoked already, by an earlier run or by hand, or its
    /// project was deleted, which deletes its assignments): nothing left to undo.
    AlreadyGone,
}

/// A role-assignment call that failed. The first four concern one project: the caller leaves
/// that project's units untouched, blocked with [`GrantError`]'s one-line reason, and goes on.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Keystone answered 403 to a grant or revoke.
    #[error("the identity may not {action} roles in project {project} ({message})")]
    Forbidden { project: String, action: &'static str, message: String },
    /// Keystone answered 404 for the project itself.
    #[error("project {project} no longer exists in Keystone")]
    ProjectGone { project: String },
    /// The project exists but Keystone will not scope a token to it for this identity.
    #[error("Keystone will not give the identity a token scoped to project {project} (no role there, or the project is disabled)")]
    NotScoped { project: String },
    /// The identity is an application credential, whose tokens keep the credential's own project.
    #[error(
        "an application credential's token cannot be scoped to project {project}; acting in owner \
         projects needs a password identity (auth_type password)"
    )]
    NeedsPassword { project: String },
    /// Anything else, mapped as every Keystone error is (unreachable, refusing, bad credentials).
    #[error(transparent)]
    Other(#[from] Error),
}

impl GrantError {
    /// The project to block, when the failure concerns that project only.
    pub fn blocked_project(&self) -> Option<&str> {
        match self {
            GrantError::Forbidden { project, .. } | GrantError::ProjectGone { project } | GrantError::NotScoped { project } => {
                Some(project)
            }
            GrantError::NeedsPassword { .. } | GrantError::Other(_) => None,
        }
    }
}

impl From<GrantError> for Error {
    /// For a caller that does not block projects one by one: an operator must act (exit 2).
    fn from(e: GrantError) -> Error {
        match e {
            GrantError::Other(e) => e,
            e @ GrantError::NeedsPassword { .. } => Error::Credentials(e.to_string()),
            e => Error::Service(e.to_string()),
        }
    }
}

/// Characters left as they are in a path segment: Keystone's IDs are hex or UUIDs, but a
/// project ID comes from a database row and must not be able to change the path.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).collect()
}

/// Keystone's role-assignment API, called with the admin identity's token.
pub struct Grants {
    keystone: Arc<Keystone>,
}

impl Grants {
    pub fn new(keystone: Arc<Keystone>) -> Grants {
        Grants { keystone }
    }

    /// The identity's user ID and scope, from its own token (`GET /v3/auth/tokens`).
    pub fn whoami(&self) -> Result<Whoami> {
        self.inspect(Subject::Own)
    }

    /// The ID of the global role named `name` (`GET /v3/roles?name=…`), compared exactly.
    pub fn role_id(&self, name: &str) -> Result<String> {
        let path = format!("/roles?name={}", segment(name));
        let r = self.call("GET", &path, Subject::None, Body::None)?;
        if r.status != 200 {
            return Err(self.refused("GET", &path, &r));
        }
        #[derive(Deserialize)]
        struct Roles {
            roles: Vec<Role>,
        }
        #[derive(Deserialize)]
        struct Role {
            id: String,
            name: String,
        }
        let roles: Roles = self.answer(&r, "GET", &path)?;
        let mut ids: Vec<String> = roles.roles.into_iter().filter(|r| r.name == name).map(|r| r.id).collect();
        match ids.len() {
            1 => Ok(ids.remove(0)),
            0 => Err(Error::Service(format!("Keystone at {} has no role named '{name}'", self.where_()))),
            n => Err(Error::Service(format!("Keystone at {} has {n} roles named '{name}'", self.where_()))),
        }
    }

    /// Whether the project exists (`GET /v3/projects/{id}`; 404: it does not).
    pub fn project_exists(&self, project: &str) -> Result<bool> {
        let path = format!("/projects/{}", segment(project));
        let r = self.call("GET", &path, Subject::None, Body::None)?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refused("GET", &path, &r)),
        }
    }

    /// The IDs of the roles `user` holds in `project`, effective ones included: through a
    /// group, inherited from a parent, or implied by another role (`member` implies `reader`).
    pub fn roles_in(&self, user: &str, project: &str) -> Result<Vec<String>, GrantError> {
        let path = format!(
            "/role_assignments?user.id={}&scope.project.id={}&effective",
            segment(user),
            segment(project)
        );
        let r = self.call("GET", &path, Subject::None, Body::None)?;
        match r.status {
            200 => Ok(role_ids(self.answer(&r, "GET", &path)?)),
            404 => Err(GrantError::ProjectGone { project: project.to_string() }),
            _ => Err(self.refused("GET", &path, &r).into()),
        }
    }

    /// The users who hold a role in `project`, directly, through a group or inherited
    /// (`GET /v3/role_assignments?scope.project.id=…&effective`: Keystone expands groups into
    /// their users), each once, sorted.
    pub fn users_in(&self, project: &str) -> Result<Vec<String>, GrantError> {
        let path = format!("/role_assignments?scope.project.id={}&effective", segment(project));
        let r = self.call("GET", &path, Subject::None, Body::None)?;
        match r.status {
            200 => {
                let a: Assignments = self.answer(&r, "GET", &path)?;
                let mut users: Vec<String> = a.role_assignments.into_iter().filter_map(|a| a.user.map(|u| u.id)).collect();
                users.sort();
                users.dedup();
                Ok(users)
            }
            404 => Err(GrantError::ProjectGone { project: project.to_string() }),
            _ => Err(self.refused("GET", &path, &r).into()),
        }
    }

    /// The grant to journal and make before acting in `project` as `user`, or `None` when the
    /// user already holds one of `accepted` there (role IDs Barbican accepts for creating
    /// secrets; `role`, the one granted otherwise, should be among them).
    pub fn needed(&self, user: &str, project: &str, accepted: &[String], role: &str) -> Result<Option<Grant>, GrantError> {
        let held = self.roles_in(user, project)?;
        if held.iter().any(|r| accepted.contains(r)) {
            return Ok(None);
        }
        Ok(Some(Grant { project: project.to_string(), user: user.to_string(), role: role.to_string() }))
    }

    /// `PUT /v3/projects/{p}/users/{u}/roles/{r}`. Granting a role the user holds already
    /// succeeds too, so a retry after a lost answer is harmless.
    pub fn grant(&self, grant: &Grant) -> Result<(), GrantError> {
        let path = assignment_path(grant);
        // An empty body of explicit length (`Content-Length: 0`, as keystoneauth sends it):
        // without one, ureq sends a PUT chunked, which some front ends of Keystone refuse
        // (mod_wsgi, unless WSGIChunkedRequest is on, answers 411 Length Required).
        let r = self.call("PUT", &path, Subject::None, Body::Json(b""))?;
        match r.status {
            204 | 200 | 201 => {
                log::info!("granted role {} to user {} in project {}", grant.role, grant.user, grant.project);
                Ok(())
            }
            403 => Err(GrantError::Forbidden {
                project: grant.project.clone(),
                action: "grant",
                message: r.error_text(),
            }),
            // The user or the role may be what is missing: only a missing project blocks it.
            404 if !self.project_exists(&grant.project)? => {
                Err(GrantError::ProjectGone { project: grant.project.clone() })
            }
            _ => Err(self.refused("PUT", &path, &r).into()),
        }
    }

    /// `DELETE` on the grant's path. A 404 is [`Revoked::AlreadyGone`]: an earlier attempt
    /// whose answer was lost, a revoke by hand, or a deleted project.
    pub fn revoke(&self, grant: &Grant) -> Result<Revoked, GrantError> {
        let path = assignment_path(grant);
        let r = self.call("DELETE", &path, Subject::None, Body::None)?;
        match r.status {
            204 | 200 => {
                log::info!("revoked role {} of user {} in project {}", grant.role, grant.user, grant.project);
                Ok(Revoked::Revoked)
            }
            404 => Ok(Revoked::AlreadyGone),
            403 => Err(GrantError::Forbidden {
                project: grant.project.clone(),
                action: "revoke",
                message: r.error_text(),
            }),
            _ => Err(self.refused("DELETE", &path, &r).into()),
        }
    }

    /// The same identity with a token scoped to `project`, renewed before it expires like the
    /// admin identity's own (it is a [`Keystone`] of its own, for `Barbican::connect`). Checked
    /// once: the token must name that project.
    ///
    /// A password identity is simply authenticated again with that scope. An application
    /// credential's token always has the credential's own project: it serves that project only.
    pub fn scoped(&self, project: &str) -> Result<Arc<Keystone>, GrantError> {
        let Some(settings) = self.keystone.settings().in_project(project) else {
            return match self.whoami()? {
                Whoami { project_id: Some(p), .. } if p == project => Ok(self.keystone.clone()),
                _ => Err(GrantError::NeedsPassword { project: project.to_string() }),
            };
        };
        let scoped = Keystone::new(settings, self.keystone.http().retry)?;
        let token = match scoped.token() {
            Ok(t) => t,
            // The same credentials authenticate the identity's own scope: a 401 here is this
            // scope refused (no role, a disabled project, or no project at all).
            Err(Error::Credentials(_)) => {
                return Err(if self.project_exists(project)? {
                    GrantError::NotScoped { project: project.to_string() }
                } else {
                    GrantError::ProjectGone { project: project.to_string() }
                })
            }
            Err(e) => return Err(e.into()),
        };
        // Revoked between being issued and this check: another run revoked the role this run
        // relied on (its own grant, made while both worked in the project).
        let seen = match self.inspect_or_gone(Subject::Other(&token))? {
            Ok(seen) => seen,
            Err(_) => return Err(GrantError::NotScoped { project: project.to_string() }),
        };
        if seen.project_id.as_deref() != Some(project) {
            return Err(Error::Service(format!(
                "Keystone at {} gave a token scoped to project {} when asked for project {project}",
                self.where_(),
                seen.project_id.as_deref().unwrap_or("(none)")
            ))
            .into());
        }
        Ok(Arc::new(scoped))
    }

    /// `GET /v3/auth/tokens?nocatalog` for `subject`.
    fn inspect(&self, subject: Subject<'_>) -> Result<Whoami> {
        let path = "/auth/tokens?nocatalog";
        match self.inspect_or_gone(subject)? {
            Ok(w) => Ok(w),
            Err(r) => Err(self.refused("GET", path, &r)),
        }
    }

    /// [`Grants::inspect`], with Keystone's 404 for a token it no longer has (revoked since it
    /// was issued) as `Ok(Err(answer))`.
    fn inspect_or_gone(&self, subject: Subject<'_>) -> Result<std::result::Result<Whoami, Response>> {
        let path = "/auth/tokens?nocatalog";
        let r = self.call("GET", path, subject, Body::None)?;
        if r.status == 404 {
            return Ok(Err(r));
        }
        if r.status != 200 {
            return Err(self.refused("GET", path, &r));
        }
        #[derive(Deserialize)]
        struct Answer {
            token: TokenBody,
        }
        #[derive(Deserialize)]
        struct TokenBody {
            user: IdOnly,
            #[serde(default)]
            project: Option<IdOnly>,
            #[serde(default)]
            application_credential: Option<serde_json::Value>,
            #[serde(default)]
            roles: Vec<Named>,
        }
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        let a: Answer = self.answer(&r, "GET", path)?;
        Ok(Ok(Whoami {
            user_id: a.token.user.id,
            project_id: a.token.project.map(|p| p.id),
            application_credential: a.token.application_credential.is_some(),
            roles: a.token.roles.into_iter().map(|r| r.name).collect(),
        }))
    }

    /// One request with the admin identity's token, retried by `send_with_retries`,
    /// authenticating again once on 401. Errors are mapped as keystone.rs maps them.
    fn call(&self, method: &str, path: &str, subject: Subject<'_>, body: Body<'_>) -> Result<Response> {
        let url = format!("{}{path}", self.keystone.settings().auth_url);
        let request = Request { method, url: &url, headers: &[], body };
        self.keystone.send_authorized(self.keystone.http(), "Keystone", request, subject, &mut false).map_err(|e| match e {
            AuthorizedError::Token(e) => e,
            AuthorizedError::GaveUp(GaveUp { last: Some(r), attempts, .. }) => Error::Service(format!(
                "{method} {}: {} (gave up after {attempts} attempts)",
                http::redact_url(&url),
                r.error_text()
            )),
            AuthorizedError::GaveUp(gave_up) => {
                Error::Service(format!("cannot reach Keystone at {}: {}", self.where_(), gave_up.message()))
            }
            AuthorizedError::Refused(r) => Error::Credentials(format!(
                "{method} {}: {} with a token Keystone has just issued",
                http::redact_url(&url),
                r.error_text()
            )),
        })
    }

    fn refused(&self, method: &str, path: &str, r: &Response) -> Error {
        Error::Service(format!("{method} {}: {}", self.redacted(path), r.error_text()))
    }

    fn answer<T: serde::de::DeserializeOwned>(&self, r: &Response, method: &str, path: &str) -> Result<T> {
        r.json().map_err(|e| Error::Service(format!("{method} {}: {e}", self.redacted(path))))
    }

    fn redacted(&self, path: &str) -> String {
        http::redact_url(&format!("{}{path}", self.keystone.settings().auth_url))
    }

    fn where_(&self) -> String {
        http::redact_url(&self.keystone.settings().auth_url)
    }
}

/// `/projects/{p}/users/{u}/roles/{r}`.
fn assignment_path(g: &Grant) -> String {
    format!("/projects/{}/users/{}/roles/{}", segment(&g.project), segment(&g.user), segment(&g.role))
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// `GET /v3/role_assignments`. An effective list names each role once per way it is held.
#[derive(Deserialize)]
struct Assignments {
    role_assignments: Vec<Assignment>,
}

#[derive(Deserialize)]
struct Assignment {
    role: IdOnly,
    /// Absent for a group's assignment (not listed with `effective`).
    user: Option<IdOnly>,
}

/// The distinct role IDs, in Keystone's order.
fn role_ids(a: Assignments) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in a.role_assignments.into_iter().map(|a| a.role.id) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystone::{AuthMethod, Ident, KeystoneSettings};
    use crate::secret::Sensitive;
    use crate::http::Tls;
    use crate::keystone::Domain;
    use std::time::Duration;

    #[test]
    fn grants_round_trip_through_json() {
        let g = Grant { project: "p1".into(), user: "u1".into(), role: "r1".into() };
        let text = serde_json::to_string(&g).expect("serialize");
        assert_eq!(text, r#"{"project":"p1","user":"u1","role":"r1"}"#);
        assert_eq!(serde_json::from_str::<Grant>(&text).expect("parse"), g);
    }

    #[test]
    fn ids_from_rows_cannot_change_the_path() {
        let g = Grant { project: "../../users/x?y=1#".into(), user: "u-1_a".into(), role: "r".into() };
        assert_eq!(assignment_path(&g), "/projects/%2E%2E%2F%2E%2E%2Fusers%2Fx%3Fy%3D1%23/users/u-1_a/roles/r");
    }

    #[test]
    fn effective_assignments_give_each_role_once() {
        // Keystone 30's answer for a member: the direct role, then the role it implies.
        let a: Assignments = serde_json::from_str(
            r#"{"role_assignments": [
                {"scope": {"project": {"id": "p"}}, "user": {"id": "u"}, "role": {"id": "member"}, "links": {}},
                {"scope": {"project": {"id": "p"}}, "user": {"id": "u"}, "role": {"id": "reader"},
                 "links": {"prior_role": "…"}},
                {"scope": {"project": {"id": "p"}}, "group": {"id": "g"}, "role": {"id": "member"}}],
                "links": {"next": null}}"#,
        )
        .expect("parse");
        assert_eq!(role_ids(a), ["member", "reader"]);
    }

    fn settings(method: AuthMethod) -> KeystoneSettings {
        KeystoneSettings { auth_url: "http://k/v3".into(), method, tls: Tls::default(), timeout: Duration::from_secs(1) }
    }

    #[test]
    fn a_password_identity_is_rescoped_by_project_id_an_application_credential_is_not() {
        let user = Ident::Name { name: "admin".into(), domain: Domain::Name("Default".into()) };
        let admin = Ident::Name { name: "admin".into(), domain: Domain::Name("Default".into()) };
        let s = settings(AuthMethod::Password { user: user.clone(), password: Sensitive::new("pw"), project: Some(admin) });
        let scoped = s.in_project("p1").expect("password identities rescope");
        match scoped.method {
            AuthMethod::Password { user: u, password, project } => {
                assert_eq!((u, password.expose(), project), (user, "pw", Some(Ident::Id("p1".into()))));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(scoped.auth_url, "http://k/v3");
        let s = settings(AuthMethod::ApplicationCredential {
            credential: Ident::Id("ac".into()),
            user: None,
            secret: Sensitive::new("shh"),
        });
        assert!(s.in_project("p1").is_none());
    }

    #[test]
    fn project_errors_block_that_project_and_others_stop_the_run() {
        let forbidden = GrantError::Forbidden { project: "p1".into(), action: "grant", message: "HTTP 403".into() };
        assert_eq!(forbidden.to_string(), "the identity may not grant roles in project p1 (HTTP 403)");
        assert_eq!(forbidden.blocked_project(), Some("p1"));
        let gone = GrantError::ProjectGone { project: "p2".into() };
        assert_eq!(gone.to_string(), "project p2 no longer exists in Keystone");
        assert_eq!(gone.blocked_project(), Some("p2"));
        assert_eq!(GrantError::NotScoped { project: "p3".into() }.blocked_project(), Some("p3"));
        let needs = GrantError::NeedsPassword { project: "p4".into() };
        assert_eq!(needs.blocked_project(), None);
        assert!(matches!(Error::from(needs), Error::Credentials(m) if m.contains("password identity")));
        let other = GrantError::from(Error::Service("down".into()));
        assert_eq!(other.blocked_project(), None);
        assert_eq!(Error::from(other).exit_code(), crate::error::exit::INTERVENTION);
        assert_eq!(Error::from(gone).exit_code(), crate::error::exit::INTERVENTION);
    }
}
