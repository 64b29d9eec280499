//! The text `anvil runs list | show | compare` print.

use crate::error::Result;
use crate::folder::{Metrics, RunFolder, Status};
use crate::system::{self, format_duration, format_utc};
use std::collections::BTreeSet;

pub const VAL_LOSS: &str = "val/loss";
pub const PASS_AT_1: &str = "eval/pass@1";

/// A metric value as people read it: integers plainly, ordinary magnitudes to 4 decimals,
/// the rest in scientific notation.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        format!("{}", v as i64)
    } else if (1e-3..1e6).contains(&a) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// Columns padded to their widest cell; `right` lists the columns aligned right (numbers).
pub fn table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let n = headers.len();
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
    }
    out
}

fn duration(run: &RunFolder, status: Status, m: &Metrics) -> String {
    let end = match (run.meta.end_time, status) {
        (Some(e), _) => e,
        (None, Status::Running) => system::now_ms(),
        // Killed: the last metric written is the best guess of when it died.
        (None, _) => match m.series.values().flatten().map(|p| p.timestamp).max() {
            Some(t) => {
                return format!(
                    "≥{}",
                    format_duration(t.saturating_sub(run.meta.start_time))
                );
            }
            None => return "-".into(),
        },
    };
    format_duration(end.saturating_sub(run.meta.start_time))
}

fn recipe_name(run: &RunFolder) -> String {
    match &run.meta.recipe {
        Some(r) => std::path::Path::new(r)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.clone()),
        None => "-".into(),
    }
}

/// `anvil runs list`.
pub fn list(runs: &[RunFolder]) -> Result<String> {
    let mut rows = Vec::new();
    for r in runs {
        let m = r.metrics()?;
        let status = r.meta.effective_status();
        rows.push(vec![
            r.meta.name.clone(),
            r.meta.kind.to_string(),
            recipe_name(r),
            status.to_string(),
            m.max_step().map(|s| s.to_string()).unwrap_or("-".into()),
            m.min(VAL_LOSS).map(fmt_value).unwrap_or("-".into()),
            m.last(PASS_AT_1)
                .map(|p| fmt_value(p.value))
                .unwrap_or("-".into()),
            format_utc(r.meta.start_time),
            duration(r, status, &m),
        ]);
    }
    Ok(table(
        &[
            "run",
            "kind",
            "recipe",
            "status",
            "steps",
            "best val/loss",
            "pass@1",
            "started (UTC)",
            "duration",
        ],
        &rows,
        &[4, 5, 6, 8],
    ))
}

fn metrics_table(m: &Metrics) -> String {
    let rows: Vec<Vec<String>> = m
        .series
        .iter()
        .map(|(k, s)| {
            let finite: Vec<f64> = s
                .iter()
                .map(|p| p.value)
                .filter(|v| v.is_finite())
                .collect();
            let last = s.last().expect("series are never empty");
            vec![
                k.clone(),
                s.len().to_string(),
                last.step.to_string(),
                fmt_value(last.value),
                finite
                    .iter()
                    .copied()
                    .reduce(f64::min)
                    .map(fmt_value)
                    .unwrap_or("-".into()),
                finite
                    .iter()
                    .copied()
                    .reduce(f64::max)
                    .map(fmt_value)
                    .unwrap_or("-".into()),
            ]
        })
        .collect();
    table(
        &["metric", "points", "last step", "last", "min", "max"],
        &rows,
        &[1, 2, 3, 4, 5],
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// `anvil runs show`.
pub fn show(r: &RunFolder) -> Result<String> {
    let m = r.metrics()?;
    let status = r.meta.effective_status();
    let mut head: Vec<(&str, String)> = vec![
        ("run", r.meta.name.clone()),
        ("folder", r.dir.display().to_string()),
        ("kind", r.meta.kind.to_string()),
        ("recipe", r.meta.recipe.clone().unwrap_or("-".into())),
        (
            "status",
            if status != r.meta.status {
                format!(
                    "{status} (run.json says {}; its process is gone)",
                    r.meta.status
                )
            } else {
                status.to_string()
            },
        ),
        ("started", format!("{} UTC", format_utc(r.meta.start_time))),
        ("duration", duration(r, status, &m)),
    ];
    if r.meta.attempts.len() > 1 {
        head.push(("resumed", format!("{}×", r.meta.attempts.len() - 1)));
    }
    if let Some(s) = &r.mlflow {
        let mut v = format!(
            "{} experiment {:?}, run {}, {} metric lines sent",
            s.uri,
            s.experiment,
            s.run_id.as_deref().unwrap_or("(not created yet)"),
            s.metrics_synced
        );
        if let Some(e) = &s.last_error {
            v.push_str(&format!("; last error: {e}"));
        }
        head.push(("mlflow", v));
    }
    let mut out = String::new();
    let kw = head.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &head {
        out.push_str(&format!("{k:kw$}  {v}\n"));
    }
    let kv = |title: &str, map: Vec<(&str, &str)>| -> String {
        if map.is_empty() {
            return String::new();
        }
        let rows: Vec<Vec<String>> = map
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()])
            .collect();
        format!(
            "\n{title}\n{}",
            indent(&table(&["key", "value"], &rows, &[]))
        )
    };
    let tags: Vec<(&str, &str)> = r
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with(crate::folder::REF_TAG_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    out.push_str(&kv("tags", tags));
    out.push_str(&kv(
        &format!("params ({})", r.params.len()),
        r.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    ));
    if !m.series.is_empty() {
        out.push_str(&format!("\nmetrics\n{}", indent(&metrics_table(&m))));
    }
    if m.bad_lines > 0 {
        out.push_str(&format!(
            "  ({} unreadable lines in metrics.jsonl, likely torn by a kill)\n",
            m.bad_lines
        ));
    }
    let arts = r.artifacts()?;
    if !arts.is_empty() {
        let rows: Vec<Vec<String>> = arts
            .iter()
            .map(|(p, n)| vec![p.clone(), format!("{n} B")])
            .collect();
        out.push_str(&format!(
            "\nartifacts\n{}",
            indent(&table(&["file", "size"], &rows, &[1]))
        ));
    }
    out.push_str(&kv("references", r.references()));
    Ok(out)
}

/// `anvil runs compare`: params that differ, then each metric's final value side by side.
pub fn compare(runs: &[RunFolder]) -> Result<String> {
    let names: Vec<&str> = runs.iter().map(|r| r.meta.name.as_str()).collect();
    let mut header = vec!["param"];
    header.extend(&names);
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.params.keys()).collect();
    let mut differ = Vec::new();
    let mut same = 0;
    for k in &keys {
        let vals: Vec<Option<&String>> = runs.iter().map(|r| r.params.get(*k)).collect();
        if vals.windows(2).all(|w| w[0] == w[1]) {
            same += 1;
            continue;
        }
        let mut row = vec![k.to_string()];
        row.extend(vals.iter().map(|v| v.cloned().unwrap_or("-".into())));
        differ.push(row);
    }
    let mut out = String::new();
    if differ.is_empty() {
        out.push_str(&format!("params: all {same} equal\n"));
    } else {
        out.push_str(&format!(
            "params that differ ({} differ, {same} equal)\n",
            differ.len()
        ));
        out.push_str(&indent(&table(&header, &differ, &[])));
    }
    let metrics: Vec<Metrics> = runs.iter().map(|r| r.metrics()).collect::<Result<_>>()?;
    let mkeys: BTreeSet<&String> = metrics.iter().flat_map(|m| m.series.keys()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = vec!["status".to_string()];
    row.extend(runs.iter().map(|r| r.meta.effective_status().to_string()));
    rows.push(row);
    let mut row = vec!["steps".to_string()];
    row.extend(
        metrics
            .iter()
            .map(|m| m.max_step().map(|s| s.to_string()).unwrap_or("-".into())),
    );
    rows.push(row);
    if metrics.iter().any(|m| m.series.contains_key(VAL_LOSS)) {
        let mut row = vec![format!("{VAL_LOSS} (best)")];
        row.extend(
            metrics
                .iter()
                .map(|m| m.min(VAL_LOSS).map(fmt_value).unwrap_or("-".into())),
        );
        rows.push(row);
    }
    for k in mkeys {
        let mut row = vec![k.clone()];
        row.extend(
            metrics
                .iter()
                .map(|m| m.last(k).map(|p| fmt_value(p.value)).unwrap_or("-".into())),
        );
        rows.push(row);
    }
    let mut header = vec!["final metric"];
    header.extend(&names);
    let right: Vec<usize> = (1..=names.len()).collect();
    out.push('\n');
    out.push_str(&table(&header, &rows, &right));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_well() {
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(2.345678), "2.3457");
        assert_eq!(fmt_value(0.0001234), "1.234e-4");
        assert_eq!(fmt_value(f64::NAN), "NaN");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["a", "n"],
            &[
                vec!["xx".into(), "1".into()],
                vec!["y".into(), "100".into()],
            ],
            &[1],
        );
        assert_eq!(t, "a     n\nxx    1\ny   100\n");
    }
}
