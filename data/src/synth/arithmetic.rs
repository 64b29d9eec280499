//! Arithmetic transforms: one or two integers in, one expression out.

use super::task::{
    Ctx, INT_PAIRS, INT_PARAMS, Py, Task, case1, case2, floordiv, plus_minus, pymod, shift_words,
    signed,
};

pub(crate) fn affine(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "scale_and_shift",
        "affine",
        "linear_map",
        "stretch_and_offset",
        "rescale",
        "transform_value",
        "apply_linear",
        "scale_then_add",
    ]);
    let x = c.pick(INT_PARAMS);
    let (a, b) = (c.konst(2, 12), c.konst_nz(-15, 15));
    let doc = match c.below(3) {
        0 => format!("Return {x} multiplied by {a} and then {}.", shift_words(b)),
        1 => format!("Scale the integer {x} by a factor of {a}, then shift the result by {b}."),
        _ => format!("Compute {a} * {x}{} for the given integer {x}.", signed(b)),
    };
    let mut inputs = c.ints(4, -50, 50);
    inputs.extend([0, -1, 1]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: format!("    return {a} * {x}{}\n", signed(b)),
        cases: inputs.into_iter().map(|v| case1(v, a * v + b)).collect(),
    }
}

pub(crate) fn weighted_sum(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "weighted_sum",
        "combine",
        "mix_values",
        "blend",
        "linear_combo",
        "weigh_pair",
        "score_pair",
        "merge_scores",
    ]);
    let (x, y) = c.pick(INT_PAIRS);
    let a = c.konst(2, 9);
    let b = if c.coin() {
        c.konst(2, 9)
    } else {
        -c.konst(2, 9)
    };
    let doc = match c.below(3) {
        0 => format!("Return {a} times {x} {} times {y}.", plus_minus(b)),
        1 => format!(
            "Combine two integers as the weighted sum {a} * {x}{} * {y}.",
            signed(b)
        ),
        _ => format!("Weigh {x} by {a} and {y} by {b} and return the sum of the two products."),
    };
    let mut inputs: Vec<(i64, i64)> = (0..4).map(|_| (c.int(-30, 30), c.int(-30, 30))).collect();
    inputs.extend([(0, 0), (1, 0), (0, -1), (-3, 4)]);
    Task {
        name,
        params: vec![(x, "int"), (y, "int")],
        ret: "int",
        doc,
        body: format!("    return {a} * {x}{} * {y}\n", signed(b)),
        cases: inputs
            .into_iter()
            .map(|(p, q)| case2(p, q, a * p + b * q))
            .collect(),
    }
}

pub(crate) fn quadratic(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "evaluate_poly",
        "quadratic",
        "poly_value",
        "square_plus_linear",
        "eval_quadratic",
        "parabola",
        "poly_at",
        "quad_at",
    ]);
    let x = c.pick(INT_PARAMS);
    let (a, b) = (c.konst_nz(-9, 9), c.konst_nz(-20, 20));
    let poly = format!("{x} * {x}{} * {x}{}", signed(a), signed(b));
    let doc = match c.below(2) {
        0 => format!("Evaluate the polynomial {poly} at the integer {x}."),
        _ => format!(
            "Return the square of {x}, {} times {x}, {}.",
            plus_minus(a),
            plus_minus(b)
        ),
    };
    let mut inputs = c.ints(4, -20, 20);
    inputs.extend([0, -1, 1]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: format!("    return {poly}\n"),
        cases: inputs
            .into_iter()
            .map(|v| case1(v, v * v + a * v + b))
            .collect(),
    }
}

pub(crate) fn divmod_pair(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "split_by",
        "quotient_and_remainder",
        "divide_with_remainder",
        "div_and_mod",
        "chunk_and_rest",
        "split_count",
        "groups_and_leftover",
        "divmod_by",
    ]);
    let x = c.pick(INT_PARAMS);
    let d = c.konst(2, 12);
    let doc = match c.below(3) {
        0 => format!(
            "Return a tuple (q, r) where q is {x} divided by {d} rounded down and r is the remainder, \
             so that {x} == q * {d} + r and 0 <= r < {d}."
        ),
        1 => format!(
            "Split {x} into groups of {d}: return how many whole groups (rounded down) and what is left over."
        ),
        _ => format!(
            "Return the floor quotient and the non-negative remainder of {x} divided by {d}, as a tuple."
        ),
    };
    let mut inputs = c.ints(4, 0, 100);
    inputs.extend([0, d, d - 1, -1, -(d + 2)]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "Tuple[int, int]",
        doc,
        body: format!("    return ({x} // {d}, {x} % {d})\n"),
        cases: inputs
            .into_iter()
            .map(|v| {
                case1(
                    v,
                    Py::Tuple(vec![floordiv(v, d).into(), pymod(v, d).into()]),
                )
            })
            .collect(),
    }
}

pub(crate) fn round_down(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "round_down",
        "floor_to_multiple",
        "snap_down",
        "align_down",
        "round_to_step",
        "quantize",
        "bucket_start",
        "truncate_to_multiple",
    ]);
    let x = c.pick(INT_PARAMS);
    let m = c.konst(2, 20);
    let doc = match c.below(3) {
        0 => format!("Round {x} down to the nearest multiple of {m}."),
        1 => format!("Return the largest multiple of {m} that is less than or equal to {x}."),
        _ => format!("Snap the integer {x} down onto a grid with step {m}."),
    };
    let mut inputs = c.ints(4, 0, 200);
    inputs.extend([0, m, m - 1, -1, -(m + 1)]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: format!("    return ({x} // {m}) * {m}\n"),
        cases: inputs
            .into_iter()
            .map(|v| case1(v, floordiv(v, m) * m))
            .collect(),
    }
}

pub(crate) fn distance_from(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "distance_from",
        "gap_to",
        "how_far",
        "abs_diff_to",
        "offset_from",
        "dist_to_target",
        "delta_from",
        "away_from",
    ]);
    let x = c.pick(INT_PARAMS);
    let t = c.konst_nz(-30, 30);
    let doc = match c.below(3) {
        0 => format!("Return how far {x} is from {t}, as a non-negative number."),
        1 => format!("Return the absolute difference between {x} and {t}."),
        _ => format!("Compute the distance on the number line between {x} and the point {t}."),
    };
    let mut inputs = c.ints(4, -50, 50);
    inputs.extend([t, 0, t - 1, t + 1, -t]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: format!("    return abs({x}{})\n", signed(-t)),
        cases: inputs
            .into_iter()
            .map(|v| case1(v, (v - t).abs()))
            .collect(),
    }
}
