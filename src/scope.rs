//! Scope: whose rows a run may touch.
//!
//! Host strings follow Cinder's `_filter_host` levels: a value with `#` names a pool (exact
//! match), with `@` a backend (`= v` or `v#…`), otherwise a host (`= v`, `v#…` or `v@…`).
//! Unlike Cinder, matching is case-sensitive on every database and `_`/`%` are literal, so one
//! host can never reach another's volumes. The database narrows nothing here: rows are compared
//! in Rust, exactly.

use crate::conf::{self, Conf};
use crate::error::Result;

/// Which volume column a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Host,
    ClusterName,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Matcher {
    pub field: Field,
    pub value: String,
}

/// The rows a run selects. Built once from the flags or from cinder.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `--all-hosts`: every row, including volumes whose host is NULL.
    pub all: bool,
    /// A volume is in scope when any matcher matches it.
    pub volumes: Vec<Matcher>,
    /// A backup is in scope when its host matches any of these (host-level rule).
    pub backups: Vec<String>,
    /// Where the scope came from, for the operator.
    pub source: String,
}

/// The scope flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct ScopeArgs {
    pub hosts: Vec<String>,
    pub clusters: Vec<String>,
    pub backup_hosts: Vec<String>,
    pub all_hosts: bool,
}

/// Cinder's `_filter_host`, made exact: case-sensitive, no wildcards.
pub fn host_matches(pattern: &str, value: &str) -> bool {
    if value == pattern {
        return true;
    }
    let Some(rest) = value.strip_prefix(pattern) else { return false };
    if pattern.contains('#') {
        false
    } else if pattern.contains('@') {
        rest.starts_with('#')
    } else {
        rest.starts_with('#') || rest.starts_with('@')
    }
}

/// The host part of a `host@backend#pool` string.
pub fn host_part(value: &str) -> &str {
    value.split(['@', '#']).next().unwrap_or(value)
}

impl Scope {
    pub fn all_hosts() -> Scope {
        Scope { all: true, volumes: Vec::new(), backups: Vec::new(), source: "--all-hosts".into() }
    }

    /// No database row at all: `--images` without a database scope flag.
    pub fn images_only() -> Scope {
        Scope::no_rows("--images alone")
    }

    /// No database row at all: `--images` or `--nova` without a database scope flag.
    pub fn no_rows(source: &str) -> Scope {
        Scope { all: false, volumes: Vec::new(), backups: Vec::new(), source: source.into() }
    }

    /// From the flags when any scope flag was given, else derived from cinder.conf the way
    /// cinder-volume names itself.
    pub fn resolve(args: &ScopeArgs, conf: &Conf) -> Result<Scope> {
        if args.all_hosts {
            return Ok(Scope::all_hosts());
        }
        if !args.hosts.is_empty() || !args.clusters.is_empty() || !args.backup_hosts.is_empty() {
            let mut volumes: Vec<Matcher> =
                args.hosts.iter().map(|h| Matcher { field: Field::Host, value: h.clone() }).collect();
            volumes.extend(args.clusters.iter().map(|c| Matcher { field: Field::ClusterName, value: c.clone() }));
            let mut backups: Vec<String> = if args.backup_hosts.is_empty() {
                args.hosts.iter().map(|h| host_part(h).to_string()).collect()
            } else {
                args.backup_hosts.clone()
            };
            backups.dedup();
            return Ok(Scope { all: false, volumes, backups, source: "command line".into() });
        }
        Scope::from_conf(conf)
    }

    /// cinder-volume's service names (`cinder/cmd/volume.py`): with `enabled_backends`, one
    /// `<backend_host or host>@<backend>` (or `<cluster>@<backend>` when clustered) per backend;
    /// without, `host` (or `cluster`). cinder-backup's host is `[DEFAULT] host`.
    pub fn from_conf(conf: &Conf) -> Result<Scope> {
        let host = conf.get(&conf::HOST)?.map(|v| (v.value.expose().to_string(), v.origin));
        let (host, host_origin) = host.unwrap_or_else(|| (conf.hostname().to_string(), conf::Origin::Default));
        let cluster = conf.get(&conf::CLUSTER)?.map(|v| v.value.expose().to_string()).filter(|c| !c.is_empty());
        let backends = conf
            .get(&conf::ENABLED_BACKENDS)?
            .map(|v| conf::parse_list(v.value.expose()))
            .unwrap_or_default();
        let mut volumes = Vec::new();
        if backends.is_empty() {
            volumes.push(match &cluster {
                Some(c) => Matcher { field: Field::ClusterName, value: c.clone() },
                None => Matcher { field: Field::Host, value: host.clone() },
            });
        } else {
            for backend in &backends {
                volumes.push(match &cluster {
                    Some(c) => Matcher { field: Field::ClusterName, value: format!("{c}@{backend}") },
                    None => {
                        let backend_host = conf
                            .get_backend_opt(backend, "backend_host")?
                            .map(|v| v.value.expose().to_string())
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| host.clone());
                        Matcher { field: Field::Host, value: format!("{backend_host}@{backend}") }
                    }
                });
            }
        }
        let source = match host_origin {
            conf::Origin::Default => "cinder.conf ([DEFAULT] host defaults to this machine's hostname)".to_string(),
            origin => format!("cinder.conf ([DEFAULT] host from {origin})"),
        };
        Ok(Scope { all: false, volumes, backups: vec![host], source })
    }

    /// Whether [`volume_in_scope`](Scope::volume_in_scope) looks at `cluster_name` at all.
    pub fn reads_clusters(&self) -> bool {
        !self.all && self.volumes.iter().any(|m| m.field == Field::ClusterName)
    }

    pub fn volume_in_scope(&self, host: Option<&str>, cluster_name: Option<&str>) -> bool {
        // A volume with no host is no cinder-volume's, whatever its cluster: only --all-hosts
        // takes it, and with it its snapshots and glance rows (elsewhere it is reported as
        // skipped, and they are left with it).
        self.all
            || host.is_some() && self.volumes.iter().any(|m| {
                let value = match m.field {
                    Field::Host => host,
                    Field::ClusterName => cluster_name,
                };
                value.is_some_and(|v| host_matches(&m.value, v))
            })
    }

    pub fn backup_in_scope(&self, host: Option<&str>) -> bool {
        self.all || host.is_some_and(|h| self.backups.iter().any(|b| host_matches(b, h)))
    }

    /// One line for the operator: "host node1@lvm, cluster c1@ceph; backups of node1".
    pub fn describe(&self) -> String {
        if self.all {
            return "all hosts".to_string();
        }
        if self.volumes.is_empty() && self.backups.is_empty() {
            return "no database rows".to_string();
        }
        let mut parts: Vec<String> = self
            .volumes
            .iter()
            .map(|m| match m.field {
                Field::Host => format!("host {}", m.value),
                Field::ClusterName => format!("cluster {}", m.value),
            })
            .collect();
        if parts.is_empty() {
            parts.push("no volumes".to_string());
        }
        let backups = if self.backups.is_empty() { "none".to_string() } else { self.backups.join(", ") };
        format!("{}; backups of {}", parts.join(", "), backups)
    }

    /// A stable, file-name-safe key: runs with the same scope share a lock and a journal.
    pub fn key(&self) -> String {
        let text = if self.all { "all".to_string() } else { self.describe() };
        let readable: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '@'))
            .take(40)
            .collect();
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{readable}-{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_cinder() {
        // host level
        assert!(host_matches("hostA", "hostA"));
        assert!(host_matches("hostA", "hostA@lvm"));
        assert!(host_matches("hostA", "hostA#pool"));
        assert!(host_matches("hostA", "hostA@lvm#pool"));
        assert!(!host_matches("hostA", "hostAA@lvm#pool"));
        // backend level
        assert!(host_matches("hostA@lvm", "hostA@lvm"));
        assert!(host_matches("hostA@lvm", "hostA@lvm#pool"));
        assert!(!host_matches("hostA@lvm", "hostA@lvm2#pool"));
        assert!(!host_matches("hostA@lvm", "hostA@ceph#rbd"));
        assert!(!host_matches("hostA@lvm", "hostA"));
        // pool level
        assert!(host_matches("hostA@lvm#p1", "hostA@lvm#p1"));
        assert!(!host_matches("hostA@lvm#p1", "hostA@lvm#p10"));
        assert!(!host_matches("hostA@lvm#p1", "hostA@lvm"));
    }

    #[test]
    fn case_sensitive_and_no_wildcards() {
        assert!(!host_matches("hosta", "hostA@lvm#pool"));
        assert!(!host_matches("node_1@lvm", "nodeX1@lvm#pool"));
        assert!(!host_matches("node%", "node1@lvm"));
        assert!(host_matches("node_1@lvm", "node_1@lvm#pool"));
    }

    #[test]
    fn null_host_only_with_all_hosts() {
        let s = Scope { all: false, volumes: vec![Matcher { field: Field::Host, value: "h".into() }], backups: vec![], source: String::new() };
        assert!(!s.volume_in_scope(None, None));
        assert!(Scope::all_hosts().volume_in_scope(None, None));
    }

    #[test]
    fn derives_scope_like_cinder_volume() {
        let conf = Conf::from_text("c", "[DEFAULT]\nhost = node1\nenabled_backends = lvm,ceph\n[ceph]\nbackend_host = shared\n")
            .expect("conf");
        let s = Scope::resolve(&ScopeArgs::default(), &conf).expect("scope");
        assert_eq!(s.describe(), "host node1@lvm, host shared@ceph; backups of node1");
        assert!(s.source.contains("c line 2"), "{}", s.source);

        let conf = Conf::from_text("c", "[DEFAULT]\ncluster = c1\nenabled_backends = lvm\n").expect("conf").with_hostname("mach");
        let s = Scope::resolve(&ScopeArgs::default(), &conf).expect("scope");
        assert_eq!(s.describe(), "cluster c1@lvm; backups of mach");
        assert!(s.volume_in_scope(Some("other@lvm#p"), Some("c1@lvm#p")));
        assert!(!s.volume_in_scope(Some("mach@lvm#p"), None));

        let conf = Conf::from_text("c", "[DEFAULT]\n").expect("conf").with_hostname("mach");
        assert_eq!(Scope::resolve(&ScopeArgs::default(), &conf).expect("scope").describe(), "host mach; backups of mach");
    }

    #[test]
    fn flags_override_conf_and_backups_follow_the_host_part() {
        let conf = Conf::from_text("c", "[DEFAULT]\nhost = node1\n").expect("conf");
        let args = ScopeArgs { hosts: vec!["node2@lvm#p".into()], ..Default::default() };
        let s = Scope::resolve(&args, &conf).expect("scope");
        assert_eq!(s.backups, vec!["node2"]);
        assert!(s.backup_in_scope(Some("node2")));
        assert!(!s.backup_in_scope(Some("node22")));
        let args = ScopeArgs { hosts: vec!["node2".into()], backup_hosts: vec!["bk".into()], ..Default::default() };
        assert_eq!(Scope::resolve(&args, &conf).expect("scope").backups, vec!["bk"]);
    }

    #[test]
    fn keys_differ_per_scope_and_are_file_safe() {
        let a = Scope { all: false, volumes: vec![Matcher { field: Field::Host, value: "a/b".into() }], backups: vec![], source: String::new() };
        let b = Scope { volumes: vec![Matcher { field: Field::Host, value: "a-b".into() }], ..a.clone() };
        assert_ne!(a.key(), b.key());
        assert!(!a.key().contains('/'));
        assert_eq!(a.key(), a.clone().key());
    }
}
