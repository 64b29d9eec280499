//! What the license check knows without a network: the licenses of common third-party Python
//! packages, by the top-level name a file imports, and the standard library's module names
//! (which are never third-party). Both are data files compiled in (`packages.tsv`,
//! `stdlib.txt`), parsed once on first use; a policy can add or override package entries
//! (`LicensePolicy::packages`).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const PACKAGES_TSV: &str = include_str!("packages.tsv");
const STDLIB_TXT: &str = include_str!("stdlib.txt");

/// One third-party package: the top-level module it installs, its PyPI distribution, and its
/// license.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageLicense {
    pub import: &'static str,
    pub distribution: &'static str,
    /// SPDX expression.
    pub license: &'static str,
}

/// Lines of a table file that carry data: comments and blank lines dropped.
fn data_lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn parse_package(line: &'static str) -> Option<PackageLicense> {
    let mut f = line.split('\t');
    let (import, distribution, license) = (f.next()?, f.next()?, f.next()?);
    f.next().is_none().then_some(PackageLicense {
        import,
        distribution,
        license,
    })
}

/// Every entry of the shipped table, in file order. Malformed lines are skipped (a test keeps
/// there from being any).
pub fn packages() -> impl Iterator<Item = PackageLicense> {
    data_lines(PACKAGES_TSV).filter_map(parse_package)
}

fn package_map() -> &'static HashMap<&'static str, PackageLicense> {
    static MAP: OnceLock<HashMap<&'static str, PackageLicense>> = OnceLock::new();
    MAP.get_or_init(|| packages().map(|p| (p.import, p)).collect())
}

fn stdlib_set() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| data_lines(STDLIB_TXT).collect())
}

/// The shipped license of the package that installs top-level module `import`.
pub fn package_license(import: &str) -> Option<&'static PackageLicense> {
    package_map().get(import)
}

/// Whether `module` (a top-level name) belongs to the standard library.
pub fn is_stdlib(module: &str) -> bool {
    stdlib_set().contains(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_well_formed_sorted_and_unique() {
        let lines: Vec<_> = data_lines(PACKAGES_TSV).collect();
        for l in &lines {
            assert!(parse_package(l).is_some(), "malformed line {l:?}");
        }
        let names: Vec<_> = packages().map(|p| p.import).collect();
        for w in names.windows(2) {
            assert!(w[0] < w[1], "{} / {}", w[0], w[1]);
        }
        assert!(names.len() >= 150, "{} packages", names.len());
        assert_eq!(package_map().len(), names.len());
        let stdlib: Vec<_> = data_lines(STDLIB_TXT).collect();
        assert_eq!(stdlib_set().len(), stdlib.len(), "duplicate stdlib names");
        for m in &stdlib {
            assert!(
                !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{m:?}"
            );
        }
        // 305 names from CPython 3.11, 31 from Python 2.
        assert_eq!(stdlib.len(), 336);
    }

    #[test]
    fn every_license_is_a_strict_spdx_expression() {
        for p in packages() {
            let e = spdx::Expression::parse(p.license);
            assert!(e.is_ok(), "{}: {}: {:?}", p.import, p.license, e.err());
        }
    }

    #[test]
    fn stdlib_and_third_party_do_not_overlap() {
        for p in packages() {
            assert!(!is_stdlib(p.import), "{} is in both tables", p.import);
        }
        assert!(is_stdlib("os") && is_stdlib("__future__") && is_stdlib("urllib2"));
        assert!(is_stdlib("tomllib") && is_stdlib("distutils"));
        assert!(!is_stdlib("numpy") && !is_stdlib(""));
    }

    #[test]
    fn lookups_give_the_known_licenses() {
        let lic = |m: &str| package_license(m).map(|p| p.license);
        assert_eq!(lic("numpy"), Some("BSD-3-Clause"));
        assert_eq!(lic("requests"), Some("Apache-2.0"));
        assert_eq!(lic("PyQt5"), Some("GPL-3.0-only"));
        assert_eq!(lic("MySQLdb"), Some("GPL-2.0-or-later"));
        assert_eq!(
            package_license("MySQLdb").map(|p| p.distribution),
            Some("mysqlclient")
        );
        assert_eq!(lic("PIL"), Some("MIT-CMU"));
        assert_eq!(lic("pyqt5"), None, "import names are case-sensitive");
        assert_eq!(lic("not_a_package"), None);
    }
}
