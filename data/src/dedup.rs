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
        DedupConfig { exact: true, near: true, jaccard_threshold: 0.85, ngram: 5, bands: 16, rows: 16 }
    }
}

impl DedupConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.jaccard_threshold) {
            return Err(format!("jaccard_threshold must be in [0, 1], got {}", self.jaccard_threshold));
        }
        if self.ngram == 0 || self.bands == 0 || self.rows == 0 {
            return Err("ngram, bands and rows must be positive".into());
        }
        Ok(())
    }
    fn num_perm(&self) -> usize {
        self.bands * self.rows
    }
}

/// Content hash: xxh3-128 as 32 hex digits.
pub fn content_hash(text: &str) -> String {
    format!("{:032x}", xxh3_128(text.as_bytes()))
}

/// Indices (into `hashes`) of the entries to drop as exact duplicates of an earlier entry.
pub fn exact_duplicates(hashes: &[&str]) -> Vec<usize> {
    let mut first: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(hashes.len());
    let mut dups = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        // entries come in corpus order, so the one already present is the earliest
        if !first.insert(h) {
            dups.push(i);
        }
    }
    dups
}

const MERSENNE_61: u64 = (1 << 61) - 1;

/// (a·x + b) mod 2^61−1 without a division: the universal hash family MinHash permutes with.
#[inline]
fn perm_hash(a: u64, b: u64, x: u64) -> u64 {
    let prod = (a as u128) * ((x & MERSENNE_61) as u128) + b as u128;
    let lo = (prod as u64) & MERSENNE_61;
    let hi = (prod >> 61) as u64;
    let mut r = lo + hi;
    if r >= MERSENNE_61 {
        r -= MERSENNE_61;
    }
    r
}

/// Words: maximal runs of alphanumerics/underscore; code's punctuation carries little identity.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

pub struct MinHasher {
    params: Vec<(u64, u64)>,
    ngram: usize,
}

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize) -> Self {
        // Fixed seeds: signatures must be comparable across runs and machines.
        let params = (0..num_perm as u64)
            .map(|i| {
                let a = xxh3_64_with_seed(b"anvil-minhash-a", i) % (MERSENNE_61 - 1) + 1;
                let b = xxh3_64_with_seed(b"anvil-minhash-b", i) % MERSENNE_61;
                (a, b)
            })
            .collect();
        MinHasher { params, ngram }
    }

    /// The signature of `text`: per permutation, the minimum hash over its shingles. A text
    /// shorter than one shingle is one shingle of all its words.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let ws: Vec<&str> = words(text).collect();
        let mut shingles: Vec<u64> = if ws.len() < self.ngram {
            vec![xxh3_64(ws.join(" ").as_bytes())]
        } else {
            ws.windows(self.ngram).map(|w| xxh3_64(w.join(" ").as_bytes())).collect()
        };
        shingles.sort_unstable();
        shingles.dedup();
        self.params
            .iter()
            .map(|&(a, b)| shingles.iter().map(|&s| perm_hash(a, b, s)).min().unwrap_or(u64::MAX))
            .collect()
    }
}

/// Share of positions where two signatures agree: an unbiased estimate of Jaccard similarity.
pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> f64 {
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

/// Indices (into `texts`, in corpus order) of the near-duplicates to drop: every member of a
/// cluster but its earliest.
pub fn near_duplicates(texts: &[&str], cfg: &DedupConfig) -> Vec<usize> {
    let hasher = MinHasher::new(cfg.num_perm(), cfg.ngram);
    let sigs: Vec<Vec<u64>> = texts.par_iter().map(|t| hasher.signature(t)).collect();
    let mut parent: Vec<usize> = (0..texts.len()).collect();
    for band in 0..cfg.bands {
        let range = band * cfg.rows..(band + 1) * cfg.rows;
        let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, sig) in sigs.iter().enumerate() {
            let mut h = Xxh3::new();
            sig[range.clone()].iter().for_each(|v| h.update(&v.to_le_bytes()));
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
    (0..texts.len()).filter(|&i| find(&mut parent, i) != i).collect()
}
