//! A TCP proxy on 127.0.0.1 in front of the real MariaDB or PostgreSQL that goes silent: it
//! keeps every connection open and its bytes unanswered, from the start ([`Stall::Always`]) or
//! from the first client packet that contains a piece of SQL ([`Stall::On`]), as a hung server,
//! a stalled load balancer or a half-open network path would.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Stall {
    /// Accept connections and never answer (nor forward) anything.
    Always,
    /// Forward both ways until a client sends a packet containing this text; from then on,
    /// nothing more is forwarded on any connection.
    On(String),
    /// Forward the server's first packet only (PostgreSQL's `S` to an SSLRequest, MariaDB's
    /// greeting), then go silent: the client's TLS handshake gets no answer.
    InTlsHandshake,
}

pub struct StallProxy {
    pub port: u16,
    silent: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    /// Every connection, held open until the proxy is dropped.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallProxy {
    pub fn start(upstream_port: u16, stall: Stall) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let silent = Arc::new(AtomicBool::new(matches!(stall, Stall::Always)));
        let done = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let first_only = matches!(stall, Stall::InTlsHandshake);
        let pattern = match stall {
            Stall::On(text) => Some(text.into_bytes()),
            Stall::Always | Stall::InTlsHandshake => None,
        };
        let (s, d, h) = (silent.clone(), done.clone(), held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if d.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                h.lock().expect("held").push(client.try_clone().expect("clone"));
                if s.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                h.lock().expect("held").push(server.try_clone().expect("clone"));
                let up = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let (s1, s2, d1, d2) = (s.clone(), s.clone(), d.clone(), d.clone());
                let p = pattern.clone();
                std::thread::spawn(move || pump(up.0, up.1, &s1, &d1, p.as_deref(), false));
                std::thread::spawn(move || pump(server, client, &s2, &d2, None, first_only));
            }
        });
        StallProxy { port, silent, done, held }
    }

    /// Whether the proxy has gone silent.
    pub fn stalled(&self) -> bool {
        self.silent.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until the proxy goes silent (set here when `pattern` is seen, or after
/// the first packet when `first_only`).
fn pump(mut from: TcpStream, mut to: TcpStream, silent: &AtomicBool, done: &AtomicBool, pattern: Option<&[u8]>, first_only: bool) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(p) = pattern {
            if buf[..n].windows(p.len()).any(|w| w == p) {
                silent.store(true, Ordering::SeqCst);
            }
        }
        if silent.load(Ordering::SeqCst) {
            // Hold the connection: read nothing more, send nothing, until the proxy is dropped.
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
            }
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
        if first_only {
            silent.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        for conn in self.held.lock().expect("held").drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        // Wake the accept loop so it sees `done`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
