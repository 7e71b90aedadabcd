//! A fault-injecting HTTP proxy on 127.0.0.1, in front of the real Barbican: each request is
//! forwarded unless a rule matches it (by method, a piece of the path, and which matching request
//! it is), in which case the proxy answers an error itself, drops the connection after Barbican
//! has done the work, or alters Barbican's answer.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer this status with a JSON error body, without forwarding.
    Status(u16),
    /// Forward (Barbican does the work), then close the connection without answering.
    DropAnswer,
    /// Forward, then flip the last byte of Barbican's answer body.
    CorruptBody,
}

struct Rule {
    method: String,
    path: String,
    nth: usize,
    seen: usize,
    fault: Fault,
}

pub struct Proxy {
    pub url: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    /// Faults injected so far.
    pub injected: Arc<Mutex<usize>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::new(Mutex::new(Vec::new()));
        let injected = Arc::new(Mutex::new(0));
        let (r, i) = (rules.clone(), injected.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, i, upstream) = (r.clone(), i.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &upstream, &r, &i));
            }
        });
        Proxy { url, rules, injected }
    }

    /// Injects `fault` into the `nth` request (1-based) whose method is `method` and whose path
    /// contains `path`.
    pub fn rule(&self, method: &str, path: &str, nth: usize, fault: Fault) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push(Rule { method: method.into(), path: path.into(), nth, seen: 0, fault });
        }
    }

    pub fn injected(&self) -> usize {
        self.injected.lock().map(|n| *n).unwrap_or(0)
    }
}

/// One client connection: requests in a loop (the client keeps connections alive).
fn serve(mut client: TcpStream, upstream: &str, rules: &Mutex<Vec<Rule>>, injected: &Mutex<usize>) {
    loop {
        let Some((head, body)) = read_request(&mut client) else { return };
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or_default().to_string(), words.next().unwrap_or_default().to_string());
        let fault = rules.lock().ok().and_then(|mut rules| {
            rules.iter_mut().find_map(|r| {
                if r.method == method && path.contains(&r.path) {
                    r.seen += 1;
                    (r.seen == r.nth).then_some(r.fault)
                } else {
                    None
                }
            })
        });
        if fault.is_some() {
            if let Ok(mut n) = injected.lock() {
                *n += 1;
            }
        }
        if let Some(Fault::Status(code)) = fault {
            let body = format!(r#"{{"code": {code}, "title": "Injected", "description": "fault injected by the test proxy"}}"#);
            let answer = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if client.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let Some(mut answer) = forward(upstream, &head, &body) else { return };
        match fault {
            Some(Fault::DropAnswer) => return,
            Some(Fault::CorruptBody) => {
                if let Some(last) = answer.last_mut() {
                    *last ^= 0xff;
                }
            }
            _ => {}
        }
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Reads one request: the head (request line and headers) and a body of Content-Length bytes.
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Sends the request upstream on a fresh connection (`Connection: close`) and returns the whole
/// answer, head and body.
fn forward(upstream: &str, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut request: String =
        head.lines().filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty()).map(|l| format!("{l}\r\n")).collect();
    request.push_str("Connection: close\r\n\r\n");
    up.write_all(request.as_bytes()).ok()?;
    up.write_all(body).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    // The client keeps its connection: the answer must not tell it otherwise, and its length
    // must be explicit.
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (ahead, abody) = answer.split_at(split);
    let ahead = String::from_utf8_lossy(ahead);
    let mut out: String = ahead
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("content-length:") && !l.starts_with("transfer-encoding:") && !l.is_empty()
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str(&format!("Content-Length: {}\r\n\r\n", abody.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(abody);
    Some(bytes)
}
