pub mod data;
pub mod eval;
pub mod recipe;
pub mod runs;
pub mod serve;
pub mod tokenizer;
pub mod train;

/// The command line as typed, recorded in manifests so every artifact says how it was made.
pub fn command_line() -> Vec<String> {
    std::env::args().collect()
}
