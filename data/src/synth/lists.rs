//! List filters, maps and reductions over `List[int]`.

use super::task::{Ctx, LIST_PAIRS, LIST_PARAMS, Py, Task, case1, case2, indent, signed};

/// Random lists first (for the docstring), then the empty list, a singleton and an all-negative
/// list: the edge cases every list template is tested on.
fn lists(c: &mut Ctx, n: usize, lo: i64, hi: i64) -> Vec<Vec<i64>> {
    let mut out: Vec<Vec<i64>> = (0..n).map(|_| c.list(3, 7, lo, hi)).collect();
    out.push(vec![]);
    out.push(vec![c.int(lo, hi)]);
    out.push(c.list(2, 4, lo.min(-9), -1));
    out
}

pub(crate) fn filter_compare(c: &mut Ctx) -> Task {
    let upward = c.coin();
    let name = if upward {
        c.pick(&[
            "filter_greater",
            "above_threshold",
            "keep_large",
            "values_over",
            "select_above",
            "greater_than",
            "drop_small",
            "only_big",
        ])
    } else {
        c.pick(&[
            "filter_smaller",
            "below_threshold",
            "keep_small",
            "values_under",
            "select_below",
            "less_than",
            "drop_large",
            "only_small",
        ])
    };
    let xs = c.pick(LIST_PARAMS);
    let t = c.konst(-10, 20);
    let strict = c.coin();
    let (op, words) = match (upward, strict) {
        (true, true) => (">", "greater than"),
        (true, false) => (">=", "greater than or equal to"),
        (false, true) => ("<", "less than"),
        (false, false) => ("<=", "less than or equal to"),
    };
    let doc = match c.below(2) {
        0 => format!("Return the elements of {xs} that are {words} {t}, in their original order."),
        _ => format!("Keep only the numbers in {xs} {words} {t} and return them as a new list."),
    };
    let mut inputs = lists(c, 4, -20, 30);
    inputs.push(vec![t - 1, t, t + 1]);
    let keep = |v: i64| match op {
        ">" => v > t,
        ">=" => v >= t,
        "<" => v < t,
        _ => v <= t,
    };
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: format!("    return [v for v in {xs} if v {op} {t}]\n"),
        cases: inputs
            .into_iter()
            .map(|l| {
                let out: Vec<i64> = l.iter().copied().filter(|&v| keep(v)).collect();
                case1(l, out)
            })
            .collect(),
    }
}

pub(crate) fn filter_multiples(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "multiples_of",
        "keep_divisible",
        "divisible_only",
        "select_multiples",
        "filter_divisible",
        "only_multiples",
        "divisible_by",
        "pick_multiples",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let k = c.konst(2, 9);
    let doc = match c.below(2) {
        0 => format!("Return the numbers in {xs} that are divisible by {k}, keeping their order."),
        _ => format!("Filter {xs} down to the multiples of {k} (zero and negatives included)."),
    };
    let mut inputs = lists(c, 4, -20, 40);
    inputs.push(vec![0, k, -k, k + 1]);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: format!("    return [v for v in {xs} if v % {k} == 0]\n"),
        cases: inputs
            .into_iter()
            .map(|l| {
                let out: Vec<i64> = l.iter().copied().filter(|v| v % k == 0).collect();
                case1(l, out)
            })
            .collect(),
    }
}

pub(crate) fn map_affine(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "scale_all",
        "transform_all",
        "map_linear",
        "adjust_each",
        "rescale_list",
        "apply_to_each",
        "shift_and_scale",
        "convert_all",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let (a, b) = (c.konst(2, 9), c.konst_nz(-12, 12));
    let doc = match c.below(2) {
        0 => format!(
            "Return a new list where each element v of {xs} becomes {a} * v{}.",
            signed(b)
        ),
        _ => format!(
            "Multiply every number in {xs} by {a}, then {}; return the results in order.",
            if b < 0 {
                format!("subtract {}", -b)
            } else {
                format!("add {b}")
            }
        ),
    };
    let inputs = lists(c, 4, -15, 15);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: format!("    return [{a} * v{} for v in {xs}]\n", signed(b)),
        cases: inputs
            .into_iter()
            .map(|l| {
                let out: Vec<i64> = l.iter().map(|v| a * v + b).collect();
                case1(l, out)
            })
            .collect(),
    }
}

pub(crate) fn sum_of_squares(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "sum_of_squares",
        "square_sum",
        "energy",
        "sum_squares",
        "total_squared",
        "squares_total",
        "squared_norm",
        "power_sum",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let doc = match c.below(2) {
        0 => format!("Return the sum of the squares of the numbers in {xs}; 0 for an empty list."),
        _ => format!("Square every element of {xs} and add the squares up."),
    };
    let inputs = lists(c, 4, -12, 12);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "int",
        doc,
        body: format!("    return sum(v * v for v in {xs})\n"),
        cases: inputs
            .into_iter()
            .map(|l| (l.iter().map(|v| v * v).sum::<i64>(), l))
            .map(|(s, l)| case1(l, s))
            .collect(),
    }
}

pub(crate) fn product_of(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "product_of",
        "multiply_all",
        "product",
        "total_product",
        "prod_list",
        "mul_reduce",
        "times_all",
        "product_all",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let doc = match c.below(2) {
        0 => {
            format!("Return the product of all numbers in {xs}. The product of an empty list is 1.")
        }
        _ => format!(
            "Multiply the elements of {xs} together and return the result (1 if there are none)."
        ),
    };
    let inputs = lists(c, 4, -6, 6);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
result = 1
for v in {xs}:
    result *= v
return result
"
        )),
        cases: inputs
            .into_iter()
            .map(|l| (l.iter().product::<i64>(), l))
            .map(|(p, l)| case1(l, p))
            .collect(),
    }
}

pub(crate) fn count_in_range(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "count_in_range",
        "count_between",
        "how_many_within",
        "tally_range",
        "in_band",
        "count_inside",
        "band_count",
        "within_bounds",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let lo = c.konst(-10, 10);
    let hi = lo + c.konst(2, 15);
    let doc = match c.below(2) {
        0 => format!(
            "Return how many numbers in {xs} lie between {lo} and {hi}, both ends included."
        ),
        _ => format!("Count the elements v of {xs} with {lo} <= v <= {hi}."),
    };
    let mut inputs = lists(c, 4, lo - 10, hi + 10);
    inputs.push(vec![lo - 1, lo, hi, hi + 1]);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "int",
        doc,
        body: format!("    return sum(1 for v in {xs} if {lo} <= v <= {hi})\n"),
        cases: inputs
            .into_iter()
            .map(|l| (l.iter().filter(|v| (lo..=hi).contains(*v)).count(), l))
            .map(|(n, l)| case1(l, n))
            .collect(),
    }
}

pub(crate) fn pairwise_diffs(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "pairwise_diffs",
        "differences",
        "deltas",
        "step_changes",
        "consecutive_gaps",
        "successive_diffs",
        "increments",
        "adjacent_deltas",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let doc = match c.below(2) {
        0 => format!(
            "Return the list of differences between consecutive elements of {xs} (next minus current)."
        ),
        _ => format!(
            "For each adjacent pair a, b in {xs} return b - a; lists shorter than two give []."
        ),
    };
    let inputs = lists(c, 4, -20, 20);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: format!("    return [{xs}[i + 1] - {xs}[i] for i in range(len({xs}) - 1)]\n"),
        cases: inputs
            .into_iter()
            .map(|l| {
                let out: Vec<i64> = l.windows(2).map(|w| w[1] - w[0]).collect();
                case1(l, out)
            })
            .collect(),
    }
}

pub(crate) fn clip_all(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "clip_all",
        "clamp_each",
        "bound_values",
        "limit_all",
        "saturate_all",
        "clamp_list",
        "cap_values",
        "restrict_range",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let lo = c.konst(-10, 10);
    let hi = lo + c.konst(2, 20);
    let doc = match c.below(2) {
        0 => format!(
            "Clamp every element of {xs} into the range [{lo}, {hi}] and return the new list."
        ),
        _ => format!(
            "Return {xs} with values below {lo} raised to {lo} and values above {hi} lowered to {hi}."
        ),
    };
    let mut inputs = lists(c, 4, lo - 15, hi + 15);
    inputs.push(vec![lo - 1, lo, hi, hi + 1]);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: format!("    return [min(max(v, {lo}), {hi}) for v in {xs}]\n"),
        cases: inputs
            .into_iter()
            .map(|l| {
                let out: Vec<i64> = l.iter().map(|v| (*v).clamp(lo, hi)).collect();
                case1(l, out)
            })
            .collect(),
    }
}

pub(crate) fn dedupe(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "dedupe",
        "unique_in_order",
        "remove_duplicates",
        "distinct",
        "first_occurrences",
        "drop_repeats",
        "uniq",
        "keep_first_seen",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let doc = match c.below(2) {
        0 => format!(
            "Return the elements of {xs} without duplicates, keeping the first occurrence of each."
        ),
        _ => format!(
            "Remove repeated values from {xs} while preserving the order in which values first appear."
        ),
    };
    let mut inputs = lists(c, 4, -3, 6);
    inputs.push(vec![5, 5, 5]);
    let uniq = |l: &[i64]| {
        let mut out = Vec::new();
        for v in l {
            if !out.contains(v) {
                out.push(*v);
            }
        }
        out
    };
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: indent(&format!(
            "
seen = set()
result = []
for v in {xs}:
    if v not in seen:
        seen.add(v)
        result.append(v)
return result
"
        )),
        cases: inputs
            .into_iter()
            .map(|l| (uniq(&l), l))
            .map(|(u, l)| case1(l, u))
            .collect(),
    }
}

pub(crate) fn max_or_default(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "max_or_default",
        "largest_or",
        "peak_value",
        "top_value",
        "max_with_fallback",
        "biggest",
        "highest_or",
        "maximum_or",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let d = c.konst(-10, 10);
    let doc = match c.below(2) {
        0 => format!("Return the largest number in {xs}, or {d} if the list is empty."),
        _ => format!(
            "Find the maximum of {xs}; an empty list has no maximum, so return {d} instead."
        ),
    };
    let inputs = lists(c, 4, -30, 30);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
if not {xs}:
    return {d}
return max({xs})
"
        )),
        cases: inputs
            .into_iter()
            .map(|l| (l.iter().copied().max().unwrap_or(d), l))
            .map(|(m, l)| case1(l, m))
            .collect(),
    }
}

pub(crate) fn zip_add(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "zip_add",
        "add_lists",
        "elementwise_sum",
        "pairwise_sum",
        "sum_pairs",
        "combine_lists",
        "vector_add",
        "add_elementwise",
    ]);
    let (xs, ys) = c.pick(LIST_PAIRS);
    let doc = match c.below(2) {
        0 => format!(
            "Return a list whose i-th element is {xs}[i] + {ys}[i]; stop at the end of the shorter list."
        ),
        _ => format!(
            "Add {xs} and {ys} element by element, ignoring the extra tail of the longer one."
        ),
    };
    let mut inputs: Vec<(Vec<i64>, Vec<i64>)> = (0..4)
        .map(|_| {
            let a = c.list(2, 6, -20, 20);
            let b = c.list(2, 6, -20, 20);
            (a, b)
        })
        .collect();
    inputs.extend([
        (vec![], vec![]),
        (vec![], vec![1, 2]),
        (vec![-3], vec![3, 4]),
        (vec![0, -1], vec![-5, -5]),
    ]);
    Task {
        name,
        params: vec![(xs, "List[int]"), (ys, "List[int]")],
        ret: "List[int]",
        doc,
        body: format!("    return [x + y for x, y in zip({xs}, {ys})]\n"),
        cases: inputs
            .into_iter()
            .map(|(a, b)| {
                let out: Vec<i64> = a.iter().zip(&b).map(|(p, q)| p + q).collect();
                case2(a, b, out)
            })
            .collect(),
    }
}

pub(crate) fn first_index_above(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "first_index_above",
        "find_first_over",
        "index_of_large",
        "first_exceeding",
        "locate_above",
        "position_over",
        "first_big_index",
        "find_above",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let t = c.konst(-5, 20);
    let doc = match c.below(2) {
        0 => format!(
            "Return the index of the first element of {xs} greater than {t}, or -1 if there is none."
        ),
        _ => format!(
            "Scan {xs} from the left and return the position of the first value above {t}; -1 if no value is."
        ),
    };
    let mut inputs = lists(c, 4, -10, 30);
    inputs.push(vec![t, t, t + 1]);
    let find = |l: &[i64]| l.iter().position(|v| *v > t).map_or(-1, |i| i as i64);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
for i, v in enumerate({xs}):
    if v > {t}:
        return i
return -1
"
        )),
        cases: inputs
            .into_iter()
            .map(|l| (find(&l), l))
            .map(|(i, l)| case1(l, Py::Int(i)))
            .collect(),
    }
}
