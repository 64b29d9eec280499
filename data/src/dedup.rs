//! Deduplication. Exact: identical content hashes. Near: MinHash signatures over word 5-gram
//! shingles, locality-sensitive hashing in bands to find candidate pairs, candidates confirmed by
//! the signatures' estimated Jaccard similarity, clusters by union-find. In every cluster the
//! member that comes first in corpus order is kept, so the result never depends on threading.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_64_with_seed, xxh3_128};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    pub exact: bool,
    pub near: bool,
    /// Pairs at or above this estimated Jaccard similarity are near-duplicates.
    pub jaccard_threshold: f64,
    /// Words per shingle.
    pub ngram: usize,
    /// LSH bands × rows = MinHash permutations. 16 × 16 puts the S-curve's midpoint at
    /// (1/16)^(1/16) ≈ 0.84, just under the default threshold, so few true pairs are missed.
    pub bands: usize,
    pub rows: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            near: true,
            jaccard_threshold: 0.85,
            ngram: 5,
            bands: 16,
            rows: 16,
        }
    }
}

impl DedupConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.jaccard_threshold) {
            return Err(format!(
                "jaccard_threshold must be in [0, 1], got {}",
                self.jaccard_threshold
            ));
        }
        if self.ngram == 0 || self.bands == 0 || self.rows == 0 {
            return Err("ngram, bands and rows must be positive".into());
        }
        if self.ngram > 64 || self.bands.saturating_mul(self.rows) > 4096 {
            return Err(format!(
                "bands × rows must be at most 4096 permutations and ngram at most 64 (got {} × {}, ngram {})",
                self.bands, self.rows, self.ngram
            ));
        }
        Ok(())
    }
    /// MinHash permutations per signature.
    pub fn num_perm(&self) -> usize {
        self.bands * self.rows
    }
}

/// Content hash: xxh3-128 as 32 hex digits.
pub fn content_hash(text: &str) -> String {
    format!("{:032x}", xxh3_128(text.as_bytes()))
}

/// Indices (into `hashes`) of the entries to drop as exact duplicates of an earlier entry.
pub fn exact_duplicates(hashes: &[&str]) -> Vec<usize> {
    let mut first: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(hashes.len());
    let mut dups = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        // entries come in corpus order, so the one already present is the earliest
        if !first.insert(h) {
            dups.push(i);
        }
    }
    dups
}

/// Words: maximal runs of alphanumerics/underscore; code's punctuation carries little identity.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// MinHash with multiply-add-shift hashing, h(x) = (a·x + b) >> 32 over 32-bit shingle keys
/// (Dietzfelbinger's 2-independent family): plain 64-bit arithmetic that the compiler vectorizes
/// across permutations, where the classic (a·x + b) mod 2^61−1 needs 128-bit products.
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    ngram: usize,
}

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize) -> Self {
        // Fixed seeds: signatures must be comparable across runs and machines.
        let a = (0..num_perm as u64)
            .map(|i| xxh3_64_with_seed(b"anvil-minhash-a", i) | 1)
            .collect();
        let b = (0..num_perm as u64)
            .map(|i| xxh3_64_with_seed(b"anvil-minhash-b", i))
            .collect();
        // `windows(0)` panics; a zero from a hand-built hasher means "one word per shingle".
        MinHasher {
            a,
            b,
            ngram: ngram.max(1),
        }
    }

    /// Shingle keys: each run of `ngram` words, hashed from the words' own hashes (no joined
    /// strings). A text shorter than one shingle is one shingle of all its words.
    fn shingles(&self, text: &str) -> Vec<u32> {
        let ws: Vec<u64> = words(text).map(|w| xxh3_64(w.as_bytes())).collect();
        let combine = |win: &[u64]| {
            let h = win.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &w| {
                (h.rotate_left(23) ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd)
            });
            (h >> 32) as u32
        };
        let mut keys: Vec<u32> = if ws.len() < self.ngram {
            vec![combine(&ws)]
        } else {
            ws.windows(self.ngram).map(combine).collect()
        };
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The signature of `text`: per permutation, the minimum hash over its shingles.
    pub fn signature(&self, text: &str) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for x in self.shingles(text) {
            let x = x as u64;
            for ((m, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                *m = (*m).min((a.wrapping_mul(x).wrapping_add(b) >> 32) as u32);
            }
        }
        sig
    }
}

/// Share of positions where two signatures agree: an unbiased estimate of Jaccard similarity.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// The MinHash signature of every text, in order, with `cfg`'s permutations and shingles.
pub fn signatures(texts: &[&str], cfg: &DedupConfig) -> Vec<Vec<u32>> {
    let hasher = MinHasher::new(cfg.num_perm(), cfg.ngram);
    texts.par_iter().map(|t| hasher.signature(t)).collect()
}

/// Indices (into `texts`, in corpus order) of the near-duplicates to drop: every member of a
/// cluster but its earliest.
pub fn near_duplicates(texts: &[&str], cfg: &DedupConfig) -> Vec<usize> {
    near_duplicates_of(&signatures(texts, cfg), cfg)
}

/// [`near_duplicates`] from signatures already computed (by [`signatures`] with the same `cfg`),
/// for a caller that keeps them, as `prepare` does for the corpus index.
pub fn near_duplicates_of(sigs: &[Vec<u32>], cfg: &DedupConfig) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..sigs.len()).collect();
    for band in 0..cfg.bands {
        let range = band * cfg.rows..(band + 1) * cfg.rows;
        let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, sig) in sigs.iter().enumerate() {
            let Some(rows) = sig.get(range.clone()) else {
                continue;
            };
            let mut h = Xxh3::new();
            rows.iter().for_each(|v| h.update(&v.to_le_bytes()));
            let key = h.digest();
            buckets.entry(key).or_default().push(i);
        }
        for members in buckets.values().filter(|m| m.len() > 1) {
            // Compare each member to the bucket's first: enough to connect a true cluster, and
            // linear where all-pairs would be quadratic in a bucket of boilerplate.
            let head = members[0];
            for &m in &members[1..] {
                if estimated_jaccard(&sigs[head], &sigs[m]) >= cfg.jaccard_threshold {
                    let (ra, rb) = (find(&mut parent, head), find(&mut parent, m));
                    if ra != rb {
                        // the smaller index is the root, so each cluster's root is its earliest
                        let (lo, hi) = (ra.min(rb), ra.max(rb));
                        parent[hi] = lo;
                    }
                }
            }
        }
    }
    (0..sigs.len())
        .filter(|&i| find(&mut parent, i) != i)
        .collect()
}
