//! Secrets in memory: a string that must never be shown (passwords, tokens, `fixed_key`,
//! database URLs with their password), and buffers for the bytes that carry one (a request body
//! with the base64 payload, an answer with the payload read back).
//!
//! [`Sensitive`]'s `Debug` and `Display` print a placeholder, and its memory is zeroed on drop.
//! The buffers here are zeroed on drop and, when they must grow, copy into a larger buffer and
//! zero the old one, where a plain `Vec` would leave its old allocation unwiped. That covers the
//! copies keymigrate itself makes; copies inside libraries (ureq and rustls buffers, the
//! database client libraries) and in the process environment are not wiped: docs/design.md,
//! "Secrets in memory", lists what is and what is not.

use std::io::{Read, Write};

use zeroize::{Zeroize, Zeroizing};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    /// Takes the string as it is: a `String` is moved, not copied.
    pub fn new(value: impl Into<String>) -> Sensitive {
        Sensitive(value.into())
    }

    /// Takes the string out of a zeroizing buffer without copying it.
    pub fn from_zeroizing(mut value: Zeroizing<String>) -> Sensitive {
        Sensitive(std::mem::take(&mut *value))
    }

    /// The value itself, for the one place that must send it (an HTTP body, a connect call).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Sensitive {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Appends `text` to `buf`, growing it by copying into a larger zeroizing string so that no
/// unwiped copy of what it held is left behind.
pub fn push_wiping(buf: &mut Zeroizing<String>, text: &str) {
    if buf.capacity() - buf.len() < text.len() {
        let wanted = (buf.len() + text.len()).max(buf.capacity() * 2).max(64);
        let mut bigger = Zeroizing::new(String::with_capacity(wanted));
        bigger.push_str(buf);
        *buf = bigger;
    }
    buf.push_str(text);
}

/// A byte buffer that wipes every allocation it leaves: written to by serde_json, read into
/// from an HTTP answer.
struct WipingBuffer(Zeroizing<Vec<u8>>);

impl WipingBuffer {
    fn with_capacity(capacity: usize) -> WipingBuffer {
        WipingBuffer(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    /// Makes room for `more` bytes without letting `Vec` reallocate by itself.
    fn reserve(&mut self, more: usize) {
        if self.0.capacity() - self.0.len() >= more {
            return;
        }
        let wanted = (self.0.len() + more).max(self.0.capacity() * 2).max(256);
        let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
        bigger.extend_from_slice(&self.0);
        // The old buffer is dropped here, and zeroed.
        self.0 = bigger;
    }
}

impl Write for WipingBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON, serialized straight into a zeroizing buffer: for a request body holding a
/// password or a secret's payload, with no `serde_json::Value` or plain `Vec` copy on the way.
pub fn json_body<T: serde::Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut buf = WipingBuffer::with_capacity(1024);
    serde_json::to_writer(&mut buf, value)?;
    Ok(buf.0)
}

/// Everything `reader` yields, read straight into a zeroizing buffer that wipes what it
/// outgrows.
pub fn read_wiping(reader: &mut impl Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = WipingBuffer::with_capacity(4096);
    loop {
        buf.reserve(1);
        let filled = buf.0.len();
        // Read into the spare capacity, zero-initialised first (a `Vec` must not expose
        // uninitialised bytes to `Read`).
        let capacity = buf.0.capacity();
        buf.0.resize(capacity, 0);
        match reader.read(&mut buf.0[filled..]) {
            Ok(0) => {
                buf.0.truncate(filled);
                return Ok(buf.0);
            }
            Ok(n) => buf.0.truncate(filled + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.0.truncate(filled),
            Err(e) => {
                buf.0.truncate(filled);
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Sensitive::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn json_bodies_are_serde_json_byte_for_byte_across_growth() {
        // Well past the first allocation, with escapes, so the buffer grows several times.
        let payload = "AbC+/=\"\\\n".repeat(2000);
        let value = serde_json::json!({"name": "keymigrate-volume-x", "payload": payload, "bit_length": 256});
        let body = json_body(&value).expect("serialize");
        assert_eq!(body.as_slice(), serde_json::to_vec(&value).expect("serialize").as_slice());
    }

    #[test]
    fn reads_whole_answers_in_short_reads() {
        /// A reader that hands out at most 7 bytes at a time, interrupted once.
        struct Trickle<'a>(&'a [u8], bool);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                if !self.1 {
                    self.1 = true;
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                let n = self.0.len().min(out.len()).min(7);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let read = read_wiping(&mut Trickle(&data, false)).expect("read");
        assert_eq!(read.as_slice(), data.as_slice());
        assert_eq!(read_wiping(&mut Trickle(b"", true)).expect("read").len(), 0);
    }

    #[test]
    fn pushes_grow_without_losing_text() {
        let mut buf = Zeroizing::new(String::new());
        for part in ["pa", "$", "word", &"x".repeat(500)] {
            push_wiping(&mut buf, part);
        }
        assert_eq!(buf.as_str(), format!("pa$word{}", "x".repeat(500)));
        assert_eq!(Sensitive::from_zeroizing(buf).expose().len(), 507);
    }
}
