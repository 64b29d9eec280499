pub mod data;
pub mod eval;
pub mod export;
pub mod generate;
pub mod recipe;
pub mod runs;
pub mod serve;
pub mod tokenizer;
pub mod train;

/// The command line as typed, recorded in manifests so every artifact says how it was made.
pub fn command_line() -> Vec<String> {
    std::env::args().collect()
}

/// `\n`, `\t` and `\\` in a stop sequence typed on the command line, where real newlines are
/// awkward to give.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
