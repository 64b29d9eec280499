//! Crash-safe output: everything is written to a `.tmp` sibling and renamed into place, so a
//! reader never sees a half-written file under its final name.

use crate::error::{DataError, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temp sibling a file is written to before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |w| w.write_all(bytes))
}

/// Stream into a temp file with `f`, then fsync and rename it to `path`.
pub fn write_with(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        f(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// Write JSON pretty-printed, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializable value");
    bytes.push(b'\n');
    write(path, &bytes)
}

/// Files whose presence marks a directory as an Anvil output that `--overwrite` may replace.
const OUTPUT_MARKERS: [&str; 3] = ["manifest.json", "tokens.json", "synth_manifest.json"];

/// An output directory built beside its destination (`<out>.<pid>.partial`) and moved into place
/// only by [`StagedDir::commit`], so readers never see a half-built one under the final name.
/// Dropped without commit, the staging directory is removed.
pub struct StagedDir {
    staging: PathBuf,
    dest: PathBuf,
    committed: bool,
}

fn absolute(p: &Path) -> PathBuf {
    // canonicalize needs the path to exist; an output usually does not yet.
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => absolute(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .join(name),
        _ => std::env::current_dir().unwrap_or_default().join(p),
    }
}

impl StagedDir {
    /// Check that `dest` may be written and create its staging directory. `dest` must not be the
    /// working directory or an ancestor of it, nor contain or equal any of `protect` (the inputs).
    /// An existing `dest` is replaced only with `overwrite`, and only if it is empty or an Anvil
    /// output: `--overwrite` never deletes a directory of someone else's files.
    pub fn new(dest: &Path, overwrite: bool, protect: &[&Path]) -> Result<StagedDir> {
        let abs = absolute(dest);
        let cwd = absolute(Path::new("."));
        if abs.parent().is_none() || cwd.starts_with(&abs) {
            return Err(DataError::invalid(
                dest,
                "refusing to write output over the current directory or one of its ancestors",
            ));
        }
        for p in protect {
            if absolute(p).starts_with(&abs) {
                return Err(DataError::invalid(
                    dest,
                    format!("output directory would replace the input {}", p.display()),
                ));
            }
        }
        if dest.exists() {
            if !dest.is_dir() {
                return Err(DataError::invalid(
                    dest,
                    "output path exists and is not a directory",
                ));
            }
            let entries: Vec<_> = fs::read_dir(dest)
                .map_err(|e| DataError::io(dest, e))?
                .flatten()
                .collect();
            if !entries.is_empty() {
                if !overwrite {
                    return Err(DataError::invalid(
                        dest,
                        "output directory exists and is not empty (pass --overwrite to replace it)",
                    ));
                }
                if !OUTPUT_MARKERS.iter().any(|m| dest.join(m).is_file()) {
                    return Err(DataError::invalid(
                        dest,
                        "not an Anvil output directory (no manifest); refusing to replace it",
                    ));
                }
            }
        }
        let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
        remove_stale_staging(&abs);
        let staging = tmp_path(&abs).with_extension("partial");
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
        }
        fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
        Ok(StagedDir {
            staging,
            dest: abs,
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Move the finished directory into place, replacing an old output (already vetted by `new`).
    pub fn commit(mut self) -> Result<()> {
        if self.dest.exists() {
            let old = tmp_path(&self.dest).with_extension("old");
            fs::rename(&self.dest, &old).map_err(|e| DataError::io(&self.dest, e))?;
            fs::rename(&self.staging, &self.dest).map_err(|e| DataError::io(&self.dest, e))?;
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.staging, &self.dest).map_err(|e| DataError::io(&self.dest, e))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Staging directories of killed runs: `<out>.<pid>.partial` whose process is gone. A live run's
/// staging directory is left alone.
fn remove_stale_staging(out: &Path) {
    let (Some(dir), Some(name)) = (out.parent(), out.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = fname
            .strip_prefix(&format!("{name}."))
            .and_then(|r| r.strip_suffix(".partial"))
        else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}
