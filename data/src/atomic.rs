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

/// Create `dir` as a fresh output directory. An existing non-empty directory is refused
/// (unless `overwrite`), so a run never mixes its shards with another run's.
pub fn create_out_dir(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.exists() {
        let non_empty = fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .next()
            .is_some();
        if non_empty && !overwrite {
            return Err(DataError::invalid(
                dir,
                "output directory exists and is not empty (pass --overwrite to replace it)",
            ));
        }
        if non_empty {
            fs::remove_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
    }
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))
}
