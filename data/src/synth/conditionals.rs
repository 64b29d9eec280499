//! Conditionals: piecewise functions, threshold classification, rule checks.

use super::task::{
    Ctx, INT_PARAMS, INT_TRIPLES, STR_PARAMS, Task, case1, case3, indent, plus_minus, py_str,
    signed,
};

/// Inputs straddling each threshold (t - 1, t) after a few random values around them.
fn around(c: &mut Ctx, thresholds: &[i64], spread: i64) -> Vec<i64> {
    let lo = thresholds.iter().min().expect("thresholds") - spread;
    let hi = thresholds.iter().max().expect("thresholds") + spread;
    let mut out = c.ints(3, lo, hi);
    for t in thresholds {
        out.extend([t - 1, *t]);
    }
    out
}

pub(crate) fn threshold_label(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "classify",
        "label_value",
        "bucket_name",
        "categorize",
        "grade_level",
        "rate_value",
        "tier_of",
        "describe_level",
    ]);
    let x = c.pick(INT_PARAMS);
    let (low, mid, high) = c.pick(&[
        ("low", "medium", "high"),
        ("cold", "warm", "hot"),
        ("small", "medium", "large"),
        ("bad", "ok", "good"),
        ("slow", "steady", "fast"),
        ("short", "average", "tall"),
        ("light", "moderate", "heavy"),
        ("poor", "fair", "great"),
    ]);
    let t1 = c.konst(-10, 20);
    let t2 = t1 + c.konst(2, 20);
    let doc = match c.below(2) {
        0 => format!(
            "Classify {x}: return '{low}' if it is below {t1}, '{mid}' if it is below {t2}, and '{high}' otherwise."
        ),
        _ => format!(
            "Return '{low}' for {x} < {t1}, '{mid}' for {t1} <= {x} < {t2}, and '{high}' for {x} >= {t2}."
        ),
    };
    let mut inputs = around(c, &[t1, t2], 15);
    inputs.push(0);
    let label = |v: i64| {
        if v < t1 {
            low
        } else if v < t2 {
            mid
        } else {
            high
        }
    };
    Task {
        name,
        params: vec![(x, "int")],
        ret: "str",
        doc,
        body: indent(&format!(
            "
if {x} < {t1}:
    return '{low}'
elif {x} < {t2}:
    return '{mid}'
else:
    return '{high}'
"
        )),
        cases: inputs.into_iter().map(|v| case1(v, label(v))).collect(),
    }
}

pub(crate) fn piecewise_linear(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "piecewise",
        "split_transform",
        "two_phase",
        "kinked_line",
        "adjust_by_region",
        "branch_value",
        "piecewise_value",
        "bent_line",
    ]);
    let x = c.pick(INT_PARAMS);
    let (a, b, t) = (c.konst(2, 9), c.konst_nz(-20, 20), c.konst(-10, 10));
    let doc = match c.below(2) {
        0 => format!(
            "If {x} is less than {t}, return {x} times {a}; otherwise return {x} {}.",
            plus_minus(b)
        ),
        _ => format!(
            "Return {a} * {x} when {x} < {t}, and {x}{} when {x} >= {t}.",
            signed(b)
        ),
    };
    let mut inputs = around(c, &[t], 20);
    inputs.extend([0, -25]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: format!(
            "    if {x} < {t}:\n        return {a} * {x}\n    return {x}{}\n",
            signed(b)
        ),
        cases: inputs
            .into_iter()
            .map(|v| case1(v, if v < t { a * v } else { v + b }))
            .collect(),
    }
}

pub(crate) fn clamp_value(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "clamp_value",
        "clamp",
        "bound",
        "limit",
        "restrict",
        "keep_in_range",
        "saturate",
        "fit_range",
    ]);
    let x = c.pick(INT_PARAMS);
    let lo = c.konst(-20, 10);
    let hi = lo + c.konst(2, 30);
    let doc = match c.below(2) {
        0 => format!(
            "Return {x} limited to the range [{lo}, {hi}]: values below {lo} become {lo}, values above {hi} become {hi}."
        ),
        _ => format!(
            "Clamp {x} so that the result is never smaller than {lo} and never larger than {hi}."
        ),
    };
    let inputs = around(c, &[lo, hi + 1], 20);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
if {x} < {lo}:
    return {lo}
if {x} > {hi}:
    return {hi}
return {x}
"
        )),
        cases: inputs
            .into_iter()
            .map(|v| case1(v, v.clamp(lo, hi)))
            .collect(),
    }
}

pub(crate) fn fizz_label(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "fizz_label",
        "say_number",
        "game_word",
        "chant",
        "label_number",
        "shout",
        "number_word",
        "call_out",
    ]);
    let x = c.pick(INT_PARAMS);
    let (wa, wb) = c.pick(&[
        ("Fizz", "Buzz"),
        ("Foo", "Bar"),
        ("Ping", "Pong"),
        ("Tick", "Tock"),
        ("Zig", "Zag"),
        ("Hip", "Hop"),
        ("Bim", "Bam"),
        ("Flip", "Flop"),
    ]);
    // Held-out constants are all multiples of 3, so only ask that b is not a multiple of a.
    let (a, b) = loop {
        let (a, b) = (c.konst(2, 7), c.konst(2, 13));
        if a < b && b % a != 0 {
            break (a, b);
        }
    };
    let both = format!("{wa}{wb}");
    let doc = format!(
        "Return '{both}' if {x} is divisible by both {a} and {b}, '{wa}' if only by {a}, '{wb}' if only by {b}, \
         and otherwise {x} converted to a string."
    );
    let mut inputs = c.ints(3, 1, 60);
    inputs.extend([a * b, a, b, 1, 0, -a]);
    let label = |v: i64| match (v % a == 0, v % b == 0) {
        (true, true) => both.clone(),
        (true, false) => wa.to_string(),
        (false, true) => wb.to_string(),
        (false, false) => v.to_string(),
    };
    Task {
        name,
        params: vec![(x, "int")],
        ret: "str",
        doc,
        body: indent(&format!(
            "
if {x} % {a} == 0 and {x} % {b} == 0:
    return {}
if {x} % {a} == 0:
    return {}
if {x} % {b} == 0:
    return {}
return str({x})
",
            py_str(&both),
            py_str(wa),
            py_str(wb)
        )),
        cases: inputs.into_iter().map(|v| case1(v, label(v))).collect(),
    }
}

pub(crate) fn median_of_three(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "median_of_three",
        "middle_value",
        "mid_of_three",
        "middle_of",
        "median3",
        "center_value",
        "middle_one",
        "median_value",
    ]);
    let (a, b, z) = c.pick(INT_TRIPLES);
    let doc = match c.below(2) {
        0 => format!(
            "Return the median of the three integers {a}, {b} and {z} (the middle one once sorted)."
        ),
        _ => format!(
            "Given {a}, {b} and {z}, return the value that is neither the smallest nor the largest."
        ),
    };
    let mut inputs: Vec<[i64; 3]> = (0..4)
        .map(|_| [c.int(-20, 20), c.int(-20, 20), c.int(-20, 20)])
        .collect();
    inputs.extend([[3, 3, 1], [-1, -5, -3], [0, 0, 0], [7, 1, 4]]);
    let median = |t: [i64; 3]| {
        let mut s = t;
        s.sort();
        s[1]
    };
    Task {
        name,
        params: vec![(a, "int"), (b, "int"), (z, "int")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
if {a} <= {b} <= {z} or {z} <= {b} <= {a}:
    return {b}
if {b} <= {a} <= {z} or {z} <= {a} <= {b}:
    return {a}
return {z}
"
        )),
        cases: inputs
            .into_iter()
            .map(|t| case3(t[0], t[1], t[2], median(t)))
            .collect(),
    }
}

pub(crate) fn divisible_but_not(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "is_special",
        "check_rule",
        "matches_rule",
        "is_selected",
        "passes_filter",
        "qualifies",
        "is_marked",
        "is_lucky",
    ]);
    let x = c.pick(INT_PARAMS);
    let a = c.konst(2, 7);
    let b = a * c.konst(2, 5);
    let doc = match c.below(2) {
        0 => format!("Return True if {x} is divisible by {a} but not by {b}, and False otherwise."),
        _ => format!(
            "Check the rule: {x} must be a multiple of {a} and must not be a multiple of {b}."
        ),
    };
    let mut inputs = c.ints(3, -50, 150);
    inputs.extend([a, b, 0, b + a, -a, 1]);
    Task {
        name,
        params: vec![(x, "int")],
        ret: "bool",
        doc,
        body: format!("    return {x} % {a} == 0 and {x} % {b} != 0\n"),
        cases: inputs
            .into_iter()
            .map(|v| case1(v, v % a == 0 && v % b != 0))
            .collect(),
    }
}

pub(crate) fn truncate_text(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "truncate_text",
        "shorten",
        "abbreviate",
        "clip_text",
        "ellipsize",
        "cut_text",
        "trim_to",
        "preview",
    ]);
    let s = c.pick(STR_PARAMS);
    let k = c.konst(3, 12);
    let tail = c.pick(&["...", "~", "..", "--", ">>", "+", "..!", "_"]);
    let doc = match c.below(2) {
        0 => format!(
            "If {s} has at most {k} characters return it unchanged; otherwise return its first {k} characters followed by '{tail}'."
        ),
        _ => format!(
            "Shorten {s} to {k} characters, marking a cut with '{tail}'. Strings that fit are returned as they are."
        ),
    };
    let mut inputs: Vec<String> = (0..4).map(|_| c.sentence(1, 4)).collect();
    inputs.extend([
        "abcdefghijklmnop"[..k as usize].to_string(),
        "abcdefghijklmnop"[..k as usize + 1].to_string(),
    ]);
    inputs.extend(["ab".to_string(), String::new()]);
    let cut = |t: &str| {
        if t.len() <= k as usize {
            t.to_string()
        } else {
            format!("{}{tail}", &t[..k as usize])
        }
    };
    Task {
        name,
        params: vec![(s, "str")],
        ret: "str",
        doc,
        body: format!(
            "    if len({s}) <= {k}:\n        return {s}\n    return {s}[:{k}] + {}\n",
            py_str(tail)
        ),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), cut(&t)))
            .collect(),
    }
}
