//! License compliance of one sample, the `0.1·license` term of the reward. Three checks against
//! a [`LicensePolicy`]:
//!
//! - **L001**, the sample's own license: every `SPDX-License-Identifier:` tag in its first 30
//!   lines, and a license header comment matched against the SPDX texts (the corpus pipeline's
//!   detection, `anvil_data::license`), must evaluate as allowed. An OR is allowed when one of
//!   its branches is; an AND needs every part.
//! - **L002**, its dependencies: each imported third-party package's license (from the shipped
//!   table in [`table`], or the policy's own entries) must be allowed, counting the policy's
//!   extra import-only licenses. A package the table does not know is allowed and reported
//!   (**L004**, informational).
//! - **L003**, code referencing: the sample must not be a near-duplicate (estimated Jaccard
//!   similarity of word-shingle MinHash signatures at or above the threshold) of a training
//!   file whose license is not allowed, looked up in the corpus index `data prepare` writes.
//!
//! Score: 0.0 with any L001 or L003 finding (the sample states, or copies code under, terms the
//! policy refuses), else 0.5 with any L002 finding (the code is the model's own but pulls in a
//! dependency whose terms may reach it), else 1.0. Unknown packages never lower it.

mod corpus;
pub mod table;

pub use corpus::CorpusIndex;

use crate::finding::{Finding, Level};
use crate::imports::imports;
use crate::source::Source;
use anvil_data::license as detect;
use serde::{Deserialize, Serialize};
use spdx::{LicenseReq, Licensee, ParseMode};
use std::collections::BTreeMap;

/// Score of a sample that declares, or near-copies code under, a license the policy refuses.
pub const FORBIDDEN_CODE_SCORE: f64 = 0.0;
/// Score of a sample whose only problem is a dependency under a refused license.
pub const FORBIDDEN_IMPORT_SCORE: f64 = 0.5;
/// At most this many corpus matches are reported (forbidden ones first).
pub const MAX_MATCHES: usize = 20;
/// SPDX tags are looked for in this many leading lines, as the corpus pipeline does.
const TAG_LINES: usize = 30;
const TAG: &str = "SPDX-License-Identifier:";

#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error("license policy: {key} entry `{id}` is not an SPDX license id: {reason}")]
    UnknownLicense {
        key: &'static str,
        id: String,
        reason: String,
    },
    #[error("license policy: jaccard_threshold must be in (0, 1], got {0}")]
    Threshold(f64),
    #[error("license policy: packages.{package} = `{expr}` is not an SPDX expression: {reason}")]
    PackageLicense {
        package: String,
        expr: String,
        reason: String,
    },
    #[error(transparent)]
    Index(#[from] anvil_data::DataError),
}

/// What the license term accepts. The reward's `license_allow` key is [`Self::allow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LicensePolicy {
    /// SPDX license ids (optionally `Id WITH Exception`) that the sample's own code may be
    /// under, and that a corpus file it near-copies may be under. An allowed license with any
    /// exception is allowed too: exceptions only add permissions.
    pub allow: Vec<String>,
    /// Licenses allowed for imported packages on top of [`Self::allow`]. Importing a library
    /// leaves its code outside the sample, and weak copyleft (LGPL, MPL) binds changes to the
    /// library, not the code that imports it; strong copyleft (GPL, AGPL) is not here because
    /// it is held to reach the importing program.
    pub allow_imports: Vec<String>,
    /// Near-duplicate threshold on estimated Jaccard similarity, in (0, 1].
    pub jaccard_threshold: f64,
    /// Samples with fewer words than this are not compared with the corpus: a handful of words
    /// is too little to call copied, and MinHash of a few shingles is noise.
    pub min_words: usize,
    /// Import name → SPDX expression, overriding or extending the shipped table (private
    /// packages, or a license that changed).
    pub packages: BTreeMap<String, String>,
}

impl Default for LicensePolicy {
    fn default() -> Self {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        LicensePolicy {
            allow: ids(&[
                "MIT",
                "Apache-2.0",
                "BSD-2-Clause",
                "BSD-3-Clause",
                "ISC",
                "0BSD",
                "Unlicense",
                "CC0-1.0",
                "Python-2.0",
                "PSF-2.0",
                "Zlib",
                "BSL-1.0",
                // Permissive too, and the licenses of Pillow (MIT-CMU, HPND before 11) and cffi
                // (MIT-0): without them `import PIL` would count against a sample.
                "MIT-0",
                "MIT-CMU",
                "HPND",
            ]),
            allow_imports: ids(&[
                "LGPL-2.0-only",
                "LGPL-2.0-or-later",
                "LGPL-2.1-only",
                "LGPL-2.1-or-later",
                "LGPL-3.0-only",
                "LGPL-3.0-or-later",
                "MPL-2.0",
            ]),
            jaccard_threshold: 0.5,
            min_words: 30,
            packages: BTreeMap::new(),
        }
    }
}

impl LicensePolicy {
    /// Check every id and expression; the error names the first bad one.
    pub fn validate(&self) -> Result<(), LicenseError> {
        for (key, ids) in [
            ("allow", &self.allow),
            ("allow_imports", &self.allow_imports),
        ] {
            for id in ids {
                Licensee::parse(id).map_err(|e| LicenseError::UnknownLicense {
                    key,
                    id: id.clone(),
                    reason: e.reason.to_string(),
                })?;
            }
        }
        if !(self.jaccard_threshold > 0.0 && self.jaccard_threshold <= 1.0) {
            return Err(LicenseError::Threshold(self.jaccard_threshold));
        }
        for (package, expr) in &self.packages {
            spdx::Expression::parse_mode(expr, ParseMode::LAX).map_err(|e| {
                LicenseError::PackageLicense {
                    package: package.clone(),
                    expr: expr.clone(),
                    reason: e.reason.to_string(),
                }
            })?;
        }
        Ok(())
    }
}

/// A training file the sample is a near-duplicate of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusMatch {
    pub path: String,
    /// The file's license as the corpus recorded it (an SPDX expression or `NOASSERTION`).
    pub license: String,
    /// Estimated Jaccard similarity of the two texts' shingle sets.
    pub jaccard: f64,
    /// Whether the policy refuses that license (an unknown license is not refused).
    pub forbidden: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseReport {
    /// In [0, 1]; the rule is in the module docs.
    pub score: f64,
    /// L001–L004, by position in the file.
    pub findings: Vec<Finding>,
    /// Third-party top-level packages the table does not know, sorted.
    pub unknown_packages: Vec<String>,
    /// Near-duplicate corpus files, forbidden first, then most similar first.
    pub matches: Vec<CorpusMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Forbidden,
    /// Not an SPDX expression (`NOASSERTION`, a corpus license nobody could name).
    Unknown,
}

/// Allowed licenses, parsed once per check. Invalid ids are skipped here; `validate` is where
/// they are reported.
struct Allowed(Vec<(Licensee, bool)>);

impl Allowed {
    fn new<'a>(ids: impl IntoIterator<Item = &'a String>) -> Allowed {
        Allowed(
            ids.into_iter()
                .filter_map(|id| Licensee::parse(id).ok())
                .map(|l| {
                    let has_exception = l.clone().into_req().addition.is_some();
                    (l, has_exception)
                })
                .collect(),
        )
    }

    fn satisfied(&self, req: &LicenseReq) -> bool {
        self.0.iter().any(|(l, has_exception)| {
            l.satisfies(req)
                || (!has_exception
                    && req.addition.is_some()
                    && l.satisfies(&LicenseReq {
                        license: req.license.clone(),
                        addition: None,
                    }))
        })
    }

    fn verdict(&self, expr: &str) -> Verdict {
        // SPDX's "nothing was found" is no license to judge; lax parsing would take it for one.
        if expr.trim().is_empty() || expr.trim() == detect::NOASSERTION {
            return Verdict::Unknown;
        }
        match spdx::Expression::parse_mode(expr, ParseMode::LAX) {
            Ok(e) if e.evaluate(|req| self.satisfied(req)) => Verdict::Allowed,
            Ok(_) => Verdict::Forbidden,
            Err(_) => Verdict::Unknown,
        }
    }
}

fn finding(
    rule: &str,
    name: &str,
    severity: Level,
    confidence: Level,
    (line, column): (usize, usize),
    message: String,
) -> Finding {
    Finding {
        rule: rule.into(),
        name: name.into(),
        severity,
        confidence,
        line,
        column,
        message,
    }
}

/// Check `src` against `policy`, and against the corpus when an index is given.
pub fn check(src: &Source, policy: &LicensePolicy, index: Option<&CorpusIndex>) -> LicenseReport {
    let allow = Allowed::new(&policy.allow);
    let allow_imports = Allowed::new(policy.allow.iter().chain(&policy.allow_imports));
    let mut findings = Vec::new();
    own_license(src, &allow, &mut findings);
    let unknown_packages = dependencies(src, policy, &allow_imports, &mut findings);
    let matches = index
        .map(|idx| near_copies(src, policy, idx, &allow, &mut findings))
        .unwrap_or_default();
    findings.sort_by(|a, b| (a.line, a.column, &a.rule).cmp(&(b.line, b.column, &b.rule)));
    let has = |rule: &str| findings.iter().any(|f| f.rule == rule);
    let score = if has("L001") || has("L003") {
        FORBIDDEN_CODE_SCORE
    } else if has("L002") {
        FORBIDDEN_IMPORT_SCORE
    } else {
        1.0
    };
    LicenseReport {
        score,
        findings,
        unknown_packages,
        matches,
    }
}

/// L001: SPDX tags, then a license header.
fn own_license(src: &Source, allow: &Allowed, out: &mut Vec<Finding>) {
    let mut tagged = Vec::new();
    for (i, line) in src.text.lines().take(TAG_LINES).enumerate() {
        let Some(at) = line.find(TAG) else { continue };
        let pos = (i + 1, line[..at].chars().count() + 1);
        // The pipeline's own tag reader, on this one line, so each tag is judged by itself.
        match detect::from_spdx_tag(line) {
            Some(expr) => {
                if allow.verdict(&expr) != Verdict::Allowed {
                    out.push(finding(
                        "L001",
                        "forbidden-license",
                        Level::High,
                        Level::High,
                        pos,
                        format!("SPDX-License-Identifier `{expr}` is not allowed by the policy"),
                    ));
                }
                tagged.push(expr);
            }
            // A tag that names no SPDX expression declares terms nobody can check as allowed.
            None => out.push(finding(
                "L001",
                "forbidden-license",
                Level::High,
                Level::Medium,
                pos,
                format!(
                    "SPDX-License-Identifier `{}` is not a valid SPDX expression",
                    line[at + TAG.len()..].trim()
                ),
            )),
        }
    }
    if let Some(header) = detect::from_header(&src.text)
        && !tagged.contains(&header)
        && allow.verdict(&header) != Verdict::Allowed
    {
        let first = src.text.lines().position(|l| !l.trim().is_empty());
        out.push(finding(
            "L001",
            "forbidden-license",
            Level::High,
            Level::Medium,
            (first.unwrap_or(0) + 1, 1),
            format!("license header matches {header}, which the policy does not allow"),
        ));
    }
}

/// L002 and L004: the third-party packages imported, first import of each.
fn dependencies(
    src: &Source,
    policy: &LicensePolicy,
    allow: &Allowed,
    out: &mut Vec<Finding>,
) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut unknown = Vec::new();
    for imp in imports(src) {
        let pkg = imp.package;
        if pkg.is_empty() || table::is_stdlib(&pkg) || !seen.insert(pkg.clone()) {
            continue;
        }
        let pos = (imp.line, 1);
        let known = match policy.packages.get(&pkg) {
            Some(expr) => Some((expr.as_str(), "the policy")),
            None => table::package_license(&pkg).map(|p| (p.license, p.distribution)),
        };
        match known.map(|(expr, from)| (expr, from, allow.verdict(expr))) {
            Some((_, _, Verdict::Allowed)) => {}
            Some((expr, from, Verdict::Forbidden)) => out.push(finding(
                "L002",
                "forbidden-import-license",
                Level::Medium,
                Level::High,
                pos,
                format!(
                    "imports `{pkg}` ({from}), licensed {expr}, which the policy does not allow"
                ),
            )),
            Some((_, _, Verdict::Unknown)) | None => {
                out.push(finding(
                    "L004",
                    "unknown-package-license",
                    Level::Low,
                    Level::Low,
                    pos,
                    format!("imports `{pkg}`, whose license is not known; allowed"),
                ));
                unknown.push(pkg);
            }
        }
    }
    unknown.sort();
    unknown
}

/// L003: near-duplicates of corpus files under a refused license.
fn near_copies(
    src: &Source,
    policy: &LicensePolicy,
    index: &CorpusIndex,
    allow: &Allowed,
    out: &mut Vec<Finding>,
) -> Vec<CorpusMatch> {
    let compared = anvil_data::minhash_index::referenced_text(&src.text);
    if anvil_data::dedup::words(compared).count() < policy.min_words {
        return Vec::new();
    }
    let entries = index.index().entries();
    let mut matches: Vec<CorpusMatch> = index
        .near(&src.text, policy.jaccard_threshold)
        .into_iter()
        .filter_map(|hit| {
            let e = entries.get(hit.entry)?;
            Some(CorpusMatch {
                path: e.path.clone(),
                license: e.license.clone(),
                jaccard: hit.jaccard,
                forbidden: allow.verdict(&e.license) == Verdict::Forbidden,
            })
        })
        .collect();
    // Stable: within each group the index's most-similar-first order stays.
    matches.sort_by_key(|m| !m.forbidden);
    matches.truncate(MAX_MATCHES);
    for m in matches.iter().filter(|m| m.forbidden) {
        out.push(finding(
            "L003",
            "near-duplicate-of-forbidden-file",
            Level::High,
            Level::Medium,
            (1, 1),
            format!(
                "near-duplicate (estimated Jaccard {:.2}) of corpus file {}, licensed {}, which the policy does not allow",
                m.jaccard, m.path, m.license
            ),
        ));
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use anvil_data::minhash_index::MinHashIndex;

    fn run(text: &str, index: Option<&CorpusIndex>) -> LicenseReport {
        let src = Source::python(text.as_bytes()).unwrap();
        check(&src, &LicensePolicy::default(), index)
    }

    fn rules(r: &LicenseReport) -> Vec<&str> {
        r.findings.iter().map(|f| f.rule.as_str()).collect()
    }

    #[test]
    fn default_policy_is_valid_and_bad_ids_are_named() {
        LicensePolicy::default().validate().unwrap();
        for id in &LicensePolicy::default().allow {
            assert!(spdx::license_id(id).is_some(), "{id}");
        }
        let bad = LicensePolicy {
            allow: vec!["MIT".into(), "Not-A-License".into()],
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("`Not-A-License`") && e.contains("allow"), "{e}");
        let bad = LicensePolicy {
            jaccard_threshold: 0.0,
            ..Default::default()
        };
        assert!(matches!(bad.validate(), Err(LicenseError::Threshold(_))));
        let bad = LicensePolicy {
            packages: [("mypkg".to_string(), "MIT OR".to_string())].into(),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("packages.mypkg")
        );
    }

    #[test]
    fn or_needs_one_allowed_branch_and_needs_all() {
        let a = Allowed::new(&LicensePolicy::default().allow);
        assert_eq!(a.verdict("MIT OR GPL-3.0-only"), Verdict::Allowed);
        assert_eq!(a.verdict("MIT AND GPL-3.0-only"), Verdict::Forbidden);
        assert_eq!(a.verdict("GPL-3.0-or-later"), Verdict::Forbidden);
        assert_eq!(
            a.verdict("Apache-2.0 WITH LLVM-exception"),
            Verdict::Allowed
        );
        assert_eq!(
            a.verdict("GPL-2.0-only WITH Classpath-exception-2.0"),
            Verdict::Forbidden
        );
        assert_eq!(a.verdict("NOASSERTION"), Verdict::Unknown);
        let gpl_cp = Allowed::new(&["GPL-2.0-only WITH Classpath-exception-2.0".to_string()]);
        assert_eq!(
            gpl_cp.verdict("GPL-2.0-only WITH Classpath-exception-2.0"),
            Verdict::Allowed
        );
        assert_eq!(gpl_cp.verdict("GPL-2.0-only"), Verdict::Forbidden);
    }

    #[test]
    fn spdx_tags_are_judged_each() {
        let r = run("# SPDX-License-Identifier: GPL-3.0-only\nx = 1\n", None);
        assert_eq!(rules(&r), ["L001"]);
        assert_eq!((r.findings[0].line, r.findings[0].column), (1, 3));
        assert_eq!(r.score, FORBIDDEN_CODE_SCORE);
        let r = run(
            "# SPDX-License-Identifier: MIT OR GPL-3.0-only\nx = 1\n",
            None,
        );
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.score, 1.0);
        let r = run("# SPDX-License-Identifier: Proprietary!!\nx = 1\n", None);
        assert_eq!(rules(&r), ["L001"]);
        assert!(r.findings[0].message.contains("not a valid SPDX"));
        let r = run(
            "# SPDX-License-Identifier: MIT\n# SPDX-License-Identifier: AGPL-3.0-only\n",
            None,
        );
        assert_eq!(rules(&r), ["L001"]);
        assert_eq!(r.findings[0].line, 2);
    }

    #[test]
    fn gpl_header_is_caught_and_mit_header_is_not() {
        let gpl = "# Copyright (C) 2024 Someone\n#\n\
            # This program is free software: you can redistribute it and/or modify\n\
            # it under the terms of the GNU General Public License as published by\n\
            # the Free Software Foundation, either version 3 of the License, or\n\
            # (at your option) any later version.\n#\n\
            # This program is distributed in the hope that it will be useful,\n\
            # but WITHOUT ANY WARRANTY; without even the implied warranty of\n\
            # MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the\n\
            # GNU General Public License for more details.\n#\n\
            # You should have received a copy of the GNU General Public License\n\
            # along with this program.  If not, see <https://www.gnu.org/licenses/>.\n\
            \nx = 1\n";
        let r = run(gpl, None);
        assert_eq!(rules(&r), ["L001"], "{:?}", r.findings);
        assert!(
            r.findings[0].message.contains("GPL-3.0"),
            "{}",
            r.findings[0].message
        );
        assert_eq!(r.score, 0.0);
        let mit = "# Copyright (c) 2024 Someone\n#\n\
            # Permission is hereby granted, free of charge, to any person obtaining a copy\n\
            # of this software and associated documentation files (the \"Software\"), to deal\n\
            # in the Software without restriction, including without limitation the rights\n\
            # to use, copy, modify, merge, publish, distribute, sublicense, and/or sell\n\
            # copies of the Software, and to permit persons to whom the Software is\n\
            # furnished to do so, subject to the following conditions:\n#\n\
            # The above copyright notice and this permission notice shall be included in\n\
            # all copies or substantial portions of the Software.\n#\n\
            # THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\n\
            # IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\n\
            # FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\n\
            # AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\n\
            # LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\n\
            # OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN\n\
            # THE SOFTWARE.\n\nx = 1\n";
        assert_eq!(detect::from_header(mit).as_deref(), Some("MIT"));
        let r = run(mit, None);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.score, 1.0);
    }

    #[test]
    fn imports_forbidden_unknown_and_stdlib() {
        let r = run(
            "import os, sys\nimport numpy as np\nfrom PyQt5 import QtWidgets\n",
            None,
        );
        assert_eq!(rules(&r), ["L002"]);
        assert_eq!(r.findings[0].line, 3);
        assert_eq!(r.score, FORBIDDEN_IMPORT_SCORE);
        let r = run(
            "import certifi\nimport psycopg2\nfrom . import sibling\n",
            None,
        );
        assert!(
            r.findings.is_empty(),
            "weak copyleft is allowed for imports: {:?}",
            r.findings
        );
        let r = run("import zzz_private_pkg\nimport zzz_private_pkg.sub\n", None);
        assert_eq!(rules(&r), ["L004"]);
        assert_eq!(r.unknown_packages, ["zzz_private_pkg"]);
        assert_eq!(r.score, 1.0);
        // The policy's entries override the table, both ways.
        let policy = LicensePolicy {
            packages: [
                ("zzz_private_pkg".to_string(), "GPL-2.0-only".to_string()),
                ("PyQt5".to_string(), "MIT".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let src = Source::python(b"import zzz_private_pkg\nimport PyQt5\n").unwrap();
        let r = check(&src, &policy, None);
        assert_eq!(rules(&r), ["L002"]);
        assert!(r.findings[0].message.contains("zzz_private_pkg"));
    }

    #[test]
    fn near_copy_of_a_gpl_file_scores_zero() {
        let body = |seed: &str| -> String {
            (0..40)
                .map(|k| format!("def {seed}_{k}(a, b):\n    return a * {k} + b - {seed}_{k}\n"))
                .collect()
        };
        let mut idx = MinHashIndex::new(128, 5);
        let h = idx.hasher();
        idx.push("gpl.py", "GPL-3.0-only", &h.signature(&body("alpha")))
            .unwrap();
        idx.push("mit.py", "MIT", &h.signature(&body("beta")))
            .unwrap();
        idx.push("unknown.py", "NOASSERTION", &h.signature(&body("gamma")))
            .unwrap();
        let idx = CorpusIndex::from_index(idx, 0.5);
        let r = run(&body("alpha"), Some(&idx));
        assert_eq!(rules(&r), ["L003"]);
        assert_eq!(r.matches.len(), 1);
        assert!(r.matches[0].forbidden && r.matches[0].jaccard > 0.99);
        assert_eq!(r.score, 0.0);
        let r = run(&body("beta"), Some(&idx));
        assert!(r.findings.is_empty() && r.matches.len() == 1 && !r.matches[0].forbidden);
        let r = run(&body("gamma"), Some(&idx));
        assert!(
            r.findings.is_empty() && r.score == 1.0,
            "unknown licenses are not refused"
        );
        // Too short to compare.
        let r = run("def alpha_0(a, b):\n    return a\n", Some(&idx));
        assert!(r.matches.is_empty());
    }
}
