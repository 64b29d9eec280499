//! Unified diffs of span replacements: the Builder knows exactly which bytes it rewrote, so the
//! changed lines are the lines those bytes touch (minus lines that came out the same), and the
//! hunks follow with three lines of context, as `diff -u` and `git apply` expect.

use std::ops::Range;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// `text` with each `(bytes, replacement)` applied (sorted, non-overlapping).
pub fn splice(text: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (r, new) in edits {
        out.push_str(&text[at..r.start]);
        out.push_str(new);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The unified diff (`--- a/path`, `+++ b/path`) that turns `old` into `splice(old, edits)`;
/// empty when nothing changes.
pub fn unified(path: &str, old: &str, edits: &[(Range<usize>, String)]) -> String {
    let new = splice(old, edits);
    let (a, b) = (lines(old), lines(&new));
    // Changed regions as line ranges of old and new.
    let mut regions: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    let mut delta: isize = 0;
    for (r, rep) in edits {
        let la = line_of(old, r.start);
        let lb = if r.end > r.start {
            line_of(old, r.end - 1) + 1
        } else {
            la + 1
        }
        .min(a.len().max(1));
        let (sb, eb) = (line_start(&a, la), line_start(&a, lb));
        let grow = rep.len() as isize - r.len() as isize;
        let (ns, ne) = (
            (sb as isize + delta) as usize,
            (eb as isize + delta + grow) as usize,
        );
        let (nla, nlb) = (
            line_of(&new, ns),
            if ne > ns {
                line_of(&new, ne - 1) + 1
            } else {
                line_of(&new, ns)
            },
        );
        delta += grow;
        match regions.last_mut() {
            // Two edits on one line make one region.
            Some((o, n)) if la < o.end => {
                o.end = o.end.max(lb);
                n.end = n.end.max(nlb);
            }
            _ => regions.push((la..lb, nla..nlb)),
        }
    }
    // Lines that came out the same at either end of a region are context, not changes.
    for (o, n) in &mut regions {
        while o.start < o.end && n.start < n.end && a[o.start] == b[n.start] {
            o.start += 1;
            n.start += 1;
        }
        while o.start < o.end && n.start < n.end && a[o.end - 1] == b[n.end - 1] {
            o.end -= 1;
            n.end -= 1;
        }
    }
    regions.retain(|(o, n)| !o.is_empty() || !n.is_empty());
    if regions.is_empty() {
        return String::new();
    }
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    let mut i = 0;
    while i < regions.len() {
        // A hunk: regions whose contexts touch.
        let mut j = i;
        while j + 1 < regions.len() && regions[j + 1].0.start <= regions[j].0.end + 2 * CONTEXT {
            j += 1;
        }
        let o0 = regions[i].0.start.saturating_sub(CONTEXT);
        let o1 = (regions[j].0.end + CONTEXT).min(a.len());
        // The same context before the first region in new lines.
        let before = regions[i].0.start - o0;
        let n0 = regions[i].1.start - before;
        let after = o1 - regions[j].0.end;
        let n1 = regions[j].1.end + after;
        let header = |s: usize, len: usize| match len {
            0 => format!("{s},0"),
            1 => format!("{}", s + 1),
            _ => format!("{},{len}", s + 1),
        };
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            header(o0, o1 - o0),
            header(n0, n1 - n0)
        ));
        let mut at = o0;
        for (o, n) in &regions[i..=j] {
            for line in &a[at..o.start] {
                push(&mut out, ' ', line);
            }
            for line in &a[o.clone()] {
                push(&mut out, '-', line);
            }
            for line in &b[n.clone()] {
                push(&mut out, '+', line);
            }
            at = o.end;
        }
        for line in &a[at..o1] {
            push(&mut out, ' ', line);
        }
        i = j + 1;
    }
    out
}

fn push(out: &mut String, sign: char, line: &str) {
    out.push(sign);
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// The 0-based line holding byte `b` (the last line for the end of the text).
fn line_of(text: &str, b: usize) -> usize {
    text.as_bytes()[..b.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

/// The byte where line `l` of `lines` starts (the text's end past the last line).
fn line_start(lines: &[&str], l: usize) -> usize {
    lines[..l.min(lines.len())].iter().map(|s| s.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_with_context_and_merged_neighbours() {
        let old: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let at = |l: usize| old.find(&format!("line {l}\n")).unwrap();
        // Replace line 5's text, and lines 8-9 by three lines; line 18 removed.
        let edits = vec![
            (at(5)..at(5) + 6, "LINE 5".to_string()),
            (at(8)..at(10), "a\nb\nc\n".to_string()),
            (at(18)..at(19), String::new()),
        ];
        let d = unified("f.txt", &old, &edits);
        let want = "--- a/f.txt\n+++ b/f.txt\n@@ -2,11 +2,12 @@\n line 2\n line 3\n line 4\n-line 5\n+LINE 5\n line 6\n line 7\n-line 8\n-line 9\n+a\n+b\n+c\n line 10\n line 11\n line 12\n@@ -15,6 +16,5 @@\n line 15\n line 16\n line 17\n-line 18\n line 19\n line 20\n";
        assert_eq!(d, want);
        assert_eq!(
            unified("f.txt", &old, &[(at(3)..at(4), "line 3\n".into())]),
            ""
        );
    }

    #[test]
    fn no_newline_at_end_is_marked() {
        let old = "a\nb";
        let d = unified("f", old, &[(2..3, "c".into())]);
        assert_eq!(
            d,
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"
        );
    }
}
