//! TLS made by the tests themselves: a throwaway CA and certificates (good, for another host,
//! expired) made with rcgen, and a rustls front on 127.0.0.1 for the real Keystone or Barbican
//! that presents one of them, or misbehaves during the handshake (stalls, resets). The testenv's
//! own CA and HTTPS terminator (stunnel, `scripts/testenv.sh`) serve the working cases; this
//! serves the broken ones.

#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA of one test: its certificate as PEM and what it needs to sign server certificates.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate (chain of one) and its key, ready for rustls.
pub struct ServerCert {
    pub pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A certificate for `names` (IP addresses or DNS names), valid now unless `expired`.
    pub fn server(&self, names: &[&str], expired: bool) -> ServerCert {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("server params");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        ServerCert { pem: cert.pem(), chain: vec![cert.der().clone()], key_der: key.serialize_der() }
    }

    /// The CA certificate written to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).expect("write CA");
        p
    }
}

/// What the front does with each connection.
pub enum Handshake {
    /// Completes the handshake with this certificate, then forwards HTTP to the upstream.
    Serve(ServerCert),
    /// As `Serve`, and demands a client certificate signed by the CA in this PEM file.
    ServeClientAuth(ServerCert, PathBuf),
    /// Accepts the connection and never says a word (the client's ClientHello goes unanswered).
    Stall,
    /// Reads the ClientHello, then resets the connection (RST).
    Reset,
}

/// A TLS front on a free loopback port, forwarding to a plain HTTP upstream.
pub struct TlsFront {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    /// Connections held open by [`Handshake::Stall`], closed when the front is dropped.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl TlsFront {
    /// `upstream`: `http://127.0.0.1:PORT` (any path ignored).
    pub fn start(upstream: &str, handshake: Handshake) -> TlsFront {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let upstream = upstream.trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
        let held = Arc::new(Mutex::new(Vec::new()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = match &handshake {
            Handshake::Serve(cert) | Handshake::ServeClientAuth(cert, _) => {
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_der.clone().into());
                let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("protocol versions");
                let builder = match &handshake {
                    Handshake::ServeClientAuth(_, ca) => {
                        let mut roots = rustls::RootCertStore::empty();
                        let pem = std::fs::read(ca).expect("client CA");
                        for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                            roots.add(c.expect("client CA certificate")).expect("add client CA");
                        }
                        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                            .build()
                            .expect("client verifier");
                        builder.with_client_cert_verifier(verifier)
                    }
                    _ => builder.with_no_client_auth(),
                };
                Some(Arc::new(builder.with_single_cert(cert.chain.clone(), key).expect("server config")))
            }
            _ => None,
        };
        let stall = matches!(handshake, Handshake::Stall);
        let h = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if stall {
                    if let Ok(mut held) = h.lock() {
                        held.push(conn);
                    }
                    continue;
                }
                match &config {
                    Some(config) => {
                        let (config, upstream) = (config.clone(), upstream.clone());
                        std::thread::spawn(move || serve(conn, config, &upstream));
                    }
                    None => {
                        std::thread::spawn(move || reset_after_hello(conn));
                    }
                }
            }
        });
        TlsFront { url: format!("https://127.0.0.1:{port}"), port, held }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Ok(held) = self.held.lock() {
            for c in held.iter() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn reset_after_hello(mut conn: TcpStream) {
    use std::io::Read;
    let mut buf = [0u8; 5];
    // The record header of the ClientHello: the client has started the handshake.
    let _ = conn.read_exact(&mut buf);
    super::proxy::reset(conn);
}

/// One client connection: the handshake, then requests in a loop, each forwarded upstream.
fn serve(conn: TcpStream, config: Arc<rustls::ServerConfig>, upstream: &str) {
    let Ok(server) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(server, conn);
    loop {
        let Some((head, body)) = super::proxy::read_request(&mut tls) else { return };
        let Some((answer_head, answer_body)) = super::proxy::forward(upstream, &head, &body) else { return };
        let mut answer = format!("{answer_head}Content-Length: {}\r\n\r\n", answer_body.len()).into_bytes();
        answer.extend_from_slice(&answer_body);
        if tls.write_all(&answer).and_then(|_| tls.flush()).is_err() {
            return;
        }
    }
}
