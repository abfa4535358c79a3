//! Outputs that appear whole or not at all: files are written under a temporary name beside their
//! final place and renamed when complete; a failure (or a panic) removes what was begun.

use crate::error::{Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A file being written under a temporary name; [`AtomicFile::commit`] renames it into place.
/// Dropped without a commit, the temporary file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Starts writing `dest`: creates `.<name>.tmp-<pid>` beside it and returns the open file.
    pub fn create(dest: &Path) -> Result<(Self, File)> {
        let name = dest
            .file_name()
            .ok_or_else(|| Error::Input(format!("{}: not a file path", dest.display())))?;
        let tmp = dest.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok((
            AtomicFile {
                tmp,
                dest: dest.to_path_buf(),
                committed: false,
            },
            file,
        ))
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the finished temporary file to its final name (atomic on one file system).
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// An output folder: created when missing, and removed again on failure if this run created it
/// and nothing else was put there.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    created: bool,
    kept: bool,
}

impl OutputDir {
    /// Makes sure `path` exists as a folder.
    pub fn open(path: &Path) -> Result<Self> {
        if path.exists() && !path.is_dir() {
            return Err(Error::Input(format!(
                "{}: exists and is not a folder; give --out a folder path",
                path.display()
            )));
        }
        let created = !path.exists();
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        Ok(OutputDir {
            path: path.to_path_buf(),
            created,
            kept: false,
        })
    }

    /// A path inside the folder.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Marks the run a success: the folder stays.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if self.created && !self.kept {
            // Only an empty folder is removed: `remove_dir` refuses anything else.
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// Commits several atomic files together: all are renamed only after every one was written.
pub fn commit_all(files: Vec<AtomicFile>) -> Result<()> {
    for f in files {
        f.commit()?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `dest`, atomically.
pub fn write_json(dest: &Path, value: &impl serde::Serialize) -> Result<()> {
    let (file, mut handle) = AtomicFile::create(dest)?;
    serde_json::to_writer_pretty(&mut handle, value)
        .map_err(|e| Error::Other(format!("{}: {e}", dest.display())))?;
    drop(handle);
    file.commit()
}
