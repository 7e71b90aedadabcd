//! HTTP for Keystone and Barbican: one pooled agent per service, TLS verified by default against
//! the system's roots (or a configured CA file), a timeout on every request, and one retry loop
//! for both ([`Client::send_with_retries`]): exponential backoff and jitter on connection errors,
//! timeouts and 5xx answers. Request bodies are borrowed bytes (the caller's zeroizing buffer);
//! answers are read into memory that is wiped on drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use zeroize::Zeroizing;

use crate::secret::{self, Sensitive};

/// TLS settings for one service.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM file of CA certificates to trust instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate (`insecure = true` / `verify_ssl = false`).
    pub insecure: bool,
    /// The option `ca_file` came from (`[barbican] verify_ssl_path`, a clouds.yaml key), which
    /// an unusable CA file's error names.
    pub ca_option: String,
    /// The option that turned verification off (`[keystone_authtoken] insecure`), which the
    /// warning names.
    pub insecure_option: String,
    /// A client certificate to present (`[keystone_authtoken] certfile`/`keyfile`).
    pub client_cert: Option<ClientCertFiles>,
}

/// A TLS client certificate: its PEM chain, and the PEM file of its private key (the same file
/// when the key follows the chain, as keystoneauth allows).
#[derive(Debug, Clone)]
pub struct ClientCertFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The options they came from, which an unusable file's error names.
    pub cert_option: String,
    pub key_option: String,
}

/// A TLS file (CA bundle, client certificate or key) that cannot be used, and the option that
/// names it.
#[derive(Debug)]
pub struct TlsFileError {
    pub option: String,
    pub message: String,
}

/// How hard to try before a request counts as failed.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 6, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// Full jitter: a random delay up to `base × 2^attempt`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// A response with its body read. The body may hold a secret's payload and `subject_token` is a
/// Keystone token: both are wiped when the response is dropped.
pub struct Response {
    pub status: u16,
    pub subject_token: Option<Sensitive>,
    pub body: Zeroizing<Vec<u8>>,
}

impl Response {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("answer is not the expected JSON ({e})"))
    }

    /// Barbican's `{"code","title","description"}` or keystonemiddleware's `{"error":{…}}`,
    /// shortened; never more than a line.
    pub fn error_text(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let pick = |v: &serde_json::Value| -> Option<String> {
            let title = v.get("title").and_then(|t| t.as_str()).unwrap_or_default();
            let desc = v.get("description").or_else(|| v.get("message")).and_then(|t| t.as_str()).unwrap_or_default();
            let s = format!("{title}: {desc}");
            (s.len() > 2).then_some(s)
        };
        let text = pick(&v).or_else(|| v.get("error").and_then(pick)).unwrap_or_default();
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        if text.is_empty() { format!("HTTP {}", self.status) } else { format!("HTTP {} {text}", self.status) }
    }
}

/// A request that could not complete: the message says why, without secrets.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub message: String,
    /// The request may have reached the server (e.g. a timeout waiting for the answer).
    pub maybe_sent: bool,
    /// Trying again cannot help: the server's certificate was refused, or the server does not
    /// speak TLS. The request never left this machine.
    pub permanent: bool,
}

/// Why a request sent with retries has no usable answer: the last attempt failed on the
/// connection, timed out or was answered 5xx, and no retry was left.
pub struct GaveUp {
    /// The last failure, in one line without secrets: a transport error or the 5xx answer's text.
    pub reason: String,
    pub attempts: u32,
    /// The last answer when it was a 5xx; `None` after a transport error.
    pub last: Option<Response>,
    /// Not retried: see [`TransportError::permanent`].
    pub permanent: bool,
}

impl GaveUp {
    /// `<reason> (gave up after <n> attempts)`, or the reason alone when retrying could not help.
    pub fn message(&self) -> String {
        if self.permanent {
            return self.reason.clone();
        }
        format!("{} (gave up after {} attempts)", self.reason, self.attempts)
    }
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    pub retry: RetryPolicy,
}

/// A request body: nothing, or JSON already serialized by the caller (into a zeroizing buffer
/// when it holds a secret, see [`secret::json_body`]). Borrowed, so a retry sends the same bytes.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    None,
    Json(&'a [u8]),
    /// A JSON document of another media type (Glance's image JSON-patch, say).
    Typed(&'static str, &'a [u8]),
}

/// How long a host's addresses are used before it is looked up again.
const RESOLVED_FOR: Duration = Duration::from_secs(60);

/// Looks each host up once a minute instead of once per connection. ureq's own resolver makes
/// every lookup on a thread of its own (so that it keeps to the request's timeout), and
/// Barbican's usual servers close the connection after each answer: without this a key would
/// cost its worker four threads and four lookups. A lookup that fails is not remembered.
#[derive(Debug, Default)]
struct CachedResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    known: Mutex<HashMap<String, (Instant, ureq::unversioned::resolver::ResolvedSocketAddrs)>>,
}

impl ureq::unversioned::resolver::Resolver for CachedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = uri.authority().map(|a| format!("{}://{a}", uri.scheme_str().unwrap_or_default()));
        if let (Some(key), Ok(known)) = (&key, self.known.lock()) {
            if let Some((_, addrs)) = known.get(key).filter(|(at, _)| at.elapsed() < RESOLVED_FOR) {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let (Some(key), Ok(mut known)) = (key, self.known.lock()) {
            known.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

impl Client {
    pub fn new(tls: &Tls, timeout: Duration, retry: RetryPolicy) -> Result<Client, TlsFileError> {
        use ureq::tls::{RootCerts, TlsConfig};
        let mut tls_config = TlsConfig::builder();
        if tls.insecure {
            warn_insecure(&tls.insecure_option);
            tls_config = tls_config.disable_verification(true);
        } else if let Some(path) = &tls.ca_file {
            let fail = |message: String| TlsFileError { option: tls.ca_option.clone(), message };
            let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read CA file {}: {e}", path.display())))?;
            let certs = pem_certificates(&pem);
            if certs.is_empty() {
                return Err(fail(format!("CA file {} holds no PEM certificate", path.display())));
            }
            tls_config = tls_config.root_certs(RootCerts::Specific(Arc::new(certs)));
        } else {
            tls_config = tls_config.root_certs(RootCerts::PlatformVerifier);
        }
        if let Some(files) = &tls.client_cert {
            tls_config = tls_config.client_cert(Some(client_cert(files)?));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(64)
            .user_agent(concat!("keymigrate/", env!("CARGO_PKG_VERSION")))
            // No `Accept: */*` of ureq's own: Keystone and Barbican answer JSON by default, and
            // Barbican's payload by default is the raw bytes (see `Barbican::payload`).
            .accept("")
            .tls_config(tls_config.build())
            .build();
        let agent = ureq::Agent::with_parts(config, ureq::unversioned::transport::DefaultConnector::default(), CachedResolver::default());
        Ok(Client { agent, retry })
    }

    /// One attempt. `headers` may hold a token: it is sent, never logged.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response, TransportError> {
        let fail = |e: ureq::Error, maybe_sent: bool| {
            let (message, permanent) = describe(&e, url);
            TransportError { message, maybe_sent: maybe_sent && !permanent, permanent }
        };
        let request = ureq::http::Request::builder().method(method).uri(url);
        let request = headers.iter().fold(request, |r, (k, v)| r.header(*k, *v));
        let result = match body {
            Body::None => {
                let req = request
                    .body(())
                    .map_err(|e| TransportError { message: format!("bad request: {e}"), maybe_sent: false, permanent: true })?;
                self.agent.run(req)
            }
            Body::Json(bytes) | Body::Typed(_, bytes) => {
                let media = match body {
                    Body::Typed(media, _) => media,
                    _ => "application/json",
                };
                let req = request
                    .header("Content-Type", media)
                    .body(bytes)
                    .map_err(|e| TransportError { message: format!("bad request: {e}"), maybe_sent: false, permanent: true })?;
                self.agent.run(req)
            }
        };
        let mut response = result.map_err(|e| {
            // Refused or unresolvable: the request never left this machine.
            let never_sent = matches!(e, ureq::Error::HostNotFound | ureq::Error::ConnectionFailed)
                || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
            let maybe_sent = !never_sent;
            fail(e, maybe_sent)
        })?;
        let status = response.status().as_u16();
        let subject_token =
            response.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(Sensitive::new);
        // Read into a buffer that wipes what it outgrows: `read_to_vec` would leave the copies
        // of a growing Vec (a payload's bytes among them) in freed memory.
        let mut reader = response.body_mut().with_config().limit(1 << 20).reader();
        let body = secret::read_wiping(&mut reader).map_err(|e| fail(ureq::Error::from(e), true))?;
        Ok(Response { status, subject_token, body })
    }

    /// [`Client::send`] until the answer is one that retrying cannot change, with the policy's
    /// backoff between attempts: connection errors, timeouts and 5xx answers are tried again,
    /// every other answer (2xx, 4xx: 401 and 403 included, for the caller to handle) is
    /// returned. Each retry is logged as `<METHOD> <url>: <reason>; retrying in <n> ms`, with
    /// the URL's credentials and query removed. `maybe_sent` is set when a failed attempt may
    /// still have reached the server (a 5xx, a timeout, a connection lost after sending), so
    /// that a caller creating something knows it may exist even if the last answer says no.
    pub fn send_with_retries(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        maybe_sent: &mut bool,
    ) -> Result<Response, GaveUp> {
        let mut attempt = 0u32;
        loop {
            let (reason, last) = match self.send(method, url, headers, body) {
                Ok(r) if r.status >= 500 => {
                    *maybe_sent = true;
                    (r.error_text(), Some(r))
                }
                Ok(r) => return Ok(r),
                Err(e) if e.permanent => {
                    return Err(GaveUp { reason: e.message, attempts: attempt + 1, last: None, permanent: true })
                }
                Err(e) => {
                    *maybe_sent |= e.maybe_sent;
                    (e.message, None)
                }
            };
            if attempt >= self.retry.retries {
                return Err(GaveUp { reason, attempts: attempt + 1, last, permanent: false });
            }
            let delay = self.retry.delay(attempt);
            log::warn!("{method} {}: {reason}; retrying in {} ms", redact_url(url), delay.as_millis());
            std::thread::sleep(delay);
            attempt += 1;
        }
    }
}

/// The certificates of a PEM file, in order.
fn pem_certificates(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The client certificate chain and its key, read from their PEM files. The key file's bytes
/// are wiped once parsed.
fn client_cert(files: &ClientCertFiles) -> Result<ureq::tls::ClientCert, TlsFileError> {
    let cert_fail = |message: String| TlsFileError { option: files.cert_option.clone(), message };
    let key_fail = |message: String| TlsFileError { option: files.key_option.clone(), message };
    let pem = std::fs::read(&files.cert)
        .map_err(|e| cert_fail(format!("cannot read client certificate file {}: {e}", files.cert.display())))?;
    let chain = pem_certificates(&pem);
    if chain.is_empty() {
        return Err(cert_fail(format!("client certificate file {} holds no PEM certificate", files.cert.display())));
    }
    let pem = Zeroizing::new(
        std::fs::read(&files.key).map_err(|e| key_fail(format!("cannot read private key file {}: {e}", files.key.display())))?,
    );
    let key = ureq::tls::parse_pem(&pem).find_map(|item| match item {
        Ok(ureq::tls::PemItem::PrivateKey(k)) => Some(k.to_owned()),
        _ => None,
    });
    let key = key.ok_or_else(|| key_fail(format!("private key file {} holds no PEM private key", files.key.display())))?;
    Ok(ureq::tls::ClientCert::new_with_certs(&chain, key))
}

/// `insecure = true` or `verify_ssl = false`: one warning per option and process, however many
/// clients it configures.
fn warn_insecure(option: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut warned) = WARNED.lock() else { return };
    if warned.iter().any(|o| o == option) {
        return;
    }
    warned.push(option.to_string());
    let option = if option.is_empty() { "a TLS option" } else { option };
    log::warn!("{option} turns TLS certificate verification off: anyone on the network path can read the keys and tokens sent");
}

/// A transport error in one line, with the URL's credentials never included (ureq's messages
/// name the host at most), and whether it is permanent: a refused certificate, or a server that
/// does not speak TLS, answers the same way every time.
fn describe(e: &ureq::Error, url: &str) -> (String, bool) {
    let tls = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    if let Some(tls) = tls {
        return (describe_tls(tls), true);
    }
    let message = match e {
        ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection refused or failed".into(),
        // A TLS server reading a plain request resets or closes the connection without a word.
        ureq::Error::Io(io)
            if url.starts_with("http://")
                && matches!(io.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) =>
        {
            format!("connection error: {} before any answer (is it a TLS port? then the URL is https://)", io.kind())
        }
        // TLS 1.3: a server that wants a client certificate refuses after the client's side of
        // the handshake is done, so the refusal arrives as a closed connection.
        ureq::Error::Io(io) if url.starts_with("https://") && io.kind() == std::io::ErrorKind::BrokenPipe => format!(
            "connection error: {} (the server closed the connection after the TLS handshake: does it require a client \
             certificate? certfile and keyfile; cert and key in clouds.yaml)",
            io.kind()
        ),
        ureq::Error::Io(io) => format!("connection error: {}", io.kind()),
        ureq::Error::Tls(what) => return (format!("TLS: {what}"), true),
        other => other.to_string().chars().take(200).collect(),
    };
    (message, false)
}

/// A TLS failure in the operator's words, with rustls's name for it.
fn describe_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => "is not signed by a CA keymigrate trusts (set the CA file option, or install the CA in the system's trust store)",
                C::NotValidForName | C::NotValidForNameContext { .. } => "is not valid for the host name in the URL",
                C::Expired | C::ExpiredContext { .. } => "has expired",
                C::NotValidYet | C::NotValidYetContext { .. } => "is not valid yet",
                C::Revoked => "is revoked",
                C::BadSignature | C::BadEncoding => "is malformed or badly signed",
                _ => "is refused",
            };
            let name = match c {
                C::NotValidForNameContext { .. } => "NotValidForName".to_string(),
                C::ExpiredContext { .. } => "Expired".to_string(),
                C::NotValidYetContext { .. } => "NotValidYet".to_string(),
                other => format!("{other:?}").chars().take(60).collect(),
            };
            format!("TLS: the server's certificate {why} ({name})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateHandshakeMessage { .. } | rustls::Error::InappropriateMessage { .. } => {
            "TLS: the server did not answer in TLS (is it a plain HTTP port? then the URL is http://)".into()
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "TLS: the server requires a client certificate (certfile and keyfile; cert and key in clouds.yaml)".into()
        }
        rustls::Error::AlertReceived(
            alert @ (rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateExpired
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::UnsupportedCertificate),
        ) => format!("TLS: the server refused keymigrate's client certificate ({alert:?})"),
        rustls::Error::AlertReceived(alert) => format!("TLS: the server ended the handshake ({alert:?})"),
        other => format!("TLS handshake failed: {}", other.to_string().chars().take(160).collect::<String>()),
    }
}

/// Whether `url` is one keymigrate can call: `http://` or `https://` (the rule of every endpoint
/// and `auth_url` option, and of `--barbican-endpoint`).
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `scheme://host:port/path` with any `user:password@` removed and the query dropped.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() { format!("{host}{path}") } else { format!("{scheme}://{host}{path}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_and_queries() {
        assert_eq!(redact_url("https://u:p@h:1/v3?x=secret"), "https://h:1/v3");
        assert_eq!(redact_url("http://h/v1/secrets"), "http://h/v1/secrets");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { retries: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(400) };
        assert!(p.delay(0) <= Duration::from_millis(100));
        assert!(p.delay(10) <= Duration::from_millis(400));
        assert!(p.delay(10) >= Duration::from_millis(200));
    }

    #[test]
    fn error_text_reads_both_error_shapes() {
        let r = Response { status: 403, subject_token: None, body: br#"{"code":403,"title":"Forbidden","description":"Quota reached"}"#.to_vec().into() };
        assert_eq!(r.error_text(), "HTTP 403 Forbidden: Quota reached");
        let r = Response { status: 401, subject_token: None, body: br#"{"error":{"code":401,"title":"Unauthorized","message":"no"}}"#.to_vec().into() };
        assert_eq!(r.error_text(), "HTTP 401 Unauthorized: no");
        let r = Response { status: 502, subject_token: None, body: b"<html>".to_vec().into() };
        assert_eq!(r.error_text(), "HTTP 502");
    }

    /// What `send` puts on the wire, read by a one-shot server on loopback.
    fn request_as_sent(headers: &[(&str, &str)]) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/v1/secrets/x/payload", listener.local_addr().expect("local address"));
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).expect("read request");
                assert!(n > 0, "connection closed before the end of the headers");
                seen.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").expect("answer");
            String::from_utf8_lossy(&seen).to_ascii_lowercase()
        });
        let retry = RetryPolicy { retries: 0, base_delay: Duration::ZERO, max_delay: Duration::ZERO };
        let client = Client::new(&Tls::default(), Duration::from_secs(10), retry).expect("client");
        let r = client.send("GET", &url, headers, Body::None).map_err(|e| e.message).expect("send");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        server.join().expect("server thread")
    }

    /// A loopback server answering one connection per request with the next of `statuses`
    /// (`Connection: close`, so every attempt is a new connection); returns its URL and a
    /// handle giving how many requests it saw.
    fn scripted_server(statuses: &[u16]) -> (String, std::thread::JoinHandle<usize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/v1/secrets", listener.local_addr().expect("local address"));
        let statuses = statuses.to_vec();
        let server = std::thread::spawn(move || {
            for (seen, status) in statuses.iter().enumerate() {
                let (mut conn, _) = listener.accept().expect("accept");
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the 2-byte JSON body the tests send.
                while !request.windows(4).any(|w| w == b"\r\n\r\n") || !request.ends_with(b"{}") {
                    let n = conn.read(&mut buf).expect("read request");
                    if n == 0 {
                        return seen;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let body = format!(r#"{{"code":{status},"title":"T","description":"answer {}"}}"#, seen + 1);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).expect("answer");
            }
            statuses.len()
        });
        (url, server)
    }

    fn client(retries: u32) -> Client {
        let retry = RetryPolicy { retries, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
        Client::new(&Tls::default(), Duration::from_secs(10), retry).expect("client")
    }

    #[test]
    fn retries_5xx_answers_until_one_succeeds() {
        let (url, server) = scripted_server(&[503, 500, 502, 201]);
        let mut maybe_sent = false;
        let r = client(6).send_with_retries("POST", &url, &[], Body::Json(b"{}"), &mut maybe_sent);
        let r = r.map_err(|g| g.message()).expect("an answer");
        assert_eq!(r.status, 201);
        assert_eq!(server.join().expect("server"), 4, "three retries, then the answer");
        assert!(maybe_sent, "a 5xx answer means the request reached the server");
    }

    #[test]
    fn gives_up_after_the_policys_retries_with_the_last_answer() {
        let (url, server) = scripted_server(&[500, 503, 502]);
        let mut maybe_sent = false;
        let gave_up = match client(2).send_with_retries("POST", &url, &[], Body::Json(b"{}"), &mut maybe_sent) {
            Ok(r) => panic!("answer {} after the last retry", r.status),
            Err(g) => g,
        };
        assert_eq!(server.join().expect("server"), 3);
        assert_eq!(gave_up.attempts, 3);
        assert_eq!(gave_up.last.as_ref().map(|r| r.status), Some(502));
        assert_eq!(gave_up.message(), "HTTP 502 T: answer 3 (gave up after 3 attempts)");
    }

    #[test]
    fn does_not_retry_4xx_answers() {
        for status in [400, 401, 403, 404, 409, 413] {
            let (url, server) = scripted_server(&[status, 201]);
            let mut maybe_sent = false;
            let r = client(6).send_with_retries("POST", &url, &[], Body::Json(b"{}"), &mut maybe_sent);
            let r = r.map_err(|g| g.message()).expect("an answer");
            assert_eq!(r.status, status, "the 4xx answer itself is returned");
            drop(client(0).send("POST", &url, &[], Body::Json(b"{}")));
            assert_eq!(server.join().expect("server"), 2, "{status} was retried");
            assert!(!maybe_sent);
        }
    }

    #[test]
    fn retries_refused_connections_then_gives_up_without_an_answer() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut maybe_sent = false;
        let url = format!("http://127.0.0.1:{port}/v3/auth/tokens");
        let gave_up = match client(2).send_with_retries("POST", &url, &[], Body::Json(b"{}"), &mut maybe_sent) {
            Ok(r) => panic!("answer {} from a closed port", r.status),
            Err(g) => g,
        };
        assert_eq!((gave_up.attempts, gave_up.last.is_none()), (3, true));
        assert!(!maybe_sent, "a refused connection never sent anything");
    }

    #[test]
    fn sends_no_accept_header_unless_asked() {
        // keymigrate sends an Accept header only where it asks for one (none today: Barbican
        // answers JSON, and raw bytes for a payload, by default).
        let sent = request_as_sent(&[("X-Auth-Token", "t")]);
        assert!(sent.starts_with("get /v1/secrets/x/payload http/1.1\r\n"), "{sent}");
        assert!(!sent.contains("\r\naccept:"), "an Accept header was sent:\n{sent}");
        let sent = request_as_sent(&[("Accept", "application/json")]);
        assert!(sent.contains("\r\naccept: application/json\r\n"), "{sent}");
    }
}
