//! The corpus MinHash index that `data prepare` writes beside its shards (`minhash.idx`): for
//! every kept file its path, license and MinHash signature, so a later check can ask "which
//! training file is this text a near-copy of, and under which license" without re-reading the
//! corpus. Signatures are [`MinHasher`]'s, over the same word shingles as near-dedup, of each
//! file's [`referenced_text`] (the file without its leading comment block).
//!
//! File format, little-endian throughout:
//!
//! ```text
//! offset  size          field
//! 0       8             magic "ANVILMHI"
//! 8       4             version (1)
//! 12      4             num_perm: MinHash permutations per signature (1..=4096)
//! 16      4             ngram: words per shingle (1..=64)
//! 20      4             reserved, 0
//! 24      8             n: number of entries
//! 32      …             n × { path_len u32, path (UTF-8), license_len u32, license (UTF-8) }
//! …       n·num_perm·4  signatures, entry after entry, num_perm u32 each
//! end−8   8             xxh3-64 of every byte before it
//! ```
//!
//! The loader checks every length against the bytes actually present before it allocates, so a
//! corrupt or hostile file gives one error naming it, never a panic or a huge allocation.
//!
//! Lookup uses locality-sensitive hashing: signatures are cut into bands of `rows` values, and
//! only entries sharing a whole band with the query are compared. The banding is chosen when the
//! tables are built, for the lowest similarity the caller will ask about, not fixed at prepare
//! time: the signatures are all the index stores.

use crate::dedup::{MinHasher, estimated_jaccard};
use crate::error::{DataError, Result};
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Name of the index inside a prepared corpus directory.
pub const FILE_NAME: &str = "minhash.idx";

const MAGIC: &[u8; 8] = b"ANVILMHI";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const CHECKSUM_LEN: usize = 8;
/// Same bounds as `DedupConfig::validate`: a header outside them is corruption, not a config.
const MAX_PERM: usize = 4096;
const MAX_NGRAM: usize = 64;
/// Probability that a pair exactly at the build threshold shares at least one band. Pairs above
/// it are found more surely still.
const LSH_RECALL: f64 = 0.99;

/// One indexed corpus file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The path the shard records, relative to its source.
    pub path: String,
    /// SPDX expression, or `NOASSERTION`, as license detection gave it.
    pub license: String,
}

/// A corpus entry whose estimated Jaccard similarity with the query reached the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Index into [`MinHashIndex::entries`].
    pub entry: usize,
    pub jaccard: f64,
}

/// One band's lookup table: band keys sorted, with the entry each came from alongside. Two flat
/// arrays instead of a hash map of vectors: 8 bytes per entry and band, where a map would spend
/// a heap allocation on every singleton bucket.
struct BandTable {
    keys: Vec<u32>,
    ids: Vec<u32>,
}

struct Lsh {
    rows: usize,
    /// The similarity the banding was chosen for; lower thresholds fall back to a scan.
    min_jaccard: f64,
    bands: Vec<BandTable>,
}

/// Signatures of a corpus, with their files' paths and licenses.
pub struct MinHashIndex {
    num_perm: usize,
    ngram: usize,
    entries: Vec<IndexEntry>,
    /// All signatures back to back, `num_perm` values each.
    sigs: Vec<u32>,
    lsh: Option<Lsh>,
}

impl std::fmt::Debug for MinHashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinHashIndex")
            .field("num_perm", &self.num_perm)
            .field("ngram", &self.ngram)
            .field("entries", &self.entries.len())
            .field("lsh_min_jaccard", &self.lsh.as_ref().map(|l| l.min_jaccard))
            .finish()
    }
}

/// The part of a file that code referencing compares: the file after its leading comment block
/// (license header, shebang, editor modeline). That block is boilerplate shared by unrelated
/// files under one license, and is exactly what a copy leaves behind; with it, a verbatim copy of
/// a 200-word GPL module scores about 0.5 against its source, without it about 1. A file that
/// is all comment is compared whole. Index and query must both go through this function.
pub fn referenced_text(text: &str) -> &str {
    let mut at = 0;
    let mut in_block = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let comment = if in_block {
            in_block = !t.contains("*/");
            true
        } else if let Some(rest) = t.strip_prefix("/*") {
            in_block = !rest.contains("*/");
            true
        } else if let Some(rest) = t.strip_prefix('#') {
            // `#include`, `#define`: C preprocessor lines are code.
            !rest.starts_with(|c: char| c.is_ascii_alphabetic())
        } else {
            t.is_empty() || t.starts_with("//")
        };
        if !comment {
            break;
        }
        at += line.len();
    }
    let body = &text[at..];
    if crate::dedup::words(body).next().is_none() {
        text
    } else {
        body
    }
}

/// A band's bucket key. MinHash values are already uniformly random, so a multiply-xorshift
/// mix is enough (and much cheaper than a general hash: it runs bands × entries times per
/// load); 32 bits are plenty, since a collision only adds a candidate that verification drops.
fn band_key(rows: &[u32]) -> u32 {
    let h = rows.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &v| {
        let h = (h ^ v as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 29)
    });
    (h >> 32) as u32
}

/// Bands × rows for `num_perm` permutations such that a pair at similarity `t` becomes a
/// candidate with probability at least [`LSH_RECALL`], with as many rows per band as that allows
/// (more rows, fewer false candidates). `None` when no banding reaches the recall (very low `t`).
fn banding(num_perm: usize, t: f64) -> Option<(usize, usize)> {
    if !(t > 0.0 && t <= 1.0) {
        return None;
    }
    (1..=num_perm).rev().find_map(|rows| {
        let bands = num_perm / rows;
        let p = 1.0 - (1.0 - t.powi(rows as i32)).powi(bands as i32);
        (p >= LSH_RECALL).then_some((bands, rows))
    })
}

impl MinHashIndex {
    /// An empty index for signatures of `num_perm` permutations over `ngram`-word shingles.
    pub fn new(num_perm: usize, ngram: usize) -> Self {
        MinHashIndex {
            num_perm,
            ngram,
            entries: Vec::new(),
            sigs: Vec::new(),
            lsh: None,
        }
    }

    /// Add one file. Invalidates lookup tables built before.
    pub fn push(&mut self, path: &str, license: &str, signature: &[u32]) -> Result<()> {
        if signature.len() != self.num_perm {
            return Err(DataError::Config(format!(
                "MinHash signature of {path} has {} values, the index holds {}",
                signature.len(),
                self.num_perm
            )));
        }
        if u32::try_from(self.entries.len()).is_err() {
            return Err(DataError::Config(
                "MinHash index is full (2^32 entries)".into(),
            ));
        }
        self.entries.push(IndexEntry {
            path: path.to_string(),
            license: license.to_string(),
        });
        self.sigs.extend_from_slice(signature);
        self.lsh = None;
        Ok(())
    }

    /// The index of a prepared corpus: `files` are (path, license, content) in corpus order and
    /// `full_sigs` their whole-text signatures from near-dedup (same permutations and shingles).
    /// A file's index signature is that of its [`referenced_text`]: the dedup signature is
    /// reused where the two texts have the same words, computed afresh otherwise.
    pub fn from_corpus(
        num_perm: usize,
        ngram: usize,
        files: &[(&str, &str, &str)],
        full_sigs: Vec<Vec<u32>>,
    ) -> Result<MinHashIndex> {
        if files.len() != full_sigs.len() {
            return Err(DataError::Config(format!(
                "{} files but {} signatures for the MinHash index",
                files.len(),
                full_sigs.len()
            )));
        }
        let hasher = MinHasher::new(num_perm, ngram);
        let sigs: Vec<Vec<u32>> = files
            .par_iter()
            .zip(full_sigs)
            .map(|(&(_, _, text), full)| {
                let body = referenced_text(text);
                let dropped = &text[..text.len() - body.len()];
                if crate::dedup::words(dropped).next().is_none() {
                    full
                } else {
                    hasher.signature(body)
                }
            })
            .collect();
        let mut index = MinHashIndex::new(num_perm, ngram);
        for (&(path, license, _), sig) in files.iter().zip(sigs) {
            index.push(path, license, &sig)?;
        }
        Ok(index)
    }

    pub fn num_perm(&self) -> usize {
        self.num_perm
    }

    pub fn ngram(&self) -> usize {
        self.ngram
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The signature of entry `i`, or `None` past the end.
    pub fn signature(&self, i: usize) -> Option<&[u32]> {
        let start = i.checked_mul(self.num_perm)?;
        self.sigs.get(start..start.checked_add(self.num_perm)?)
    }

    /// The hasher whose signatures this index can be queried with.
    pub fn hasher(&self) -> MinHasher {
        MinHasher::new(self.num_perm, self.ngram)
    }

    /// The serialized index (the format in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        struct Hashing<'a, W> {
            w: &'a mut W,
            h: Xxh3,
        }
        impl<W: Write> Hashing<'_, W> {
            fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
                self.h.update(b);
                self.w.write_all(b)
            }
        }
        let mut out = Hashing { w, h: Xxh3::new() };
        out.put(MAGIC)?;
        out.put(&VERSION.to_le_bytes())?;
        out.put(&(self.num_perm as u32).to_le_bytes())?;
        out.put(&(self.ngram as u32).to_le_bytes())?;
        out.put(&0u32.to_le_bytes())?;
        out.put(&(self.entries.len() as u64).to_le_bytes())?;
        for e in &self.entries {
            for s in [&e.path, &e.license] {
                out.put(&(s.len() as u32).to_le_bytes())?;
                out.put(s.as_bytes())?;
            }
        }
        let mut buf = Vec::with_capacity(self.num_perm * 4);
        for sig in self.sigs.chunks(self.num_perm.max(1)) {
            buf.clear();
            sig.iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
            out.put(&buf)?;
        }
        let sum = out.h.digest();
        out.w.write_all(&sum.to_le_bytes())
    }

    /// Write the index to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        if !(1..=MAX_PERM).contains(&self.num_perm) || !(1..=MAX_NGRAM).contains(&self.ngram) {
            return Err(DataError::invalid(
                path,
                format!(
                    "cannot write a MinHash index of {} permutations and {}-word shingles",
                    self.num_perm, self.ngram
                ),
            ));
        }
        crate::atomic::write_with(path, |w| self.write_to(w))
    }

    /// Read and validate the index at `path`. Any defect is one [`DataError::Invalid`] naming
    /// the file.
    pub fn read(path: &Path) -> Result<MinHashIndex> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|m| DataError::invalid(path, m))
    }

    /// Parse a serialized index; the error says what is wrong with it.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<MinHashIndex, String> {
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(format!(
                "not a MinHash index: {} bytes, shorter than its {}-byte header and checksum",
                bytes.len(),
                HEADER_LEN + CHECKSUM_LEN
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err("not a MinHash index (bad magic)".into());
        }
        let mut r = Reader { bytes, at: 8 };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "MinHash index version {version}, this build reads version {VERSION}"
            ));
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let stored = u64::from_le_bytes(sum.try_into().map_err(|_| "checksum")?);
        if xxh3_64(body) != stored {
            return Err("checksum mismatch: the MinHash index is corrupt or truncated".into());
        }
        let num_perm = r.u32()? as usize;
        let ngram = r.u32()? as usize;
        let _reserved = r.u32()?;
        let n = r.u64()?;
        if !(1..=MAX_PERM).contains(&num_perm) || !(1..=MAX_NGRAM).contains(&ngram) {
            return Err(format!(
                "corrupt header: {num_perm} permutations, {ngram}-word shingles"
            ));
        }
        // Every entry needs two length fields and its signature: bound `n` by the bytes there
        // before reserving anything for it.
        let per_entry = 8 + 4 * num_perm as u64;
        let room = (body.len() - HEADER_LEN) as u64 / per_entry;
        if n > room {
            return Err(format!(
                "corrupt header: {n} entries claimed, the file has room for at most {room}"
            ));
        }
        let n = n as usize;
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let path = r.string().map_err(|m| format!("entry {i}: path {m}"))?;
            let license = r.string().map_err(|m| format!("entry {i}: license {m}"))?;
            entries.push(IndexEntry { path, license });
        }
        let sig_bytes = n * num_perm * 4;
        let rest = &body[r.at..];
        if rest.len() != sig_bytes {
            return Err(format!(
                "signature section is {} bytes, {n} entries × {num_perm} permutations need {sig_bytes}",
                rest.len()
            ));
        }
        let sigs = rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(MinHashIndex {
            num_perm,
            ngram,
            entries,
            sigs,
            lsh: None,
        })
    }

    /// Build the band tables for queries at similarity `min_jaccard` or above. Without them (or
    /// for a lower threshold, or when no banding suits `min_jaccard`), [`Self::search`] compares
    /// the query with every entry.
    pub fn build_lsh(&mut self, min_jaccard: f64) {
        self.lsh = None;
        let Some((bands, rows)) = banding(self.num_perm, min_jaccard) else {
            return;
        };
        let n = self.entries.len();
        let tables = (0..bands)
            .into_par_iter()
            .map(|b| {
                let mut pairs: Vec<(u32, u32)> = (0..n)
                    .map(|i| {
                        let s = i * self.num_perm + b * rows;
                        (band_key(&self.sigs[s..s + rows]), i as u32)
                    })
                    .collect();
                pairs.sort_unstable();
                let (keys, ids) = pairs.into_iter().unzip();
                BandTable { keys, ids }
            })
            .collect();
        self.lsh = Some(Lsh {
            rows,
            min_jaccard,
            bands: tables,
        });
    }

    /// Entries whose estimated Jaccard similarity with `signature` is at least `threshold`,
    /// most similar first. A signature of the wrong length matches nothing.
    pub fn search(&self, signature: &[u32], threshold: f64) -> Vec<Hit> {
        if signature.len() != self.num_perm || threshold.is_nan() {
            return Vec::new();
        }
        let verify = |i: usize| {
            let j = estimated_jaccard(self.signature(i)?, signature);
            (j >= threshold).then_some(Hit {
                entry: i,
                jaccard: j,
            })
        };
        let mut hits: Vec<Hit> = match &self.lsh {
            Some(lsh) if threshold >= lsh.min_jaccard => {
                let mut cands: Vec<u32> = Vec::new();
                for (b, t) in lsh.bands.iter().enumerate() {
                    let key = band_key(&signature[b * lsh.rows..(b + 1) * lsh.rows]);
                    let lo = t.keys.partition_point(|&k| k < key);
                    let hi = t.keys.partition_point(|&k| k <= key);
                    cands.extend_from_slice(&t.ids[lo..hi]);
                }
                cands.sort_unstable();
                cands.dedup();
                cands
                    .into_iter()
                    .filter_map(|i| verify(i as usize))
                    .collect()
            }
            _ => (0..self.entries.len()).filter_map(verify).collect(),
        };
        hits.sort_by(|a, b| b.jaccard.total_cmp(&a.jaccard).then(a.entry.cmp(&b.entry)));
        hits
    }
}

/// Bounds-checked little-endian reads; every failure is a message, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len() - CHECKSUM_LEN)
            .ok_or_else(|| format!("runs past the end of the file at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let lo = self.u32()? as u64;
        let hi = self.u32()? as u64;
        Ok(lo | hi << 32)
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let len = self.u32()? as usize;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| "is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> String {
        (0..200)
            .map(|k| format!("w{} ", xxh3_64(format!("{n}-{k}").as_bytes()) % 5000))
            .collect()
    }

    fn index(n: usize) -> MinHashIndex {
        let h = MinHasher::new(128, 5);
        let mut idx = MinHashIndex::new(128, 5);
        for i in 0..n {
            let lic = if i % 2 == 0 { "MIT" } else { "GPL-3.0-only" };
            idx.push(&format!("f{i}.py"), lic, &h.signature(&text(i)))
                .unwrap();
        }
        idx
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let idx = index(5);
        let bytes = idx.to_bytes();
        let back = MinHashIndex::from_bytes(&bytes).unwrap();
        assert_eq!(back.entries(), idx.entries());
        assert_eq!(back.signature(4), idx.signature(4));
        assert_eq!(back.signature(5), None);
        assert_eq!((back.num_perm(), back.ngram()), (128, 5));
        assert_eq!(back.to_bytes(), bytes);
        let empty = MinHashIndex::new(16, 3);
        assert!(
            MinHashIndex::from_bytes(&empty.to_bytes())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let bytes = index(3).to_bytes();
        let err = |b: &[u8]| MinHashIndex::from_bytes(b).unwrap_err();
        assert!(err(&bytes[..10]).contains("not a MinHash index"));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(err(&bad).contains("bad magic"));
        assert!(err(&bytes[..bytes.len() - 1]).contains("checksum"));
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 10] ^= 1;
        assert!(err(&flipped).contains("checksum"));
        // A huge entry count with a valid checksum is refused before anything is allocated.
        let mut huge = bytes.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let body = huge.len() - CHECKSUM_LEN;
        let sum = xxh3_64(&huge[..body]).to_le_bytes();
        huge[body..].copy_from_slice(&sum);
        assert!(err(&huge).contains("room for at most"), "{}", err(&huge));
        // So is a path length past the end.
        let mut long = bytes.clone();
        long[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let sum = xxh3_64(&long[..body]).to_le_bytes();
        long[body..].copy_from_slice(&sum);
        assert!(
            err(&long).contains("entry 0: path runs past"),
            "{}",
            err(&long)
        );
        // Every truncation of a valid file fails cleanly.
        for cut in 0..bytes.len() {
            assert!(MinHashIndex::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn leading_comments_are_not_referenced() {
        let gpl = "#!/usr/bin/env python\n# Copyright 2020 A\n# GNU GPL v3\n\nimport os\nx = 1\n";
        assert_eq!(referenced_text(gpl), "import os\nx = 1\n");
        let c = "/*\n * Licensed under the MIT license.\n */\n#include <stdio.h>\nint x;\n";
        assert_eq!(referenced_text(c), "#include <stdio.h>\nint x;\n");
        let js = "// header\n/* one-line */\nlet x = 1;\n";
        assert_eq!(referenced_text(js), "let x = 1;\n");
        let only = "# just a comment\n# and another\n";
        assert_eq!(referenced_text(only), only);
        assert_eq!(referenced_text(""), "");
        assert_eq!(referenced_text("x = 1 # trailing\n"), "x = 1 # trailing\n");
    }

    #[test]
    fn corpus_signatures_skip_headers_and_reuse_dedup_ones() {
        let h = MinHasher::new(64, 5);
        let body = text(1);
        let headed = format!("# Copyright 2020 Someone, GNU GPL version 3 or later\n{body}");
        let files = [
            ("a.py", "MIT", body.as_str()),
            ("b.py", "GPL-3.0-only", headed.as_str()),
        ];
        let full = vec![h.signature(&body), h.signature(&headed)];
        let idx = MinHashIndex::from_corpus(64, 5, &files, full).unwrap();
        assert_eq!(idx.signature(0), Some(&h.signature(&body)[..]));
        assert_eq!(idx.signature(1), Some(&h.signature(&body)[..]));
        assert!(MinHashIndex::from_corpus(64, 5, &files, vec![]).is_err());
    }

    #[test]
    fn banding_meets_its_recall() {
        for t in [0.3, 0.5, 0.8, 0.95, 1.0] {
            let (b, r) = banding(256, t).unwrap();
            assert!(b * r <= 256);
            let p = 1.0 - (1.0 - f64::powi(t, r as i32)).powi(b as i32);
            assert!(p >= LSH_RECALL, "t {t}: {b}×{r} gives {p}");
        }
        assert_eq!(banding(256, 0.0), None);
        assert_eq!(banding(256, f64::NAN), None);
    }

    #[test]
    fn lsh_finds_what_a_scan_finds() {
        let mut idx = index(200);
        let h = idx.hasher();
        let mut near = text(17);
        near.push_str("one two three");
        let sig = h.signature(&near);
        let scan = idx.search(&sig, 0.5);
        assert_eq!(scan.first().map(|h| h.entry), Some(17));
        idx.build_lsh(0.5);
        assert_eq!(idx.search(&sig, 0.5), scan);
        assert_eq!(idx.search(&sig, 0.9), scan);
        assert!(
            idx.search(&h.signature("nothing like it at all"), 0.5)
                .is_empty()
        );
        assert!(idx.search(&[1, 2, 3], 0.5).is_empty());
    }
}
