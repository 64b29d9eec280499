//! Static analysis of (generated) source code, the non-execution terms of the composite reward:
//!
//! - [`security`]: Bandit-compatible findings (test IDs, severity, confidence) and a risk in [0, 1];
//! - [`quality`]: radon's cyclomatic complexity and maintainability index, pyflakes' lints, and a
//!   quality score in [0, 1];
//! - [`license`]: SPDX tags and headers, third-party imports and near-duplicates of restricted
//!   corpus files against a policy, and a compliance score in [0, 1].
//!
//! Everything works on one parsed file ([`source::Source`]); a rule set is per language, Python
//! first.

pub mod finding;
pub mod imports;
pub mod license;
pub mod quality;
pub mod report;
pub mod sarif;
pub mod security;
pub mod source;

pub use finding::{Finding, Level};
pub use source::{Source, SourceError};
