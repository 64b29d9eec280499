//! Devices: a binary built without a GPU backend refuses `train.device` / `--device` for it in
//! one line naming the cargo feature (and what the backend needs); an unknown device is named.

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
