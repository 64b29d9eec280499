//! Imports an HF Llama folder into Anvil and exports it again:
//! `cargo run -p anvil-models --example hf_roundtrip -- IN_DIR OUT_DIR`. Used with
//! `scripts/reference/check_hf_export.py` to check that transformers loads Anvil's export.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: hf_roundtrip IN_DIR OUT_DIR");
        std::process::exit(2);
    }
    let device = burn::tensor::Device::flex();
    let model = anvil_models::hf::import(args[1].as_ref(), &device).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    anvil_models::hf::export(&model, args[2].as_ref()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
}
