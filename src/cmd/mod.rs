pub mod build;
pub mod data;
pub mod eval;
pub mod export;
pub mod generate;
pub mod recipe;
pub mod reward;
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

/// Threads per core at most, for `--threads` and `train.threads`.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// Sizes the global rayon pool: `threads` = 0 or `None` keeps one thread per core. `what` names
/// the flag or recipe key in the message when the count is refused.
pub fn set_threads(threads: Option<usize>, what: &str) -> anyhow::Result<()> {
    let Some(t) = threads.filter(|&t| t > 0) else {
        return Ok(());
    };
    anvil_models::memory::check_per_core(what, t, MAX_THREADS_PER_CORE)
        .map_err(anyhow::Error::msg)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build_global()
        .map_err(|e| anyhow::anyhow!("{what} = {t}: starting the threads failed: {e}"))
}

/// The folder an output path will be written in, which must already exist: a typo'd `--out`
/// must not create a tree of folders (under `/`, say) before failing or succeeding somewhere
/// unexpected.
pub fn parent_folder(out: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !parent.is_dir() {
        anyhow::bail!(
            "{}: no such folder (for the output {})",
            parent.display(),
            out.display()
        );
    }
    Ok(parent)
}

/// `--device`: where a command runs its model.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Where the model runs: cpu, wgpu or cuda (the GPU backends need their cargo feature and a
    /// driver; docs/gpu.md).
    #[arg(long, default_value = "cpu")]
    pub device: anvil_models::device::DeviceKind,
}

impl DeviceArgs {
    pub fn device(&self) -> anyhow::Result<burn::tensor::Device> {
        anvil_models::device::select(self.device).map_err(|e| anyhow::anyhow!("--device: {e}"))
    }
}
