//! Finding the real Python interpreter once (pyenv/asdf shims are shell scripts that cost
//! ~130 ms per launch) and the directories its installation needs to be visible.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::SandboxError;

#[derive(Clone, Debug)]
pub struct PythonInfo {
    /// The interpreter binary, symlinks resolved.
    pub executable: PathBuf,
    /// Installation directories (prefixes, the binary's directory), canonical, deduplicated.
    pub dirs: Vec<PathBuf>,
}

static PYTHON: OnceLock<Result<PythonInfo, String>> = OnceLock::new();

const PROBE: &str = "import sys\nfor p in (sys.executable, sys.prefix, sys.exec_prefix, \
                     sys.base_prefix, sys.base_exec_prefix): print(p)";

/// Asks `command` (e.g. `python3`, resolved through PATH) where it really lives.
pub fn probe_python(command: &str) -> Result<PythonInfo, SandboxError> {
    let out = Command::new(command)
        .args(["-I", "-c", PROBE])
        .output()
        .map_err(|e| SandboxError::Python(format!("cannot run `{command}`: {e}")))?;
    if !out.status.success() {
        return Err(SandboxError::Python(format!(
            "`{command} -I -c ...` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let exe = lines.next().unwrap_or("").trim();
    if exe.is_empty() {
        return Err(SandboxError::Python(format!(
            "`{command}` reports no sys.executable"
        )));
    }
    let executable = std::fs::canonicalize(exe)
        .map_err(|e| SandboxError::Python(format!("realpath({exe}): {e}")))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        if let Ok(c) = std::fs::canonicalize(p)
            && c.is_dir()
            && c != Path::new("/")
            && !dirs.contains(&c)
        {
            dirs.push(c);
        }
    };
    for l in lines {
        if !l.trim().is_empty() {
            add(Path::new(l.trim()));
        }
    }
    if let Some(parent) = executable.parent() {
        add(parent);
    }
    Ok(PythonInfo { executable, dirs })
}

/// `python3` from PATH (or `$ANVIL_PYTHON`), resolved once per process.
pub fn python_info() -> Result<&'static PythonInfo, SandboxError> {
    PYTHON
        .get_or_init(|| {
            let cmd = std::env::var("ANVIL_PYTHON").unwrap_or_else(|_| "python3".to_string());
            probe_python(&cmd).map_err(|e| match e {
                SandboxError::Python(m) => m,
                other => other.to_string(),
            })
        })
        .as_ref()
        .map_err(|e| SandboxError::Python(e.clone()))
}

/// The real interpreter behind `python3`: `sys.executable` with symlinks resolved, computed once.
pub fn resolve_python() -> Result<PathBuf, SandboxError> {
    python_info().map(|i| i.executable.clone())
}
