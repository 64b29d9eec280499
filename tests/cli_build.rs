//! `anvil build` end to end with a tiny trained denoiser: a plan becomes a patch that `git apply
//! --check` accepts (Python, Rust, JavaScript and Go files), a JSONL batch goes on past a failing plan (its
//! patch empty, its JSON saying why) and exits non-zero, the fallback writes exactly the spans
//! whose regeneration does not parse, and `--apply` writes the file only under `--max-risk`.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const RUN: &str = r#"[train]
seed = 1
max_steps = 4
batch_size = 4

[optim]
lr = 1e-2

[schedule]
warmup_steps = 0

[eval]
every = 0

[checkpoint]
every = 4
"#;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn git(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(repo)
        .args(args)
        .output()
        .expect("git runs")
}

const PY: &str = "import os\n\n\ndef area(w, h):\n    \"\"\"Area of a rectangle.\"\"\"\n    return w * h\n\n\nclass Shape:\n    def name(self):\n        return \"shape\"\n";
const RS: &str = "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\nfn main() {\n    println!(\"{}\", add(1, 2));\n}\n";
const JS: &str = "export function add(a, b) {\n  return a + b;\n}\n\nclass Box {\n  size() {\n    return 1;\n  }\n}\n";
const GO: &str = "package geo\n\nfunc Area(w, h int) int {\n\treturn w * h\n}\n\ntype Sq struct{ s int }\n\nfunc (q *Sq) Side() int {\n\treturn q.s\n}\n";

#[test]
fn plans_become_patches_that_apply() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), RUN);
    ok(anvil(&[
        "train",
        "run",
        p(&recipe),
        "model.arch=\"diffusion\"",
        "output.name=d",
    ]));
    let denoiser = dir.path().join("runs/d");
    let ar_recipe = tiny_recipe(&dir.path().join("ar"), RUN);
    ok(anvil(&["train", "run", p(&ar_recipe), "output.name=ar"]));
    let ar = dir.path().join("ar/runs/ar");

    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("shapes.py"), PY).unwrap();
    std::fs::write(repo.join("main.rs"), RS).unwrap();
    std::fs::write(repo.join("box.js"), JS).unwrap();
    std::fs::write(repo.join("geo.go"), GO).unwrap();
    assert!(git(&repo, &["init", "-q"]).status.success());

    // JavaScript and Go too: every patch applies.
    let mut checked = 0;
    for (file, targets) in [
        ("box.js", ["add", "Box.size"]),
        ("geo.go", ["Area", "Sq.Side"]),
    ] {
        let out = dir.path().join(format!("out-{file}"));
        let path = repo.join(file);
        let mut args = vec![
            "build",
            "--checkpoint",
            p(&denoiser),
            "--file",
            p(&path),
            "--intent",
            "keep it",
            "--out",
            p(&out),
            "--root",
            p(&repo),
            "--steps",
            "4",
            "--target",
        ];
        args.extend_from_slice(&targets);
        ok(anvil(&args));
        let patch = out.join(format!("000-{file}.patch"));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("000-{file}.json"))).unwrap())
                .unwrap();
        assert_eq!(v["spans"].as_array().unwrap().len(), 2, "{v}");
        if !std::fs::read_to_string(&patch).unwrap().is_empty() {
            let check = git(&repo, &["apply", "--check", p(&patch)]);
            assert!(
                check.status.success(),
                "{file}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
            checked += 1;
        }
    }
    // The untrained denoiser rewrites something: patches were really checked, not all empty.
    assert!(checked > 0, "every JavaScript and Go patch was empty");

    // One plan on the command line: a Python function's body.
    let out = dir.path().join("out1");
    let o = ok(anvil(&[
        "build",
        "--checkpoint",
        p(&denoiser),
        "--file",
        p(&repo.join("shapes.py")),
        "--target",
        "area",
        "--intent",
        "return the area as an int",
        "--out",
        p(&out),
        "--root",
        p(&repo),
        "--steps",
        "4",
    ]));
    assert!(stdout(&o).contains("plan 0: "), "{}", stdout(&o));
    let patch = out.join("000-shapes.py.patch");
    let diff = std::fs::read_to_string(&patch).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("000-shapes.py.json")).unwrap()).unwrap();
    assert_eq!(v["spans"][0]["target"], "area", "{v}");
    assert_eq!(v["spans"][0]["path"], "diffusion", "{v}");
    assert_eq!(v["steps"], 4);
    assert!(v["timestamp"].as_str().unwrap().ends_with("UTC"), "{v}");
    let risk = v["risk"]["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&risk), "{v}");
    if !diff.is_empty() {
        assert!(
            diff.starts_with("--- a/shapes.py\n+++ b/shapes.py\n"),
            "{diff}"
        );
        let check = git(&repo, &["apply", "--check", p(&patch)]);
        assert!(
            check.status.success(),
            "{}\n{diff}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // The docstring and signature are kept: only the body's lines change.
    assert!(
        !diff.contains("-def area") && !diff.contains("-    \"\"\"Area"),
        "{diff}"
    );

    // A batch: the highest priority first, a failing plan in the middle, the fallback on.
    let plans = dir.path().join("plans.jsonl");
    let line = |file: &str, targets: &[&str], prio: i64| {
        serde_json::json!({"file": repo.join(file), "targets": targets, "intent": "simplify",
                           "priority": prio})
        .to_string()
    };
    std::fs::write(
        &plans,
        [
            line("main.rs", &["add"], 1),
            line("shapes.py", &["missing"], 5),
            line("shapes.py", &["Shape.name", "area"], 3),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = dir.path().join("out2");
    let o = anvil(&[
        "build",
        "--checkpoint",
        p(&denoiser),
        "--fallback",
        p(&ar),
        "--plans",
        p(&plans),
        "--out",
        p(&out),
        "--root",
        p(&repo),
        "--steps",
        "4",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("1 of 3 plans failed"), "{}", stderr(&o));
    let reports: Vec<serde_json::Value> = std::fs::read_to_string(out.join("builds.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 3);
    assert!(
        reports[0]["error"]
            .as_str()
            .unwrap()
            .contains("no definition named `missing`")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("000-shapes.py.patch")).unwrap(),
        ""
    );
    assert_eq!(reports[1]["plan"]["targets"][0], "Shape.name");
    assert_eq!(reports[2]["language"], "rust");
    for (k, r) in reports.iter().enumerate().skip(1) {
        for s in r["spans"].as_array().unwrap() {
            // The fallback wrote the span exactly when the denoiser's text did not parse.
            assert_eq!(
                s["path"] == "fallback",
                !s["diffusion_valid"].as_bool().unwrap(),
                "{r}"
            );
        }
        let stem = if k == 1 {
            "001-shapes.py"
        } else {
            "002-main.rs"
        };
        let patch = out.join(format!("{stem}.patch"));
        if !std::fs::read_to_string(&patch).unwrap().is_empty() {
            let check = git(&repo, &["apply", "--check", p(&patch)]);
            assert!(
                check.status.success(),
                "{stem}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }

    // --apply: refused at --max-risk 0 (a public body changed), written at 1.
    let build = |max_risk: &str, out: &str| {
        anvil(&[
            "build",
            "--checkpoint",
            p(&denoiser),
            "--file",
            p(&repo.join("main.rs")),
            "--target",
            "add",
            "--intent",
            "add",
            "--out",
            p(&dir.path().join(out)),
            "--root",
            p(&repo),
            "--steps",
            "4",
            "--apply",
            "--max-risk",
            max_risk,
        ])
    };
    let o = build("0", "out3");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not applied"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(repo.join("main.rs")).unwrap(), RS);
    ok(build("1", "out4"));
    let patch = dir.path().join("out4/000-main.rs.patch");
    let applied = std::fs::read_to_string(repo.join("main.rs")).unwrap();
    // The written file is what the patch makes of the original.
    std::fs::write(repo.join("main.rs"), RS).unwrap();
    assert!(git(&repo, &["apply", p(&patch)]).status.success());
    assert_eq!(
        std::fs::read_to_string(repo.join("main.rs")).unwrap(),
        applied
    );

    // Bad input: one line.
    let e = one_line_error(&anvil(&[
        "build",
        "--checkpoint",
        p(&ar),
        "--file",
        p(&repo.join("main.rs")),
        "--target",
        "add",
        "--intent",
        "x",
        "--out",
        p(&dir.path().join("o5")),
    ]));
    assert!(e.contains("not a diffusion denoiser"), "{e}");
    std::fs::write(&plans, "{\"file\": 3}\n").unwrap();
    let e = one_line_error(&anvil(&[
        "build",
        "--checkpoint",
        p(&denoiser),
        "--plans",
        p(&plans),
        "--out",
        p(&dir.path().join("o6")),
    ]));
    assert!(e.contains("plans.jsonl:1"), "{e}");
}
