//! License detection, per file, as an SPDX expression. In order of precedence:
//! 1. an `SPDX-License-Identifier:` line near the top of the file;
//! 2. a license header comment, matched against the SPDX license texts (the `spdx` crate's
//!    detection, an inlining of askalono);
//! 3. the nearest LICENSE/COPYING file above it in its source tree, matched the same way;
//! 4. the `license` field of a JSONL/Parquet input record.
//!
//! Otherwise `NOASSERTION`, SPDX's word for "nothing was found".

use spdx::detection::scan::{ScanMode, Scanner};
use spdx::detection::{Store, TextData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub const NOASSERTION: &str = "NOASSERTION";

/// Confidence needed to accept a text match; askalono's own default is 0.9, headers are short
/// and noisy so they get a little slack.
const FILE_CONFIDENCE: f32 = 0.9;
const HEADER_CONFIDENCE: f32 = 0.85;

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| Store::load_inline().expect("the spdx crate's inline license cache loads"))
}

/// Normalize an SPDX expression (lax: accepts `Apache 2.0`, `GPL-2.0+`, `/` for OR), or `None`
/// if it is not one.
pub fn normalize_expression(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let e = spdx::Expression::parse_mode(s, spdx::ParseMode::LAX).ok()?;
    // Display gives the original text; rebuild it with each requirement's canonical id (lax
    // parsing maps `GPL-2.0+` to `GPL-2.0-or-later`, `Apache 2.0` to `Apache-2.0`).
    let orig: &str = e.as_ref();
    let mut out = String::new();
    let mut at = 0usize;
    for req in e.requirements() {
        let (start, end) = (req.span.start as usize, req.span.end as usize);
        out.push_str(&orig[at..start]);
        let canon = req.req.to_string();
        out.push_str(&canon);
        // the span stops before a trailing `+`, which the canonical id already spells out
        at = if orig[end..].starts_with('+') && !canon.ends_with('+') {
            end + 1
        } else {
            end
        };
    }
    out.push_str(&orig[at..]);
    Some(out)
}

/// `SPDX-License-Identifier: X` in the first 30 lines.
pub fn from_spdx_tag(text: &str) -> Option<String> {
    text.lines().take(30).find_map(|line| {
        let idx = line.find("SPDX-License-Identifier:")?;
        let rest = &line[idx + "SPDX-License-Identifier:".len()..];
        let rest = rest
            .trim()
            .trim_end_matches("*/")
            .trim_end_matches("-->")
            .trim();
        normalize_expression(rest)
    })
}

/// The leading comment block of a file (or a module docstring), where license headers live.
fn leading_comment(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    let mut in_doc: Option<&str> = None;
    for line in text.lines().take(80) {
        let t = line.trim();
        let body = if let Some(q) = in_doc {
            if t.contains(q) {
                in_doc = None;
            }
            t.trim_end_matches(q)
        } else if in_block {
            if t.contains("*/") {
                in_block = false;
            }
            t.trim_start_matches('*').trim_end_matches("*/")
        } else if t.starts_with("/*") {
            in_block = !t.contains("*/");
            t.trim_start_matches("/*")
                .trim_start_matches('*')
                .trim_end_matches("*/")
        } else if let Some(q) = ["\"\"\"", "'''"].into_iter().find(|q| t.starts_with(q)) {
            let rest = &t[3..];
            if !rest.contains(q) {
                in_doc = Some(q);
            }
            rest.trim_end_matches(q)
        } else if let Some(c) = t.strip_prefix("//").or_else(|| t.strip_prefix('#')) {
            c
        } else if t.is_empty() || t.starts_with("#!") {
            ""
        } else {
            break;
        };
        out.push_str(body.trim());
        out.push('\n');
    }
    out
}

/// A license header comment, matched against known license texts and headers.
pub fn from_header(text: &str) -> Option<String> {
    let header = leading_comment(text);
    // Matching costs a comparison with every known license: only try headers that state terms.
    // Common headers name a license, grant redistribution, or disclaim warranty (Zlib, HPND).
    let lower = header.to_ascii_lowercase();
    let states_terms = ["licen", "redistribut", "warrant"]
        .iter()
        .any(|w| lower.contains(w));
    if !states_terms || header.len() < 200 {
        return None;
    }
    let m = store().analyze(&TextData::new(&header));
    (m.score >= HEADER_CONFIDENCE).then(|| m.name.to_string())
}

/// Identify the license(s) in a license file's text. A file holding several licenses (Python's
/// LICENSE has its history, the PSF license and older ones) yields them joined with AND.
pub fn from_license_text(text: &str) -> Option<String> {
    let data = TextData::new(text);
    let m = store().analyze(&data);
    if m.score >= FILE_CONFIDENCE {
        return Some(m.name.to_string());
    }
    let scanner = Scanner::with_scan_mode(store(), ScanMode::top_down())
        .confidence_threshold(0.8)
        .optimize(true);
    let scan = scanner.scan(&data);
    let mut ids: Vec<&str> = scan.containing.iter().map(|c| c.license.name).collect();
    if let Some(l) = scan.license {
        ids.insert(0, l.name);
    }
    let mut seen = Vec::new();
    for id in ids {
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    (!seen.is_empty()).then(|| seen.join(" AND "))
}

/// Detects licenses of whole trees, caching each license file's verdict: a repository has one
/// LICENSE and thousands of files under it.
#[derive(Default)]
pub struct LicenseDetector {
    files: Mutex<HashMap<PathBuf, Option<String>>>,
}

impl LicenseDetector {
    pub fn license_file(&self, path: &Path) -> Option<String> {
        if let Some(v) = self.files.lock().unwrap().get(path) {
            return v.clone();
        }
        let v = std::fs::read(path)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| from_license_text(&t));
        self.files
            .lock()
            .unwrap()
            .insert(path.to_path_buf(), v.clone());
        v
    }

    /// The license of one file, by the precedence in the module docs.
    pub fn detect(&self, text: &str, license_file: Option<&Path>, hint: Option<&str>) -> String {
        from_spdx_tag(text)
            .or_else(|| from_header(text))
            .or_else(|| license_file.and_then(|p| self.license_file(p)))
            .or_else(|| hint.and_then(normalize_expression))
            .unwrap_or_else(|| NOASSERTION.to_string())
    }
}
