//! The license term end to end: a tiny corpus of GPL-3.0 and MIT files goes through
//! `anvil data prepare`, the MinHash index it writes is loaded back, and samples are checked
//! against it and against the default policy.

use anvil_analyze::Source;
use anvil_analyze::license::{self, CorpusIndex, LicensePolicy, LicenseReport};
use anvil_data::lang::Lang;
use anvil_data::minhash_index::{self, MinHashIndex};
use anvil_data::prepare::{PrepareConfig, RunOptions, prepare};
use std::fs;
use std::path::{Path, PathBuf};

const GPL_HEADER: &str = "\
# Copyright (C) 2023 Jane Developer
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.
";

/// The GPL file a sample will be copied from.
const LEDGER: &str = r#"
"""A double-entry ledger with running balances per account."""

from collections import defaultdict
from decimal import Decimal


class LedgerError(Exception):
    pass


class Ledger:
    def __init__(self, currency="EUR"):
        self.currency = currency
        self.entries = []
        self.balances = defaultdict(Decimal)

    def post(self, debit, credit, amount, memo=""):
        amount = Decimal(amount)
        if amount <= 0:
            raise LedgerError("amount must be positive")
        if debit == credit:
            raise LedgerError("debit and credit accounts must differ")
        self.entries.append((debit, credit, amount, memo))
        self.balances[debit] += amount
        self.balances[credit] -= amount
        return len(self.entries) - 1

    def reverse(self, index):
        debit, credit, amount, memo = self.entries[index]
        return self.post(credit, debit, amount, "reversal of " + memo)

    def balance(self, account):
        return self.balances.get(account, Decimal(0))

    def trial_balance(self):
        total = sum(self.balances.values(), Decimal(0))
        if total != 0:
            raise LedgerError("ledger does not balance: %s" % total)
        return sorted(self.balances.items())

    def statement(self, account):
        running = Decimal(0)
        lines = []
        for debit, credit, amount, memo in self.entries:
            if account == debit:
                running += amount
                lines.append((memo, amount, running))
            elif account == credit:
                running -= amount
                lines.append((memo, -amount, running))
        return lines
"#;

const TAGGED_GPL: &str = r#"# SPDX-License-Identifier: GPL-3.0-only
"""Token bucket rate limiting for request handlers."""

import time


class TokenBucket:
    def __init__(self, rate, capacity):
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = time.monotonic()

    def _refill(self):
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, cost=1):
        self._refill()
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
"#;

const MIT_TEXT: &str = "MIT License

Copyright (c) 2024 Example Author

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the \"Software\"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
";

/// Distinct MIT-licensed modules (under a directory with an MIT LICENSE file).
fn mit_module(n: usize) -> String {
    let topics = ["inventory", "schedule", "catalog", "roster"];
    let t = topics[n % topics.len()];
    let mut s = format!("\"\"\"Helpers for the {t} service, part {n}.\"\"\"\n\nimport json\n\n");
    for k in 0..5 {
        s.push_str(&format!(
            "def load_{t}_{n}_{k}(path, limit={k}):\n    with open(path) as fh:\n        rows = json.load(fh)\n    \
             picked = [r for r in rows if r.get('{t}_rank_{k}', 0) > limit]\n    return picked[:{n} + {k}]\n\n\n"
        ));
    }
    s
}

/// A copy of the GPL ledger as a model might emit it: header dropped, one class renamed, a
/// message reworded, a default changed, a comment added.
fn laundered_ledger() -> String {
    LEDGER
        .replace("class Ledger:", "# keeps every posting\nclass Book:")
        .replace("amount must be positive", "the amount has to be positive")
        .replace("currency=\"EUR\"", "currency=\"USD\"")
}

const FRESH: &str = r#"
def merge_intervals(intervals):
    """Merge overlapping closed intervals given as (start, end) pairs."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_covered(intervals):
    return sum(end - start for start, end in merge_intervals(intervals))
"#;

fn write(dir: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// Prepare the corpus and return the output directory.
fn corpus(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    write(&src, "gpl/ledger.py", format!("{GPL_HEADER}{LEDGER}"));
    write(&src, "gpl/bucket.py", TAGGED_GPL);
    write(&src, "mit/LICENSE", MIT_TEXT);
    for n in 0..4 {
        write(&src, &format!("mit/mod{n}.py"), mit_module(n));
    }
    let out = tmp.join("corpus");
    let cfg = PrepareConfig {
        sources: vec![src.display().to_string()],
        langs: vec![Lang::Python],
        val_fraction: 0.0,
        ..Default::default()
    };
    let opts = RunOptions {
        overwrite: false,
        command: vec!["test".into()],
    };
    let m = prepare(&cfg, &out, &opts).unwrap();
    assert_eq!(m.counts.kept, 6, "{:?}", m.counts);
    out
}

fn check(text: &str, policy: &LicensePolicy, index: Option<&CorpusIndex>) -> LicenseReport {
    let src = Source::python(text.as_bytes()).unwrap();
    license::check(&src, policy, index)
}

fn rules(r: &LicenseReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.rule.as_str()).collect()
}

#[test]
fn near_copies_of_gpl_training_files_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let out = corpus(tmp.path());
    let policy = LicensePolicy::default();
    policy.validate().unwrap();
    let index = CorpusIndex::load(
        &out.join(minhash_index::FILE_NAME),
        policy.jaccard_threshold,
    )
    .unwrap();
    assert_eq!(index.len(), 6);
    // The pipeline recorded each file's license: the header, the tag, the LICENSE file.
    let lic = |p: &str| {
        let e = index.index().entries().iter().find(|e| e.path == p);
        e.map(|e| e.license.clone()).unwrap_or_default()
    };
    assert!(
        lic("gpl/ledger.py").starts_with("GPL-3.0"),
        "{}",
        lic("gpl/ledger.py")
    );
    assert_eq!(lic("gpl/bucket.py"), "GPL-3.0-only");
    assert_eq!(lic("mit/mod0.py"), "MIT");

    let copy = laundered_ledger();
    assert_ne!(copy.trim(), LEDGER.trim());
    let r = check(&copy, &policy, Some(&index));
    let m = r.matches.first().expect("the copy matches its source");
    assert_eq!(m.path, "gpl/ledger.py");
    assert!(m.forbidden);
    assert!(
        m.jaccard >= policy.jaccard_threshold,
        "jaccard {}",
        m.jaccard
    );
    assert!(m.jaccard < 1.0, "the edits are seen: jaccard {}", m.jaccard);
    // The GPL header the copy dropped does not count against it (about 0.5 if it did).
    assert!(m.jaccard > 0.75, "jaccard {}", m.jaccard);
    assert_eq!(rules(&r), ["L003"], "{:?}", r.findings);
    assert!(r.findings[0].message.contains("gpl/ledger.py"));
    assert_eq!(r.score, 0.0);

    // The same check with a policy that allows the GPL reports the match but refuses nothing.
    let lenient = LicensePolicy {
        allow: vec!["GPL-3.0-or-later".into(), "GPL-3.0-only".into()],
        ..Default::default()
    };
    let r = check(&copy, &lenient, Some(&index));
    assert!(!r.matches.is_empty() && r.matches.iter().all(|m| !m.forbidden));
    assert_eq!(r.score, 1.0);

    // A copy of an MIT file matches, harmlessly.
    let r = check(&mit_module(2), &policy, Some(&index));
    assert_eq!(
        r.matches.first().map(|m| m.path.as_str()),
        Some("mit/mod2.py")
    );
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.score, 1.0);

    // Code of its own matches nothing.
    let r = check(FRESH, &policy, Some(&index));
    assert!(r.matches.is_empty(), "{:?}", r.matches);
    assert_eq!(r.score, 1.0);

    // A threshold above the copy's similarity lets it through: the threshold is what decides.
    let strict = LicensePolicy {
        jaccard_threshold: 0.99,
        ..Default::default()
    };
    let strict_index = CorpusIndex::load(&out, strict.jaccard_threshold).unwrap();
    assert!(
        check(&copy, &strict, Some(&strict_index))
            .matches
            .is_empty()
    );
}

#[test]
fn spdx_tags_follow_the_policy() {
    let policy = LicensePolicy::default();
    let r = check(
        "# SPDX-License-Identifier: GPL-3.0-only\nprint('hi')\n",
        &policy,
        None,
    );
    assert_eq!(rules(&r), ["L001"]);
    assert_eq!(r.score, 0.0);
    let r = check(
        "# SPDX-License-Identifier: MIT OR GPL-3.0-only\nprint('hi')\n",
        &policy,
        None,
    );
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.score, 1.0);
    let r = check(
        "# SPDX-License-Identifier: MIT AND GPL-3.0-only\nprint('hi')\n",
        &policy,
        None,
    );
    assert_eq!(rules(&r), ["L001"]);
    // A GPL header without any tag is caught through the pipeline's header detection.
    let r = check(&format!("{GPL_HEADER}{FRESH}"), &policy, None);
    assert_eq!(rules(&r), ["L001"], "{:?}", r.findings);
    assert_eq!(r.score, 0.0);
}

#[test]
fn imports_lower_the_score_or_are_reported() {
    let policy = LicensePolicy::default();
    let r = check("import PyQt5\nimport numpy as np\n", &policy, None);
    assert_eq!(rules(&r), ["L002"]);
    assert!(r.findings[0].message.contains("GPL-3.0-only"));
    assert_eq!(r.score, license::FORBIDDEN_IMPORT_SCORE);
    assert!(r.score < 1.0);
    let r = check("from MySQLdb import connect\n", &policy, None);
    assert_eq!(rules(&r), ["L002"]);
    let r = check(
        "import os\nimport requests\nfrom acme_internal_sdk import Client\n",
        &policy,
        None,
    );
    assert_eq!(r.unknown_packages, ["acme_internal_sdk"]);
    assert_eq!(rules(&r), ["L004"]);
    assert_eq!(r.findings[0].severity, anvil_analyze::Level::Low);
    assert_eq!(r.score, 1.0);
    // Both at once: the copied-code rule dominates.
    let r = check(
        "# SPDX-License-Identifier: AGPL-3.0-only\nimport PyQt5\n",
        &policy,
        None,
    );
    assert_eq!(rules(&r), ["L001", "L002"]);
    assert_eq!(r.score, 0.0);
}

#[test]
fn a_corrupt_index_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = corpus(tmp.path());
    let good = fs::read(out.join(minhash_index::FILE_NAME)).unwrap();
    let bad = tmp.path().join("bad.idx");
    let load = |bytes: &[u8]| {
        fs::write(&bad, bytes).unwrap();
        CorpusIndex::load(&bad, 0.5).unwrap_err().to_string()
    };
    let e = load(&good[..good.len() / 2]);
    assert!(e.contains("bad.idx") && e.contains("checksum"), "{e}");
    let mut flipped = good.clone();
    flipped[40] ^= 0x20;
    let e = load(&flipped);
    assert!(e.contains("bad.idx") && e.contains("corrupt"), "{e}");
    let e = load(b"PAR1 this is a parquet file, not an index");
    assert!(
        e.contains("bad.idx") && e.contains("not a MinHash index"),
        "{e}"
    );
    let e = load(b"");
    assert!(e.contains("bad.idx"), "{e}");
    let e = CorpusIndex::load(&tmp.path().join("missing.idx"), 0.5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.idx"), "{e}");
    // The intact file still loads, and a directory means the index inside it.
    assert_eq!(
        MinHashIndex::read(&out.join(minhash_index::FILE_NAME))
            .unwrap()
            .len(),
        6
    );
    assert_eq!(CorpusIndex::load(&out, 0.5).unwrap().len(), 6);
}

/// Speed at scale: 100k indexed files, one query in milliseconds. Ignored by default (it builds
/// 100 MB of signatures); run with `cargo test -p anvil-analyze --test license -- --ignored`.
#[test]
#[ignore]
fn a_query_against_100k_files_takes_milliseconds() {
    use std::time::Instant;
    let policy = LicensePolicy::default();
    let mut idx = MinHashIndex::new(256, 5);
    let hasher = idx.hasher();
    // Unrelated files: random signatures (what unrelated texts' signatures look like).
    let mut sig = vec![0u32; 256];
    for i in 0..100_000u64 {
        for (p, v) in sig.iter_mut().enumerate() {
            *v = (xxhash(i, p as u64) >> 32) as u32;
        }
        idx.push(&format!("f{i}.py"), "MIT", &sig).unwrap();
    }
    idx.push("gpl/ledger.py", "GPL-3.0-only", &hasher.signature(LEDGER))
        .unwrap();
    let t = Instant::now();
    let index = CorpusIndex::from_index(idx, policy.jaccard_threshold);
    let build = t.elapsed();
    let copy = laundered_ledger();
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = check(&copy, &policy, Some(&index));
        worst = worst.max(t.elapsed());
        assert_eq!(rules(&r), ["L003"]);
    }
    eprintln!("100k-file index: tables built in {build:?}, slowest of 20 checks {worst:?}");
    assert!(worst.as_millis() < 50, "{worst:?}");
}

fn xxhash(i: u64, p: u64) -> u64 {
    // SplitMix64: a dependency-free stand-in for a random source.
    let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ p.wrapping_add(0x6a09_e667_f3bc_c909);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
