//! SQLAlchemy's `mysql://`, `mysql+pymysql://` and `mysql+mysqldb://` URLs, translated into the
//! `mysql://` URL diesel's MySQL connection parses, with PyMySQL's host and TLS rules.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MysqlDriver {
    /// PyMySQL: pure Python, TCP unless `unix_socket` is given.
    PyMySql,
    /// MySQLdb (mysqlclient), SQLAlchemy's default: libmysqlclient, like diesel.
    MySqlDb,
}

const MYSQL_SSL_MODES: [&str; 5] = ["disabled", "preferred", "required", "verify_ca", "verify_identity"];

pub(super) fn mysql(sa: &SaUrl<'_>, driver: MysqlDriver) -> Result<Translated, UrlError> {
    let db = database_name(sa)?;
    // diesel takes the first path segment as it is, without percent-decoding, and the `url`
    // crate percent-encodes these on parsing: such a name cannot reach the server intact.
    let carried = db.bytes().all(|b| b.is_ascii_graphic() && !b"/\"#<>?`{}".contains(&b));
    if !carried || db == "." || db == ".." {
        return Err(UrlError::UnsupportedDatabaseName);
    }
    let (user, password) = credentials(sa)?;
    let host = sa.host.map(checked_host).transpose()?;
    let port = parse_port(sa.port)?;

    let mut ignored = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut unix_socket = None;
    let mut ssl_mode = None;
    let (mut ssl_ca, mut ssl_cert, mut ssl_key) = (None, None, None);
    let (mut capath, mut cipher) = (false, false);
    let (mut check_hostname, mut verify_cert, mut verify_identity) = (None, None, None);
    let (mut ssl, mut ssl_disabled) = (None, None);
    for (key, value) in sa.query_pairs() {
        match key.as_str() {
            // SQLAlchemy lets the query override the URL's own parts; diesel rejects `database`.
            "database" | "db" | "user" | "password" | "passwd" | "host" | "port" => {
                return Err(UrlError::QueryOverride(key));
            }
            "unix_socket"
            | "ssl_mode"
            | "ssl_ca"
            | "ssl_cert"
            | "ssl_key"
            | "ssl_capath"
            | "ssl_cipher"
            | "ssl_check_hostname"
            | "ssl_verify_cert"
            | "ssl_verify_identity"
            | "ssl"
            | "ssl_disabled" => {
                if seen.contains(&key) {
                    return Err(UrlError::RepeatedOption(key));
                }
                seen.push(key.clone());
            }
            _ => {}
        }
        match key.as_str() {
            "unix_socket" => unix_socket = Some(value),
            "ssl_mode" => {
                let mode = value.to_lowercase();
                if !MYSQL_SSL_MODES.contains(&mode.as_str()) {
                    return Err(UrlError::InvalidOption {
                        key,
                        expected: "disabled, preferred, required, verify_ca or verify_identity",
                    });
                }
                ssl_mode = Some(mode);
            }
            "ssl_ca" => ssl_ca = Some(value),
            "ssl_cert" => ssl_cert = Some(value),
            "ssl_key" => ssl_key = Some(value),
            "ssl_check_hostname" => check_hostname = Some(asbool(&key, &value)?),
            "ssl_verify_cert" => verify_cert = Some(asbool(&key, &value)?),
            "ssl_verify_identity" => verify_identity = Some(asbool(&key, &value)?),
            "ssl" => ssl = Some(asbool(&key, &value)?),
            "ssl_disabled" => ssl_disabled = Some(asbool(&key, &value)?),
            // diesel cannot take a CA directory or a cipher list; they still ask for TLS.
            "ssl_capath" => {
                capath = true;
                note_ignored(&mut ignored, &key);
            }
            "ssl_cipher" => {
                cipher = true;
                note_ignored(&mut ignored, &key);
            }
            _ => note_ignored(&mut ignored, &key),
        }
    }

    // PyMySQL: TLS when any ssl option is given; the certificate is verified, and then the
    // host name too, when there is a CA, unless ssl_verify_cert / ssl_check_hostname /
    // ssl_verify_identity say otherwise. An explicit ssl_mode (mysqlclient's) wins.
    let ssl_mode = ssl_mode.or_else(|| {
        if ssl_disabled == Some(true) {
            return Some("disabled".to_string());
        }
        let has_ca = ssl_ca.is_some() || capath;
        let wanted = has_ca
            || ssl_cert.is_some()
            || ssl_key.is_some()
            || cipher
            || ssl == Some(true)
            || verify_cert == Some(true)
            || verify_identity == Some(true)
            || check_hostname == Some(true);
        if !wanted {
            return None;
        }
        let verify_cert = verify_cert.unwrap_or(has_ca);
        let verify_host = verify_identity.or(check_hostname).unwrap_or(has_ca);
        Some(
            match (verify_cert, verify_host) {
                (true, true) => "verify_identity",
                (true, false) => "verify_ca",
                (false, _) => "required",
            }
            .to_string(),
        )
    });

    let (host, port) = match driver {
        // diesel drops the host (so the socket is used) only when it is `localhost`.
        MysqlDriver::PyMySql if unix_socket.is_some() => ("localhost".to_string(), None),
        MysqlDriver::PyMySql => {
            let host = match host.as_deref() {
                None | Some("localhost") => "127.0.0.1".to_string(),
                Some(h) => h.to_string(),
            };
            (host, Some(port.unwrap_or(3306)))
        }
        MysqlDriver::MySqlDb => (host.unwrap_or_else(|| "localhost".to_string()), port),
    };

    let mut params: Vec<(&str, String)> = Vec::new();
    let options = [
        ("unix_socket", unix_socket),
        ("ssl_mode", ssl_mode),
        ("ssl_ca", ssl_ca),
        ("ssl_cert", ssl_cert),
        ("ssl_key", ssl_key),
    ];
    for (key, value) in options {
        if let Some(value) = value {
            if value.contains('\0') {
                return Err(UrlError::Nul("query option value"));
            }
            params.push((key, value));
        }
    }
    let require_tls = params.iter().any(|(k, v)| *k == "ssl_mode" && !matches!(v.as_str(), "disabled" | "preferred"));
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let conn = format!("mysql://{}{host}{port}/{db}{}", userinfo(&user, password.as_deref()), query_string(&params));
    Ok(Translated { conn, ignored, require_tls })
}
