//! SQLAlchemy's `postgresql://` URLs, translated into a libpq connection URI carrying only
//! libpq's own connection and TLS parameters.

use super::*;

/// libpq connection parameters carried from the query (besides `host` and `port`). Anything
/// else is SQLAlchemy's or psycopg's, or not a connection parameter, and is dropped.
const PG_PARAMETERS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
    "sslcompression",
    "sslcertmode",
    "sslnegotiation",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "channel_binding",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "connect_timeout",
    "application_name",
    "fallback_application_name",
    "options",
    "target_session_attrs",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "hostaddr",
    "service",
    "passfile",
];

pub(super) fn postgres(sa: &SaUrl<'_>) -> Result<Translated, UrlError> {
    let db = database_name(sa)?;
    if db.contains('\0') {
        return Err(UrlError::Nul("database name"));
    }
    let (user, password) = credentials(sa)?;
    let host = sa.host.map(checked_host).transpose()?;
    let port = parse_port(sa.port)?;

    let mut ignored = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut query_hosts: Vec<String> = Vec::new();
    let mut query_port = None;
    for (key, value) in sa.query_pairs() {
        match key.as_str() {
            "user" | "password" | "dbname" => return Err(UrlError::QueryOverride(key)),
            "host" => {
                query_hosts.push(value);
                continue;
            }
            _ => {}
        }
        let known = key == "port" || PG_PARAMETERS.contains(&key.as_str());
        if !known {
            note_ignored(&mut ignored, &key);
            continue;
        }
        if seen.contains(&key) {
            return Err(UrlError::RepeatedOption(key));
        }
        seen.push(key.clone());
        if value.contains('\0') {
            return Err(UrlError::Nul("query option value"));
        }
        if key == "port" {
            query_port = Some(value);
        } else if let Some(name) = PG_PARAMETERS.iter().find(|p| **p == key) {
            params.push((name, value));
        }
    }

    // SQLAlchemy's multi-host form (`_split_multihost_from_url`): `?host=h1:5432&host=h2:5432`
    // or `?host=h1,h2`; a single `?host=/run/postgresql` names the socket directory.
    let mut host_param = None;
    let mut port_param = query_port;
    if !query_hosts.is_empty() {
        if host.is_some() {
            return Err(UrlError::QueryOverride("host".to_string()));
        }
        let tokens: Vec<&str> = match query_hosts.as_slice() {
            [one] => one.split(',').collect(),
            many => many.iter().map(String::as_str).collect(),
        };
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for token in tokens {
            let split =
                if token.starts_with('/') || token.parse::<Ipv6Addr>().is_ok() { None } else { token.rsplit_once(':') };
            match split {
                Some((h, p)) => {
                    hosts.push(h.to_string());
                    ports.push(parse_port(Some(p))?.map(|p| p.to_string()));
                }
                None => {
                    hosts.push(token.to_string());
                    ports.push(None);
                }
            }
        }
        if hosts.iter().any(|h| h.contains('\0')) {
            return Err(UrlError::Nul("host"));
        }
        if ports.iter().any(Option::is_some) {
            if port_param.is_some() || port.is_some() {
                return Err(UrlError::QueryOverride("port".to_string()));
            }
            port_param = Some(ports.into_iter().map(Option::unwrap_or_default).collect::<Vec<_>>().join(","));
        }
        host_param = Some(hosts.join(","));
    }
    if port_param.is_some() && port.is_some() {
        return Err(UrlError::QueryOverride("port".to_string()));
    }

    let mut netloc = host.unwrap_or_default();
    if netloc.is_empty() {
        // No host before the path: libpq's defaults, or the query's hosts; a port alone goes
        // to the query too.
        port_param = port_param.or(port.map(|p| p.to_string()));
    } else if let Some(p) = port {
        netloc.push_str(&format!(":{p}"));
    }
    let require_tls =
        params.iter().any(|(k, v)| *k == "sslmode" && matches!(v.as_str(), "require" | "verify-ca" | "verify-full"));
    let mut all: Vec<(&str, String)> = Vec::new();
    if let Some(h) = host_param {
        all.push(("host", h));
    }
    if let Some(p) = port_param {
        all.push(("port", p));
    }
    all.extend(params);
    let conn =
        format!("postgresql://{}{netloc}/{}{}", userinfo(&user, password.as_deref()), enc(db), query_string(&all));
    Ok(Translated { conn, ignored, require_tls })
}
