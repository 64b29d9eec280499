//! Devices: a binary built without a GPU backend refuses `train.device` / `--device` for it in
//! one line naming the cargo feature (and what the backend needs); an unknown device is named;
//! the CUDA build's preflight says what it lacks in one line.

mod common;
use common::*;

#[test]
fn missing_backends_are_one_line_naming_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(
        dir.path(),
        "[train]\nmax_steps = 1\nbatch_size = 2\n\n[schedule]\nwarmup_steps = 0\n",
    );
    let r = recipe.to_str().unwrap();
    if !cfg!(feature = "wgpu") {
        let e = one_line_error(&anvil(&["train", "run", r, "train.device=\"wgpu\""]));
        assert!(
            e.contains("train.device") && e.contains("--features wgpu"),
            "{e}"
        );
        assert!(e.contains("mesa-vulkan-drivers"), "{e}");
    }
    if !cfg!(feature = "cuda") {
        let ckpt = tiny_checkpoint(&dir.path().join("ckpt"), 300);
        let e = one_line_error(&anvil(&[
            "generate",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--prompt",
            "x",
            "--device",
            "cuda",
        ]));
        assert!(
            e.contains("--device") && e.contains("--features cuda"),
            "{e}"
        );
    }
    let e = one_line_error(&anvil(&["train", "run", r, "train.device=\"tpu\""]));
    assert!(e.contains("train.device") && e.contains("tpu"), "{e}");
    let o = anvil(&[
        "eval",
        "perplexity",
        "--checkpoint",
        "x",
        "--tokens",
        "y",
        "--device",
        "tpu",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("unknown device `tpu`"),
        "{}",
        stderr(&o)
    );
}

/// `scripts/build_cuda.sh --check`, the preflight of the CUDA build, in a HOME of its own and
/// probing a host that does not resolve (an offline machine): one line naming both files to
/// fetch and where they go; with them in place (or the bundle installed), ready.
#[test]
#[cfg(target_os = "linux")]
fn the_cuda_build_says_in_one_line_what_it_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let check = || {
        let o = std::process::Command::new("bash")
            .arg(repo_dir().join("scripts/build_cuda.sh"))
            .arg("--check")
            .env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env("ANVIL_LLVM_PROBE_HOST", "anvil-offline.invalid")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .output()
            .unwrap();
        (o.status.code(), stderr(&o))
    };
    let platform = match std::env::consts::ARCH {
        "aarch64" => "linux-AArch64",
        _ => "linux-x64",
    };
    let cache = home.path().join(".cache/tracel");
    let (archive, sums) = (
        cache.join(format!("tracel-llvm-23.1.0-4-{platform}.tar.xz")),
        cache.join(format!("tracel-llvm-23.1.0-4-{platform}.checksums.json")),
    );
    let (code, err) = check();
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: --features cuda"), "{err}");
    for needed in [
        format!("/v23.1.0-4/{platform}.tar.xz"),
        format!("/v23.1.0-4/{platform}.checksums.json"),
        archive.display().to_string(),
        sums.display().to_string(),
    ] {
        assert!(err.contains(&needed), "`{needed}` not in: {err}");
    }
    // The two files fetched elsewhere: the build goes offline.
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(&archive, b"xz").unwrap();
    std::fs::write(&sums, b"{}").unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("(offline)"), "{err}");
    // Or the bundle already installed.
    std::fs::remove_file(&archive).unwrap();
    let installed = home.path().join(".local/share/tracel/tracel-llvm-23.1.0-4");
    std::fs::create_dir_all(&installed).unwrap();
    std::fs::write(installed.join(".tracel-llvm-installed"), b"").unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("installed"), "{err}");
}
