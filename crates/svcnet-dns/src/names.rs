//! The prepared answers of every owner name, packed into few, mid-sized allocations.
//!
//! A `HashMap<Box<[u8]>, NameEntry>` with a boxed slice of templates per name and a boxed byte
//! string per template took three or four small allocations per name: ~11 MB at 10,000
//! Services (40,000 names, 70,000 templates). Small allocations that outlive the build also
//! pin the allocator pages they share with the build's short-lived data, which then stay
//! resident. Here each name is one record (key, template headers, answer bytes) appended to
//! 64 KiB chunks, and the hash table holds only a 32-bit offset per name: 6.7 MB for the same
//! names, in ~100 chunks and one table, all freed with the index.
//!
//! A record: key length (1 byte), template count (1), whether the last template is the
//! fallback (1), the key, then per template its header (query type, rcode, the three section
//! counts and the byte length, each a native-endian u16), then the templates' bytes in order.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::template::Template;

/// Chunks are 64 KiB: large enough that few are needed, small enough to stay ordinary heap
/// blocks. A record larger than a chunk (a huge headless Service) gets a chunk of its own.
/// Chunks are never reallocated: a growing vector would copy itself and hold twice its size
/// at each doubling, at the peak of the build.
const CHUNK_SHIFT: u32 = 16;
const CHUNK: usize = 1 << CHUNK_SHIFT;
/// Chunks addressable by a 32-bit offset: chunk index in the high bits, position in the
/// chunk in the low ones.
const MAX_CHUNKS: usize = 1 << (32 - CHUNK_SHIFT);

const RECORD_HEAD: usize = 3;
const HEADER_LEN: usize = 12;

/// Records, each within one chunk.
#[derive(Default)]
struct Chunks(Vec<Box<[u8]>>);

impl Chunks {
    /// The bytes from `at` to the end of its chunk: a record and whatever follows it.
    fn from(&self, at: u32) -> &[u8] {
        let chunk = &self.0[(at >> CHUNK_SHIFT) as usize];
        &chunk[(at as usize & (CHUNK - 1))..]
    }

    fn len(&self) -> usize {
        self.0.iter().map(|c| c.len()).sum()
    }
}

/// [`Chunks`] being filled.
#[derive(Default)]
struct ChunksBuilder {
    full: Vec<Box<[u8]>>,
    current: Vec<u8>,
}

impl ChunksBuilder {
    /// Stores a record; `None` when 4 GiB of records are stored already.
    fn push(&mut self, record: &[u8]) -> Option<u32> {
        if self.current.capacity() - self.current.len() < record.len() {
            self.seal();
            if self.full.len() >= MAX_CHUNKS {
                return None;
            }
            if record.len() > CHUNK {
                self.full.push(record.into());
                return Some(((self.full.len() - 1) << CHUNK_SHIFT) as u32);
            }
            self.current = Vec::with_capacity(CHUNK);
        }
        // Below 2^32: fewer than MAX_CHUNKS chunks, and positions below CHUNK.
        let at = ((self.full.len() << CHUNK_SHIFT) | self.current.len()) as u32;
        self.current.extend_from_slice(record);
        Some(at)
    }

    /// Moves the current chunk to the full ones (its index stays the same).
    fn seal(&mut self) {
        if self.current.capacity() > 0 {
            let current = std::mem::take(&mut self.current);
            self.full.push(current.into_boxed_slice());
        }
    }

    fn finish(mut self) -> Chunks {
        self.seal();
        Chunks(self.full)
    }

    fn from(&self, at: u32) -> &[u8] {
        let index = (at >> CHUNK_SHIFT) as usize;
        let chunk = self.full.get(index).map_or(&self.current[..], |c| &c[..]);
        &chunk[(at as usize & (CHUNK - 1))..]
    }
}

/// The key of the record at the start of `bytes`.
fn record_key(bytes: &[u8]) -> &[u8] {
    &bytes[RECORD_HEAD..RECORD_HEAD + usize::from(bytes[0])]
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

/// A prepared answer, borrowed from the [`NameTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TemplateRef<'a> {
    pub(crate) rcode: u16,
    pub(crate) counts: [u16; 3],
    pub(crate) bytes: &'a [u8],
}

/// The prepared answers of one owner name, by query type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameEntry<'a> {
    /// The name's record and whatever follows it in its chunk.
    record: &'a [u8],
}

impl<'a> NameEntry<'a> {
    /// The prepared answer for `qtype`; `None` means the name exists without such records.
    pub(crate) fn find(&self, qtype: u16) -> Option<TemplateRef<'a>> {
        let r = self.record;
        let count = usize::from(r[1]);
        let fallback = r[2] != 0;
        let headers = RECORD_HEAD + usize::from(r[0]);
        let own = count - usize::from(fallback);
        let found = (0..own)
            .find(|i| u16_at(r, headers + i * HEADER_LEN) == qtype)
            .or_else(|| fallback.then(|| count - 1))?;
        // The template's bytes follow the headers and the templates before it.
        let mut at = headers + count * HEADER_LEN;
        for i in 0..found {
            at += usize::from(u16_at(r, headers + i * HEADER_LEN + 10));
        }
        let h = headers + found * HEADER_LEN;
        let len = usize::from(u16_at(r, h + 10));
        Some(TemplateRef {
            rcode: u16_at(r, h + 2),
            counts: [u16_at(r, h + 4), u16_at(r, h + 6), u16_at(r, h + 8)],
            bytes: &r[at..at + len],
        })
    }
}

/// Owner names (lowercase wire form) and their prepared answers.
pub(crate) struct NameTable {
    hasher: RandomState,
    /// Where each name's record starts.
    entries: HashTable<u32>,
    records: Chunks,
}

impl std::fmt::Debug for NameTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameTable")
            .field("names", &self.entries.len())
            .field("bytes", &self.records.len())
            .finish()
    }
}

impl Default for NameTable {
    fn default() -> Self {
        NameTableBuilder::with_capacity(0).finish()
    }
}

impl NameTable {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<NameEntry<'_>> {
        let hash = self.hasher.hash_one(key);
        let at = *self
            .entries
            .find(hash, |at| record_key(self.records.from(*at)) == key)?;
        Some(NameEntry {
            record: self.records.from(at),
        })
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Bytes held by the table's allocations (for tests).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.entries.allocation_size()
            + self.records.len()
            + self.records.0.len() * std::mem::size_of::<Box<[u8]>>()
    }
}

/// Collects names and templates, then packs them into a [`NameTable`].
pub(crate) struct NameTableBuilder {
    hasher: RandomState,
    entries: HashTable<u32>,
    records: ChunksBuilder,
    /// The record being written, reused from name to name.
    scratch: Vec<u8>,
}

impl NameTableBuilder {
    /// For about `names` names.
    pub(crate) fn with_capacity(names: usize) -> Self {
        NameTableBuilder {
            hasher: RandomState::new(),
            entries: HashTable::with_capacity(names),
            records: ChunksBuilder::default(),
            scratch: Vec::new(),
        }
    }

    /// Adds a name (its lowercase wire form) with its templates by query type and its fallback.
    /// A name added twice keeps its first templates. Returns false when the table cannot hold
    /// it (names over 255 bytes, over 4 GiB of answers), in which case nothing was added.
    pub(crate) fn push(
        &mut self,
        key: &[u8],
        templates: Vec<(u16, Template)>,
        fallback: Option<Template>,
    ) -> bool {
        let hash = self.hasher.hash_one(key);
        let records = &self.records;
        if self
            .entries
            .find(hash, |at| record_key(records.from(*at)) == key)
            .is_some()
        {
            return true;
        }
        let count = templates.len() + usize::from(fallback.is_some());
        let fits = templates
            .iter()
            .map(|(_, t)| t)
            .chain(&fallback)
            .all(|t| t.bytes.len() <= usize::from(u16::MAX));
        let (Ok(key_len), Ok(count), true) = (u8::try_from(key.len()), u8::try_from(count), fits)
        else {
            return false;
        };
        let has_fallback = fallback.is_some();
        let all = || {
            templates
                .iter()
                .map(|(q, t)| (*q, t))
                .chain(fallback.iter().map(|t| (0, t)))
        };
        let r = &mut self.scratch;
        r.clear();
        r.extend_from_slice(&[key_len, count, u8::from(has_fallback)]);
        r.extend_from_slice(key);
        for (qtype, t) in all() {
            // At most u16::MAX: checked above.
            let len = t.bytes.len() as u16;
            for v in [qtype, t.rcode, t.counts[0], t.counts[1], t.counts[2], len] {
                r.extend_from_slice(&v.to_ne_bytes());
            }
        }
        for (_, t) in all() {
            r.extend_from_slice(&t.bytes);
        }
        let Some(at) = self.records.push(&self.scratch) else {
            return false;
        };
        let (records, hasher) = (&self.records, &self.hasher);
        self.entries.insert_unique(hash, at, |at| {
            hasher.hash_one(record_key(records.from(*at)))
        });
        true
    }

    pub(crate) fn finish(self) -> NameTable {
        let NameTableBuilder {
            hasher,
            mut entries,
            records,
            ..
        } = self;
        // The capacity was a guess; the slack would stay for the index's whole life.
        entries.shrink_to_fit(|at| hasher.hash_one(record_key(records.from(*at))));
        NameTable {
            hasher,
            entries,
            records: records.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rcode: u16, bytes: &[u8]) -> Template {
        Template {
            rcode,
            counts: [1, 0, 0],
            bytes: bytes.into(),
        }
    }

    #[test]
    fn finds_templates_and_fallbacks() {
        let mut b = NameTableBuilder::with_capacity(1);
        assert!(b.push(
            b"\x01a\x00",
            vec![(1, t(0, b"A")), (28, t(0, b"AAAA"))],
            None
        ));
        assert!(b.push(b"\x01b\x00", vec![(5, t(0, b"CNAME"))], Some(t(3, b"FB"))));
        assert!(b.push(b"\x01c\x00", Vec::new(), None));
        // A second push of a name keeps the first.
        assert!(b.push(b"\x01a\x00", vec![(1, t(0, b"other"))], None));
        let table = b.finish();
        assert_eq!(table.len(), 3);

        let a = table.get(b"\x01a\x00").unwrap();
        assert_eq!(a.find(1).unwrap().bytes, b"A");
        assert_eq!(a.find(28).unwrap().bytes, b"AAAA");
        assert!(a.find(16).is_none());

        let b = table.get(b"\x01b\x00").unwrap();
        assert_eq!(b.find(5).unwrap().bytes, b"CNAME");
        let fb = b.find(1).unwrap();
        assert_eq!((fb.rcode, fb.bytes), (3, &b"FB"[..]));

        assert!(table.get(b"\x01c\x00").unwrap().find(1).is_none());
        assert!(!table.contains(b"\x01d\x00"));
        assert!(NameTable::default().get(b"\x00").is_none());
    }

    #[test]
    fn spans_chunks() {
        // 3,000 names with a ~1,000-byte template each (~45 chunks); every 500th also has two
        // near-maximal templates, a record larger than a chunk.
        let key = |i: u32| format!("\x04{i:04}\x00").into_bytes();
        let body = |i: u32| vec![(i % 251) as u8; 1000 + (i as usize % 7)];
        let big = |i: u32| vec![(i % 13) as u8; 65_000];
        let mut b = NameTableBuilder::with_capacity(10);
        for i in 0..3000 {
            let mut templates = vec![(1, t(0, &body(i)))];
            if i % 500 == 0 {
                templates.push((28, t(0, &big(i))));
                templates.push((33, t(0, &big(i + 1))));
            }
            assert!(b.push(&key(i), templates, Some(t(3, &[i as u8]))));
        }
        let table = b.finish();
        assert_eq!(table.len(), 3000);
        assert!(table.records.0.len() > 40);
        for i in 0..3000 {
            let entry = table.get(&key(i)).unwrap();
            assert_eq!(entry.find(1).unwrap().bytes, &body(i)[..], "name {i}");
            if i % 500 == 0 {
                assert_eq!(entry.find(28).unwrap().bytes, &big(i)[..], "name {i}");
                assert_eq!(entry.find(33).unwrap().bytes, &big(i + 1)[..], "name {i}");
            }
            let fallback = entry.find(16).unwrap();
            assert_eq!((fallback.rcode, fallback.bytes), (3, &[i as u8][..]));
        }
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let mut b = NameTableBuilder::with_capacity(1);
        assert!(!b.push(&[1; 256], Vec::new(), None));
        let too_big = Template {
            rcode: 0,
            counts: [1, 0, 0],
            bytes: vec![0; 70_000].into(),
        };
        assert!(!b.push(b"\x01a\x00", vec![(1, too_big)], None));
        assert_eq!(b.finish().len(), 0);
    }
}
