//! A fault-injecting HTTP proxy on 127.0.0.1, in front of the real Barbican (or Keystone): each
//! request is forwarded unless a rule matches it (by method, a piece of the path, and which
//! matching request it is), in which case the proxy answers an error itself, breaks the
//! connection before or after the server has done the work, stalls or dribbles the answer, alters
//! it, or closes its port altogether.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with a JSON error body, without forwarding.
    Status(u16),
    /// Answer this status and body (JSON), without forwarding.
    Answer(u16, String),
    /// Forward (the server does the work), then close the connection without answering.
    DropAnswer,
    /// Forward, then flip the last byte of the answer body.
    CorruptBody,
    /// Read the request, then reset the connection (RST) without forwarding.
    ResetBeforeForward,
    /// Forward, send the first half of the answer, then reset the connection.
    HalfAnswer,
    /// Forward, then hold the answer this long before sending it.
    Stall(Duration),
    /// Forward, then send the answer one byte at a time, this long apart.
    Trickle(Duration),
    /// Forward, then send only the first half of the body, with a Content-Length that matches.
    TruncateBody,
    /// Forward, then replace the body with this text (headers kept).
    ReplaceBody(String),
    /// Forward, then replace the answer's `secret_ref` with this one.
    SecretRef(String),
    /// Forward, then replace the `secret_ref` of every secret in a listing with this one.
    ListRef(String),
    /// Forward, then replace what precedes `/v1/` in the answer's `secret_ref` (its host).
    SecretRefHost(String),
    /// Forward, then keep only the images with these IDs in a Glance listing (`images`): a
    /// run through the proxy sees one test's images, not those other tests make side by side.
    OnlyImages(Vec<String>),
    /// Answer 401, and 401 again to every later request carrying the same token.
    Revoke,
    /// Close the port and every connection, without answering: the server is gone.
    Stop,
}

struct Rule {
    method: String,
    path: String,
    /// 1-based; 0: every matching request.
    nth: usize,
    seen: usize,
    fault: Fault,
}

struct Shared {
    addr: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    injected: Mutex<usize>,
    closed: AtomicBool,
    /// Every client connection, so that stopping closes them too.
    conns: Mutex<Vec<TcpStream>>,
    /// Tokens answered 401 by [`Fault::Revoke`].
    revoked: Mutex<Vec<String>>,
    /// Every request's method and path, in order of arrival.
    seen: Mutex<Vec<(String, String)>>,
}

pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`, any
    /// path ignored).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let upstream = upstream.trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
        let shared = Arc::new(Shared {
            addr,
            rules: Mutex::new(Vec::new()),
            injected: Mutex::new(0),
            closed: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            revoked: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if s.closed.load(Ordering::SeqCst) {
                    break;
                }
                if let (Ok(mut conns), Ok(c)) = (s.conns.lock(), conn.try_clone()) {
                    conns.push(c);
                }
                let (s, upstream) = (s.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &upstream, &s));
            }
            // The listener is dropped here: the port refuses connections from now on.
        });
        Proxy { url, shared }
    }

    /// Injects `fault` into the `nth` request (1-based; 0 for every one) whose method is
    /// `method` (`*` for any) and whose path contains `path`.
    pub fn rule(&self, method: &str, path: &str, nth: usize, fault: Fault) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push(Rule { method: method.into(), path: path.into(), nth, seen: 0, fault });
        }
    }

    /// Removes every rule: requests are forwarded unchanged from now on.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.clear();
        }
    }

    /// The method and path of every request received so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The Barbican requests seen that confirm new secrets' names: listings of the newest
    /// keymigrate secrets, and one secret's metadata alone (`GET /v1/secrets/<id>`, neither its
    /// payload nor its ACL).
    pub fn name_requests(&self) -> (usize, usize) {
        let requests = self.requests();
        let listings = requests.iter().filter(|(m, p)| m == "GET" && p.contains("?name=") && p.contains("sort=created")).count();
        let alone = requests
            .iter()
            .filter(|(m, p)| m == "GET" && p.strip_prefix("/v1/secrets/").is_some_and(|rest| !rest.contains('/') && !rest.contains('?')))
            .count();
        (listings, alone)
    }

    pub fn injected(&self) -> usize {
        self.shared.injected.lock().map(|n| *n).unwrap_or(0)
    }

    /// Closes the port and every open connection.
    pub fn stop(&self) {
        stop(&self.shared);
    }
}

fn stop(shared: &Shared) {
    if shared.closed.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Ok(conns) = shared.conns.lock() {
        for c in conns.iter() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
    // Wake the accept loop so that it drops the listener.
    let _ = TcpStream::connect(shared.addr);
}

/// Closes with RST instead of FIN: what the client sees when a middlebox or a crashed server
/// drops the connection.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket this function owns, with a correctly sized linger value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// One client connection: requests in a loop (the client keeps connections alive).
fn serve(mut client: TcpStream, upstream: &str, shared: &Shared) {
    loop {
        let Some((head, body)) = read_request(&mut client) else { return };
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or_default().to_string(), words.next().unwrap_or_default().to_string());
        if let Ok(mut seen) = shared.seen.lock() {
            seen.push((method.clone(), path.clone()));
        }
        let token = header(&head, "x-auth-token").map(String::from);
        let revoked = token.as_ref().is_some_and(|t| shared.revoked.lock().is_ok_and(|r| r.contains(t)));
        let fault = if revoked {
            Some(Fault::Revoke)
        } else {
            shared.rules.lock().ok().and_then(|mut rules| {
                rules.iter_mut().find_map(|r| {
                    if (r.method == "*" || r.method == method) && path.contains(&r.path) {
                        r.seen += 1;
                        (r.nth == 0 || r.seen == r.nth).then(|| r.fault.clone())
                    } else {
                        None
                    }
                })
            })
        };
        if fault.is_some() {
            if let Ok(mut n) = shared.injected.lock() {
                *n += 1;
            }
        }
        let own_answer = match &fault {
            Some(Fault::Status(code)) => Some((
                *code,
                format!(r#"{{"code": {code}, "title": "Injected", "description": "fault injected by the test proxy"}}"#),
            )),
            Some(Fault::Answer(code, body)) => Some((*code, body.clone())),
            Some(Fault::Revoke) => {
                if let (Some(t), Ok(mut r)) = (&token, shared.revoked.lock()) {
                    if !r.contains(t) {
                        r.push(t.clone());
                    }
                }
                Some((401, r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#.to_string()))
            }
            Some(Fault::ResetBeforeForward) => return reset(client),
            Some(Fault::Stop) => {
                stop(shared);
                return;
            }
            _ => None,
        };
        if let Some((code, body)) = own_answer {
            let answer = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if client.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let Some((answer_head, mut answer_body)) = forward(upstream, &head, &body) else { return };
        match &fault {
            Some(Fault::DropAnswer) => return,
            Some(Fault::CorruptBody) => {
                if let Some(last) = answer_body.last_mut() {
                    *last ^= 0xff;
                }
            }
            Some(Fault::TruncateBody) => answer_body.truncate(answer_body.len() / 2),
            Some(Fault::ReplaceBody(text)) => answer_body = text.clone().into_bytes(),
            Some(Fault::SecretRef(r)) => {
                let mut v: serde_json::Value = serde_json::from_slice(&answer_body).unwrap_or_default();
                v["secret_ref"] = serde_json::Value::String(r.clone());
                answer_body = serde_json::to_vec(&v).unwrap_or_default();
            }
            Some(Fault::ListRef(r)) => {
                let mut v: serde_json::Value = serde_json::from_slice(&answer_body).unwrap_or_default();
                if let Some(list) = v["secrets"].as_array_mut() {
                    for s in list {
                        s["secret_ref"] = serde_json::Value::String(r.clone());
                    }
                }
                answer_body = serde_json::to_vec(&v).unwrap_or_default();
            }
            Some(Fault::SecretRefHost(host)) => {
                let mut v: serde_json::Value = serde_json::from_slice(&answer_body).unwrap_or_default();
                let old = v["secret_ref"].as_str().unwrap_or_default().to_string();
                let tail = old.find("/v1/").map_or(old.as_str(), |i| &old[i..]);
                v["secret_ref"] = serde_json::Value::String(format!("{host}{tail}"));
                answer_body = serde_json::to_vec(&v).unwrap_or_default();
            }
            Some(Fault::OnlyImages(ids)) => {
                let mut v: serde_json::Value = serde_json::from_slice(&answer_body).unwrap_or_default();
                if let Some(list) = v["images"].as_array_mut() {
                    list.retain(|i| i["id"].as_str().is_some_and(|id| ids.iter().any(|k| k == id)));
                }
                answer_body = serde_json::to_vec(&v).unwrap_or_default();
            }
            _ => {}
        }
        let mut answer = format!("{answer_head}Content-Length: {}\r\n\r\n", answer_body.len()).into_bytes();
        answer.extend_from_slice(&answer_body);
        match &fault {
            Some(Fault::HalfAnswer) => {
                let _ = client.write_all(&answer[..answer.len() / 2]);
                let _ = client.flush();
                std::thread::sleep(Duration::from_millis(50));
                return reset(client);
            }
            Some(Fault::Stall(d)) => std::thread::sleep(*d),
            Some(Fault::Trickle(d)) => {
                for b in &answer {
                    if client.write_all(std::slice::from_ref(b)).is_err() {
                        return;
                    }
                    std::thread::sleep(*d);
                }
                continue;
            }
            _ => {}
        }
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Reads one request: the head (request line and headers) and a body of Content-Length bytes.
pub fn read_request(stream: &mut impl Read) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = header(&head, "content-length").map(|v| v.parse::<usize>().unwrap_or(0)).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Sends the request upstream on a fresh connection (`Connection: close`) and returns the
/// answer's head (status line and headers, without the framing ones) and its body.
pub fn forward(upstream: &str, head: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut request: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
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
    let out: String = ahead
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("content-length:") && !l.starts_with("transfer-encoding:") && !l.is_empty()
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    Some((out, abody.to_vec()))
}
