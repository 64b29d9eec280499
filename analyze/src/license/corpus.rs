//! The training corpus as the license check sees it: the MinHash index `data prepare` writes
//! (`minhash.idx`, format in `anvil_data::minhash_index`), with its lookup tables built for the
//! policy's threshold and the hasher that makes query signatures comparable with it.

use super::LicenseError;
use anvil_data::dedup::MinHasher;
use anvil_data::minhash_index::{self, Hit, MinHashIndex};
use std::path::Path;

/// A loaded corpus index, ready for near-duplicate queries.
pub struct CorpusIndex {
    index: MinHashIndex,
    hasher: MinHasher,
}

impl std::fmt::Debug for CorpusIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpusIndex")
            .field("index", &self.index)
            .finish()
    }
}

impl CorpusIndex {
    /// Load the index at `path`, a `minhash.idx` file or a prepared corpus directory holding
    /// one, and build lookup tables for queries at `min_jaccard` or above (the policy's
    /// `jaccard_threshold`). A missing, truncated or corrupt file is one error naming it.
    pub fn load(path: &Path, min_jaccard: f64) -> Result<CorpusIndex, LicenseError> {
        let file = if path.is_dir() {
            path.join(minhash_index::FILE_NAME)
        } else {
            path.to_path_buf()
        };
        Ok(Self::from_index(MinHashIndex::read(&file)?, min_jaccard))
    }

    /// Wrap an index built in memory (tests, or a caller that merges corpora).
    pub fn from_index(mut index: MinHashIndex, min_jaccard: f64) -> CorpusIndex {
        index.build_lsh(min_jaccard);
        let hasher = index.hasher();
        CorpusIndex { index, hasher }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn index(&self) -> &MinHashIndex {
        &self.index
    }

    /// Corpus files whose estimated Jaccard similarity with `text` is at least `threshold`,
    /// most similar first. Both sides are compared without their leading comment blocks
    /// ([`minhash_index::referenced_text`]).
    pub fn near(&self, text: &str, threshold: f64) -> Vec<Hit> {
        let sig = self.hasher.signature(minhash_index::referenced_text(text));
        self.index.search(&sig, threshold)
    }
}
