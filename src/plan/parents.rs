//! What a census learns about volumes in its one sequential pass over `volumes`, so that child
//! rows (snapshots, glance metadata) can be planned without looking their volume up one row at a
//! time: on a large SQLite database those lookups are random reads that cost far more than
//! reading every volume in order.
//!
//! Each reader of a part of `volumes` builds an index of its part; child rows are looked up in
//! all of them ([`find_all`]). Only volumes in scope are kept, about 32 bytes each: the ID as 16
//! bytes when it is a canonical UUID (a string otherwise), and the host, owner and project as
//! indexes into a table of distinct strings (hosts, users and projects are few next to volumes).

use std::collections::HashMap;

use crate::db::Backend;

/// A child row's volume, as far as planning the child needs it. The volume is in scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent<'a> {
    pub host: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// The volume's `project_id`: kept only under `--secret-owner project`, where a child shares
    /// the volume's secret only when it is in the same project (`None` otherwise).
    pub project: Option<&'a str>,
    /// The volume is itself a unit: live and still on the all-zeros key.
    pub zero_and_live: bool,
    /// The volume has an encryption key ID at all (the all-zeros one or another).
    pub encrypted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Kept {
    host: u32,
    owner: u32,
    project: u32,
    zero_and_live: bool,
    encrypted: bool,
}

/// In-scope volumes by ID. Filled during the volumes pass, then [`sealed`](Parents::seal).
#[derive(Default)]
pub struct Parents {
    /// Whether IDs compare the way MySQL's default collation does: case-insensitive, trailing
    /// spaces ignored. Lookups must match what the database's own join would match.
    fold_case: bool,
    /// Sorted by ID once sealed.
    uuids: Vec<([u8; 16], Kept)>,
    /// Where each run of IDs sharing their first `bits` bits starts in `uuids`: a lookup reads
    /// one directory slot and searches a handful of entries, where a binary search of the whole
    /// array would miss the cache at every step. Cinder's IDs are random (UUID version 4), so
    /// the runs are short; any other IDs are still found, only with a longer search.
    directory: Vec<u32>,
    bits: u32,
    others: HashMap<String, Kept>,
    strings: Strings,
    sealed: bool,
    /// The most volumes to keep; past it, the index is dropped and [`abandoned`](Parents::abandoned).
    limit: usize,
    abandoned: bool,
}

impl Parents {
    /// An index of at most `limit` volumes.
    pub fn new(backend: Backend, limit: usize) -> Parents {
        Parents { fold_case: backend == Backend::Mysql, limit, ..Parents::default() }
    }

    /// More than the limit of volumes were inserted: the index holds nothing and finds nothing.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    pub fn insert(&mut self, id: &str, host: Option<&str>, owner: Option<&str>, project: Option<&str>, zero_and_live: bool, encrypted: bool) {
        if self.abandoned {
            return;
        }
        if self.uuids.len() + self.others.len() >= self.limit {
            *self = Parents { fold_case: self.fold_case, limit: self.limit, abandoned: true, ..Parents::default() };
            return;
        }
        let facts = Kept {
            host: self.strings.index(host),
            owner: self.strings.index(owner),
            project: self.strings.index(project),
            zero_and_live,
            encrypted,
        };
        let id = self.normalize(id);
        match uuid_bytes(&id) {
            Some(bytes) => self.uuids.push((bytes, facts)),
            None => {
                self.others.insert(id.into_owned(), facts);
            }
        }
        self.sealed = false;
    }

    /// Sorts the index for lookups; call once the volumes pass is over. Sealing again is free.
    pub fn seal(&mut self) {
        if self.sealed {
            return;
        }
        // As one big-endian number: the same order as the bytes', compared without a call.
        self.uuids.sort_unstable_by_key(|(id, _)| u128::from_be_bytes(*id));
        self.uuids.shrink_to_fit();
        // About four IDs per run.
        self.bits = (usize::BITS - self.uuids.len().leading_zeros()).saturating_sub(2).min(24);
        let runs = 1usize << self.bits;
        self.directory = Vec::with_capacity(runs + 1);
        let mut at = 0usize;
        for run in 0..runs {
            while at < self.uuids.len() && self.run_of(u128::from_be_bytes(self.uuids[at].0)) < run {
                at += 1;
            }
            self.directory.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
        self.directory.push(u32::try_from(self.uuids.len()).unwrap_or(u32::MAX));
        self.sealed = true;
    }

    /// The in-scope volume `id`, or `None` when it is out of scope or does not exist.
    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<Parent<'_>> {
        let mut found = [None];
        self.find(&[Some(self.wanted(id))], &mut found);
        found[0]
    }

    /// An ID as this index compares it.
    fn wanted<'a>(&self, id: &'a str) -> Wanted<'a> {
        let id = self.normalize(id);
        let uuid = uuid_bytes(&id).map(u128::from_be_bytes);
        Wanted { id, uuid }
    }

    /// Looks up every wanted ID that is not `found` yet, and fills in those it finds. One
    /// lookup at a time, nearly every one waits for two cache (and TLB) misses, one after the
    /// other, as the IDs are random; looked up in passes, first every directory slot, then
    /// every run of entries, the misses of a whole page overlap.
    fn find<'p>(&'p self, wanted: &[Option<Wanted<'_>>], found: &mut [Option<Parent<'p>>]) {
        debug_assert!(self.sealed, "Parents::find before seal");
        // Pass 1: the run of entries each canonical UUID would be in.
        let runs: Vec<(usize, usize)> = wanted
            .iter()
            .zip(found.iter())
            .map(|(w, f)| {
                let run = match (w, f) {
                    (Some(Wanted { uuid: Some(key), .. }), None) => self.run_of(*key),
                    _ => usize::MAX,
                };
                match (self.directory.get(run), self.directory.get(run.wrapping_add(1))) {
                    (Some(&start), Some(&end)) => (start as usize, end as usize),
                    _ => (0, 0),
                }
            })
            .collect();
        // Pass 2: bring every run's entries into the cache, the loads independent of each other.
        let mut touched = 0u8;
        for &(start, end) in &runs {
            if let (Some(first), Some(last)) = (self.uuids.get(start), end.checked_sub(1).and_then(|e| self.uuids.get(e))) {
                touched ^= first.0[0] ^ last.0[15];
            }
        }
        std::hint::black_box(touched);
        // Pass 3: the searches, now in the cache.
        for ((w, f), (start, end)) in wanted.iter().zip(found.iter_mut()).zip(runs) {
            let Some(w) = w.as_ref().filter(|_| f.is_none()) else { continue };
            let facts = match w.uuid {
                Some(key) => self.uuids.get(start..end).and_then(|candidates| {
                    // A run of random IDs is a few entries long: compared one after the other,
                    // without the unpredictable branches of a binary search. A long run (IDs
                    // that share their first bits) is still searched in logarithmic time.
                    if candidates.len() <= 16 {
                        let key = key.to_be_bytes();
                        return candidates.iter().find(|(k, _)| *k == key).map(|(_, facts)| *facts);
                    }
                    let at = candidates.binary_search_by(|(k, _)| u128::from_be_bytes(*k).cmp(&key)).ok()?;
                    Some(candidates[at].1)
                }),
                None => self.others.get(&*w.id).copied(),
            };
            *f = facts.map(|facts| Parent {
                host: self.strings.get(facts.host),
                owner: self.strings.get(facts.owner),
                project: self.strings.get(facts.project),
                zero_and_live: facts.zero_and_live,
                encrypted: facts.encrypted,
            });
        }
    }

    /// The directory slot of an ID: its first `bits` bits.
    fn run_of(&self, id: u128) -> usize {
        let top = (id >> 96) as u32;
        match self.bits {
            0 => 0,
            bits => (top >> (32 - bits)) as usize,
        }
    }

    fn normalize<'a>(&self, id: &'a str) -> std::borrow::Cow<'a, str> {
        if self.fold_case {
            std::borrow::Cow::Owned(id.trim_end_matches(' ').to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(id)
        }
    }
}

/// An ID looked up: as the database compares it, and as a number when it is a canonical UUID.
struct Wanted<'a> {
    id: std::borrow::Cow<'a, str>,
    uuid: Option<u128>,
}

/// Looks a page of IDs up (`None` in, `None` out) across the indexes that readers of parts of
/// `volumes` built: each volume is in at most one of them. Each ID is read once, for all of them
/// (the indexes are of one database, so they compare IDs alike).
pub fn find_all<'a, 'p>(indexes: &'p [Parents], ids: impl IntoIterator<Item = Option<&'a str>>) -> Vec<Option<Parent<'p>>> {
    let wanted: Vec<Option<Wanted<'a>>> = match indexes.first() {
        Some(index) => ids.into_iter().map(|id| id.map(|id| index.wanted(id))).collect(),
        None => ids.into_iter().map(|_| None).collect(),
    };
    let mut found = vec![None; wanted.len()];
    for index in indexes {
        index.find(&wanted, &mut found);
    }
    found
}

/// The 16 bytes of a UUID in canonical form (lower-case hex, 8-4-4-4-12). Other spellings
/// (upper case, or the braced, URN and unhyphenated forms the `uuid` crate also reads) are kept
/// as strings so that a lookup matches exactly what the database would.
fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    if s.len() != 36 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(s).ok().map(uuid::Uuid::into_bytes)
}

/// Distinct strings by index; index 0 is NULL.
#[derive(Default)]
struct Strings {
    /// FxHash: hosts and user IDs come from the operator's own database, so a keyed hash (the
    /// standard library's default, made to resist crafted keys) buys nothing here but time.
    index: HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>,
    list: Vec<Box<str>>,
}

impl Strings {
    fn index(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.list.push(s.into());
        // More distinct strings than u32 can count would need more memory than any Cinder
        // database's volumes table has rows; saturate rather than wrap.
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.index.insert(s.into(), i);
        i
    }

    fn get(&self, i: u32) -> Option<&str> {
        let i = usize::try_from(i).ok()?.checked_sub(1)?;
        self.list.get(i).map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuids_are_read_as_bytes_and_other_ids_kept_as_strings() {
        assert!(uuid_bytes("0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10").is_some());
        assert_eq!(uuid_bytes("00000000-0000-0000-0000-000000000001").map(|b| b[15]), Some(1));
        for odd in ["0B7E7C6C-3B1A-4A8E-9A53-3F5D1C9E2A10", "0b7e7c6c3b1a4a8e9a533f5d1c9e2a10",
            "{0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10}",
            "urn:uuid:0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10",
            "vol-1", "", "0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a1g"] {
            assert_eq!(uuid_bytes(odd), None, "{odd}");
        }
    }

    /// The rule as it reads: each digit on its own.
    fn uuid_bytes_by_digit(s: &str) -> Option<[u8; 16]> {
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let digits: Vec<u8> =
            b.iter().enumerate().filter(|(i, _)| ![8, 13, 18, 23].contains(i)).map(|(_, &c)| digit(c)).collect::<Option<_>>()?;
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *o = pair[0] << 4 | pair[1];
        }
        Some(out)
    }

    #[test]
    fn uuids_are_read_as_digit_by_digit_at_every_position_with_every_byte() {
        let base = "0123abcd-ef45-6789-a0b1-c2d3e4f5a6b7";
        assert_eq!(uuid_bytes(base), uuid_bytes_by_digit(base));
        assert_eq!(
            uuid_bytes(base),
            Some([0x01, 0x23, 0xab, 0xcd, 0xef, 0x45, 0x67, 0x89, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0xa6, 0xb7])
        );
        for at in 0..36 {
            for byte in 0..=255u8 {
                let mut bytes = base.as_bytes().to_vec();
                bytes[at] = byte;
                let Ok(s) = std::str::from_utf8(&bytes) else { continue };
                assert_eq!(uuid_bytes(s), uuid_bytes_by_digit(s), "byte {byte:#04x} at {at}");
            }
        }
        // Random IDs, and every digit at every position.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hex = format!("{:016x}{:016x}", x, x.rotate_left(29) ^ 0x5555_aaaa_0f0f_f0f0);
            let id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
            assert_eq!(uuid_bytes(&id), uuid_bytes_by_digit(&id), "{id}");
            assert!(uuid_bytes(&id).is_some());
        }
    }

    #[test]
    fn lookups_find_exactly_what_was_inserted() {
        let mut p = Parents::new(Backend::Sqlite, usize::MAX);
        p.insert("0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10", Some("node1@lvm#a"), Some("alice"), Some("p1"), true, true);
        p.insert("VOL-odd", None, None, None, false, false);
        p.insert("1b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10", Some("node1@lvm#a"), None, None, false, false);
        p.seal();
        let a = p.get("0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10");
        assert_eq!(a, Some(Parent { host: Some("node1@lvm#a"), owner: Some("alice"), project: Some("p1"), zero_and_live: true, encrypted: true }));
        assert_eq!(p.get("VOL-odd"), Some(Parent { host: None, owner: None, project: None, zero_and_live: false, encrypted: false }));
        assert_eq!(p.get("1b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10").and_then(|v| v.owner), None);
        // SQLite and PostgreSQL compare IDs exactly.
        assert_eq!(p.get("vol-odd"), None);
        assert_eq!(p.get("0B7E7C6C-3B1A-4A8E-9A53-3F5D1C9E2A10"), None);
        assert_eq!(p.get("2b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10"), None);
    }

    #[test]
    fn lookups_work_at_every_directory_size() {
        for n in [0usize, 1, 2, 3, 5, 17, 1000, 5000] {
            let mut p = Parents::new(Backend::Postgres, usize::MAX);
            // Clustered, not random: every ID shares its first bytes.
            let ids: Vec<String> = (0..n).map(|i| format!("00000000-0000-4000-8000-{i:012x}")).collect();
            for (i, id) in ids.iter().enumerate() {
                p.insert(id, Some("h"), None, None, i % 2 == 0, true);
            }
            p.insert("ffffffff-ffff-4fff-bfff-ffffffffffff", None, None, None, true, true);
            p.seal();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(p.get(id).map(|v| v.zero_and_live), Some(i % 2 == 0), "{n} {id}");
            }
            assert!(p.get("ffffffff-ffff-4fff-bfff-ffffffffffff").is_some());
            assert!(p.get("00000000-0000-4000-8000-ffffffffffff").is_none());
            assert!(p.get("80000000-0000-4000-8000-000000000000").is_none());
        }
    }

    #[test]
    fn an_index_past_its_limit_is_dropped() {
        let mut p = Parents::new(Backend::Sqlite, 2);
        p.insert("0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10", Some("h"), Some("u"), None, true, true);
        p.insert("vol-odd", Some("h"), Some("u"), None, true, true);
        assert!(!p.abandoned());
        p.insert("1b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10", Some("h"), Some("u"), None, true, true);
        assert!(p.abandoned());
        p.insert("2b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10", Some("h"), Some("u"), None, true, true);
        p.seal();
        assert!(p.abandoned());
        assert_eq!(p.get("0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10"), None);
        assert_eq!(p.uuids.capacity() + p.others.capacity(), 0);
    }

    #[test]
    fn mysql_ids_match_as_its_collation_does() {
        let mut p = Parents::new(Backend::Mysql, usize::MAX);
        p.insert("0B7E7C6C-3B1A-4A8E-9A53-3F5D1C9E2A10", Some("h"), Some("u"), None, true, true);
        p.insert("Vol-Odd", Some("h"), Some("u"), None, true, true);
        p.seal();
        assert!(p.get("0b7e7c6c-3b1a-4a8e-9a53-3f5d1c9e2a10").is_some());
        assert!(p.get("vol-odd  ").is_some());
    }
}
