//! One build at a time per artifact folder ([`BuildLock`]), and the host name and process id
//! that temporary build folders carry, so that `prune` only removes this host's dead builds.

use crate::artifacts::utc_now;
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::Path;

/// This machine's host name as it appears in temporary folder names (characters other than
/// letters, digits, `.`, `_` and `-` replaced by `_`).
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The lock file of an artifact folder.
pub const LOCK: &str = ".build.lock";

/// An exclusive lock on an artifact folder for one build's lifetime: a second build on the
/// same folder (an overlapping cron job) stops at once with a message naming the holder. The
/// lock is the operating system's (`flock`): it is released when the holder exits or is killed,
/// even by SIGKILL, so a crash never leaves the folder locked. (On network file systems the lock
/// is only as good as the file system's `flock`.)
#[derive(Debug)]
pub struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    /// Takes the lock of `root` (created when missing), or fails with a one-line
    /// [`Error::Input`] naming the running build.
    pub fn acquire(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let path = root.join(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Input(format!(
                    "{}: another build is running on this artifact folder ({}); this one \
                     stops without changing anything",
                    root.display(),
                    if holder.is_empty() {
                        "holder unknown"
                    } else {
                        holder
                    }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let (_, iso) = utc_now();
        let who = format!(
            "pid {} on host {} since {iso}",
            std::process::id(),
            host_name()
        );
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        file.write_all(who.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        Ok(BuildLock { _file: file })
    }
}

/// The parts of a temporary build folder's name: (pid, host); `None` host for folders named
/// before host names were added (`.tmp-<pid>-<time>`, this host's).
pub(crate) fn temp_owner(name: &str) -> Option<(u32, Option<String>)> {
    let rest = name.strip_prefix(".tmp-")?;
    let mut it = rest.splitn(3, '-');
    let first = it.next()?;
    let second = it.next()?;
    if first.contains('T') {
        // .tmp-<time>-<pid>-<host>
        Some((second.parse().ok()?, it.next().map(str::to_string)))
    } else {
        Some((first.parse().ok()?, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_folder_names_carry_pid_and_host() {
        assert_eq!(
            temp_owner(".tmp-20261129T051200Z-4242-build-host-7"),
            Some((4242, Some("build-host-7".to_string())))
        );
        assert_eq!(temp_owner(".tmp-4242-20261129T051200Z"), Some((4242, None)));
        assert_eq!(temp_owner(".tmp-x"), None);
        assert!(!host_name().is_empty());
    }

    #[test]
    fn a_second_lock_on_one_folder_is_refused_until_the_first_is_dropped() {
        let root = std::env::temp_dir().join(format!("recpipe-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let first = BuildLock::acquire(&root).expect("first");
        let err = BuildLock::acquire(&root).expect_err("second").to_string();
        assert!(err.contains("another build is running"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        BuildLock::acquire(&root).expect("free again");
        let _ = std::fs::remove_dir_all(&root);
    }
}
