//! Loops: counting, accumulating, nested loops, while loops.

use super::task::{Ctx, INT_PARAMS, LIST_PARAMS, Task, case1, case2, indent};

fn base_name(b: i64) -> String {
    if b == 10 {
        "decimal".to_string()
    } else {
        format!("base-{b}")
    }
}

pub(crate) fn count_digits(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "count_digits",
        "digit_count",
        "num_digits",
        "digit_length",
        "length_in_base",
        "digits_needed",
        "width_in_base",
        "numeral_length",
    ]);
    let x = c.pick(INT_PARAMS);
    let b = c.konst(2, 10);
    let doc = match c.below(2) {
        0 => format!(
            "Return how many {} digits are needed to write abs({x}); zero has one digit.",
            base_name(b)
        ),
        _ => format!("Count the digits of the integer {x} written in base {b}, ignoring its sign."),
    };
    let mut inputs = c.ints(3, -3000, 3000);
    inputs.extend([0, b - 1, b, -b * b]);
    let digits = |v: i64| {
        let (mut rest, mut count) = (v.abs(), 1);
        while rest >= b {
            rest /= b;
            count += 1;
        }
        count
    };
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
rest = abs({x})
count = 1
while rest >= {b}:
    rest //= {b}
    count += 1
return count
"
        )),
        cases: inputs.into_iter().map(|v| case1(v, digits(v))).collect(),
    }
}

pub(crate) fn digit_sum(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "digit_sum",
        "sum_of_digits",
        "add_digits",
        "digits_total",
        "cross_sum",
        "digital_total",
        "sum_digits",
        "total_of_digits",
    ]);
    let x = c.pick(INT_PARAMS);
    let b = c.konst(2, 10);
    let doc = match c.below(2) {
        0 => format!("Return the sum of the {} digits of abs({x}).", base_name(b)),
        _ => format!("Write abs({x}) in base {b} and add up its digits."),
    };
    let mut inputs = c.ints(3, -5000, 5000);
    inputs.extend([0, b - 1, b + 1, -(b * b - 1)]);
    let sum = |v: i64| {
        let (mut rest, mut total) = (v.abs(), 0);
        while rest > 0 {
            total += rest % b;
            rest /= b;
        }
        total
    };
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
rest = abs({x})
total = 0
while rest > 0:
    total += rest % {b}
    rest //= {b}
return total
"
        )),
        cases: inputs.into_iter().map(|v| case1(v, sum(v))).collect(),
    }
}

pub(crate) fn prefix_sums(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "prefix_sums",
        "running_total",
        "cumulative_sum",
        "accumulate",
        "partial_sums",
        "running_sums",
        "cumsum",
        "scan_sum",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let doc = match c.below(2) {
        0 => format!(
            "Return the running totals of {xs}: element i is the sum of {xs}[0] through {xs}[i]."
        ),
        _ => format!(
            "Accumulate {xs} from left to right and return every partial sum along the way."
        ),
    };
    let mut inputs: Vec<Vec<i64>> = (0..4).map(|_| c.list(3, 7, -15, 15)).collect();
    inputs.extend([vec![], vec![c.int(-9, 9)], vec![-1, -2, -3], vec![5, -5, 5]]);
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "List[int]",
        doc,
        body: indent(&format!(
            "
result = []
total = 0
for v in {xs}:
    total += v
    result.append(total)
return result
"
        )),
        cases: inputs
            .into_iter()
            .map(|l| {
                let out: Vec<i64> = l
                    .iter()
                    .scan(0, |acc, v| {
                        *acc += v;
                        Some(*acc)
                    })
                    .collect();
                case1(l, out)
            })
            .collect(),
    }
}

pub(crate) fn count_pairs(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "count_pairs_with_sum",
        "pairs_summing_to",
        "two_sum_count",
        "matching_pairs",
        "count_complements",
        "pair_count",
        "sum_pairs_count",
        "count_two_sums",
    ]);
    let xs = c.pick(LIST_PARAMS);
    let t = c.konst(-10, 20);
    let doc = match c.below(2) {
        0 => format!(
            "Return how many pairs of positions i < j in {xs} satisfy {xs}[i] + {xs}[j] == {t}."
        ),
        _ => format!(
            "Count the unordered pairs of distinct positions in {xs} whose values add up to {t}."
        ),
    };
    let (lo, hi) = (t / 2 - 8, t / 2 + 8);
    let mut inputs: Vec<Vec<i64>> = (0..4).map(|_| c.list(3, 8, lo, hi)).collect();
    inputs.extend([vec![], vec![t], vec![1, t - 1], vec![t - 2, 2, 2]]);
    let pairs = |l: &[i64]| {
        let mut count = 0;
        for i in 0..l.len() {
            for j in i + 1..l.len() {
                if l[i] + l[j] == t {
                    count += 1;
                }
            }
        }
        count
    };
    Task {
        name,
        params: vec![(xs, "List[int]")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
count = 0
for i in range(len({xs})):
    for j in range(i + 1, len({xs})):
        if {xs}[i] + {xs}[j] == {t}:
            count += 1
return count
"
        )),
        cases: inputs
            .into_iter()
            .map(|l| (pairs(&l), l))
            .map(|(n, l)| case1(l, n as i64))
            .collect(),
    }
}

pub(crate) fn sum_of_multiples(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "sum_of_multiples",
        "multiples_total",
        "sum_divisible_below",
        "add_multiples",
        "total_multiples",
        "multiples_sum",
        "accumulate_multiples",
        "sum_below",
    ]);
    let x = c.pick(INT_PARAMS);
    let (a, b) = loop {
        let (a, b) = (c.konst(2, 9), c.konst(2, 9));
        if a < b {
            break (a, b);
        }
    };
    let doc = match c.below(2) {
        0 => format!(
            "Return the sum of all integers i with 0 <= i < {x} that are divisible by {a} or by {b}."
        ),
        _ => format!(
            "Add up every number below {x} (starting at 0) that is a multiple of {a} or of {b}."
        ),
    };
    let mut inputs = c.ints(3, 5, 60);
    inputs.extend([0, 1, a + 1, -5]);
    let total = |n: i64| {
        (0..n.max(0))
            .filter(|i| i % a == 0 || i % b == 0)
            .sum::<i64>()
    };
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
total = 0
for i in range({x}):
    if i % {a} == 0 or i % {b} == 0:
        total += i
return total
"
        )),
        cases: inputs.into_iter().map(|n| case1(n, total(n))).collect(),
    }
}

pub(crate) fn int_log(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "int_log",
        "times_divisible",
        "divide_count",
        "log_floor",
        "division_steps",
        "repeated_division",
        "shrink_steps",
        "division_depth",
    ]);
    let x = c.pick(INT_PARAMS);
    let k = c.konst(2, 10);
    let doc = match c.below(2) {
        0 => format!(
            "Return how many times {x} can be floor-divided by {k} while it is at least {k}; 0 if {x} < {k}."
        ),
        _ => format!(
            "Repeatedly replace {x} by {x} // {k} as long as {x} >= {k}, and return the number of divisions."
        ),
    };
    let mut inputs = c.ints(3, 1, 10_000);
    inputs.extend([0, -8, 1, k, k * k, k * k - 1]);
    let steps = |v: i64| {
        let (mut rest, mut count) = (v, 0);
        while rest >= k {
            rest /= k;
            count += 1;
        }
        count
    };
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
count = 0
rest = {x}
while rest >= {k}:
    rest //= {k}
    count += 1
return count
"
        )),
        cases: inputs.into_iter().map(|v| case1(v, steps(v))).collect(),
    }
}

pub(crate) fn growth_steps(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "growth_steps",
        "steps_to_reach",
        "periods_needed",
        "periods_until",
        "count_growth",
        "times_to_exceed",
        "compound_steps",
        "rounds_needed",
    ]);
    let (start, target) = c.pick(&[
        ("start", "target"),
        ("initial", "goal"),
        ("amount", "limit"),
        ("seed", "threshold"),
        ("base", "cap"),
        ("begin", "end"),
        ("population", "capacity"),
        ("balance", "goal_amount"),
    ]);
    let r = c.konst(2, 5);
    let doc = match c.below(2) {
        0 => format!(
            "A positive quantity {start} is multiplied by {r} once per step. Return how many steps it takes \
             until it is at least {target} (0 if it already is)."
        ),
        _ => format!(
            "Return the smallest number of times the positive {start} must be multiplied by {r} to reach {target} or more."
        ),
    };
    let mut inputs: Vec<(i64, i64)> = (0..3).map(|_| (c.int(1, 20), c.int(1, 5000))).collect();
    inputs.extend([(5, 5), (10, 3), (1, r), (1, r + 1), (2, 0)]);
    let steps = |(s, t): (i64, i64)| {
        let (mut cur, mut n) = (s, 0);
        while cur < t {
            cur *= r;
            n += 1;
        }
        n
    };
    Task {
        name,
        params: vec![(start, "int"), (target, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
steps = 0
current = {start}
while current < {target}:
    current *= {r}
    steps += 1
return steps
"
        )),
        cases: inputs
            .into_iter()
            .map(|p| case2(p.0, p.1, steps(p) as i64))
            .collect(),
    }
}

pub(crate) fn grid_count(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "grid_count",
        "count_cells",
        "lattice_points",
        "checker_cells",
        "count_grid",
        "diagonal_cells",
        "marked_cells",
        "tile_count",
    ]);
    let (rows, cols) = c.pick(&[
        ("rows", "cols"),
        ("width", "height"),
        ("n", "m"),
        ("h", "w"),
        ("a", "b"),
        ("nx", "ny"),
        ("p", "q"),
        ("r", "c"),
    ]);
    let k = c.konst(2, 7);
    let doc = match c.below(2) {
        0 => format!(
            "Count the cells (i, j) with 0 <= i < {rows} and 0 <= j < {cols} for which i + j is divisible by {k}."
        ),
        _ => format!(
            "In a {rows} by {cols} grid, return how many positions (i, j) have (i + j) % {k} == 0."
        ),
    };
    let mut inputs: Vec<(i64, i64)> = (0..3).map(|_| (c.int(1, 12), c.int(1, 12))).collect();
    inputs.extend([(0, 5), (1, 1), (k, k), (3, 0), (-2, 4)]);
    let count = |(r, q): (i64, i64)| {
        let mut n = 0;
        for i in 0..r.max(0) {
            for j in 0..q.max(0) {
                if (i + j) % k == 0 {
                    n += 1;
                }
            }
        }
        n
    };
    Task {
        name,
        params: vec![(rows, "int"), (cols, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
count = 0
for i in range({rows}):
    for j in range({cols}):
        if (i + j) % {k} == 0:
            count += 1
return count
"
        )),
        cases: inputs
            .into_iter()
            .map(|p| case2(p.0, p.1, count(p) as i64))
            .collect(),
    }
}
