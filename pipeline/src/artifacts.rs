//! The artifact folder (DESIGN.md): immutable version folders and a `CURRENT` pointer replaced by
//! rename, so a reader never sees a half-written version and a failed or killed build leaves the
//! live version serving.
//!
//! ```text
//! artifacts/
//!   CURRENT                  one line: the live version's folder name
//!   versions/<UTC time>/     manifest.json + every file it lists (size, sha256)
//!   versions/.tmp-<time>-<pid>-<host>   a build in progress (never taken for a version)
//!   .build.lock              held (flock) by the running build; says who holds it
//! ```

use crate::build_lock::temp_owner;
pub use crate::build_lock::{host_name, BuildLock, LOCK};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The pointer file's name.
pub const CURRENT: &str = "CURRENT";
/// The manifest's name inside a version.
pub const MANIFEST: &str = "manifest.json";

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Name inside the version folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// `manifest.json`: what a version was built from, how, how good it is, and every file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The version's folder name.
    pub version: String,
    /// recpipe's version that built it.
    pub recpipe: String,
    /// Creation time (UTC, ISO 8601).
    pub created: String,
    /// Inputs (paths, row counts).
    pub inputs: serde_json::Value,
    /// The configuration used.
    pub config: serde_json::Value,
    /// Every figure measured during the build.
    pub metrics: serde_json::Value,
    /// Every file of the version except the manifest itself.
    pub files: Vec<FileEntry>,
}

/// SHA-256 and size of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, format!("{:x}", h.finalize())))
}

/// A UTC time as `YYYYMMDDTHHMMSSZ` (a sortable folder name) and as ISO 8601.
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::calendar::civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn sync_dir(path: &Path) {
    if let Ok(d) = std::fs::File::open(path) {
        let _ = d.sync_all();
    }
}

/// A version being built in a temporary folder. Dropped without [`VersionBuilder::publish`],
/// the folder is removed; killed, it stays as `.tmp-*` and is never taken for a version.
#[derive(Debug)]
pub struct VersionBuilder {
    root: PathBuf,
    dir: PathBuf,
    published: bool,
}

impl VersionBuilder {
    /// Starts a version under `root` (created when missing).
    pub fn start(root: &Path) -> Result<Self> {
        let versions = root.join("versions");
        std::fs::create_dir_all(&versions).map_err(|e| Error::io(&versions, e))?;
        let (stamp, _) = utc_now();
        let dir = versions.join(format!(
            ".tmp-{stamp}-{}-{}",
            std::process::id(),
            host_name()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(VersionBuilder {
            root: root.to_path_buf(),
            dir,
            published: false,
        })
    }

    /// The folder to write the version's files into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lists and hashes every file, writes the manifest, renames the folder to its final UTC
    /// time name, then points `CURRENT` at it (by rename). Returns the version's name.
    pub fn publish(
        mut self,
        inputs: serde_json::Value,
        config: serde_json::Value,
        metrics: serde_json::Value,
    ) -> Result<Manifest> {
        let mut names = Vec::new();
        list_files(&self.dir, "", &mut names)?;
        names.retain(|n| n != MANIFEST);
        names.sort();
        let mut files = Vec::new();
        for name in names {
            let path = self.dir.join(&name);
            if let Ok(f) = std::fs::File::open(&path) {
                let _ = f.sync_all();
            }
            let (size, sha256) = hash_file(&path)?;
            files.push(FileEntry { name, size, sha256 });
        }
        let versions = self.root.join("versions");
        let (mut stamp, iso) = utc_now();
        let mut n = 1;
        while versions.join(&stamp).exists() {
            n += 1;
            stamp = format!("{}-{n}", utc_now().0);
        }
        let manifest = Manifest {
            version: stamp.clone(),
            recpipe: env!("CARGO_PKG_VERSION").to_string(),
            created: iso,
            inputs,
            config,
            metrics,
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Other(format!("manifest: {e}")))?;
        write_synced(&self.dir.join(MANIFEST), &json)?;
        sync_dir(&self.dir);
        let final_dir = versions.join(&stamp);
        std::fs::rename(&self.dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
        self.published = true;
        sync_dir(&versions);
        crate::progress::stage("renamed");
        set_current(&self.root, &stamp)?;
        Ok(manifest)
    }
}

impl Drop for VersionBuilder {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every file under `dir` (recursively), as paths relative to it with `/` separators; names
/// starting with `.` (temporary files) are skipped.
fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        if path.is_dir() {
            list_files(&path, &format!("{rel}/"), out)?;
        } else if path.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

/// Points `CURRENT` at version `name` by writing a temporary file and renaming it.
pub fn set_current(root: &Path, name: &str) -> Result<()> {
    let tmp = root.join(format!(".{CURRENT}.tmp-{}", std::process::id()));
    write_synced(&tmp, format!("{name}\n").as_bytes())?;
    let cur = root.join(CURRENT);
    std::fs::rename(&tmp, &cur).map_err(|e| Error::io(&cur, e))?;
    sync_dir(root);
    Ok(())
}

/// The live version's name, or `None` when nothing was published yet.
pub fn current_name(root: &Path) -> Result<Option<String>> {
    let cur = root.join(CURRENT);
    match std::fs::read_to_string(&cur) {
        Ok(s) => {
            let name = s.trim().to_string();
            if name.is_empty() || name.starts_with('.') || name.contains('/') {
                return Err(Error::input(
                    &cur,
                    format!("'{name}' is not a version name"),
                ));
            }
            Ok(Some(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&cur, e)),
    }
}

/// A published version, its manifest read and its files verified.
#[derive(Debug, Clone)]
pub struct Version {
    /// The version's folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Version {
    /// Opens version `name` under `root`; with `verify`, every file's size and SHA-256 must match
    /// the manifest (a flipped byte or a truncated file is an error naming the file).
    pub fn open(root: &Path, name: &str, verify: bool) -> Result<Self> {
        let dir = root.join("versions").join(name);
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read(&mpath)
            .map_err(|e| Error::input(&mpath, format!("cannot read the manifest: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| Error::input(&mpath, format!("corrupt manifest: {e}")))?;
        if verify {
            for f in &manifest.files {
                let p = dir.join(&f.name);
                let (size, sha) = hash_file(&p).map_err(|_| {
                    Error::input(
                        &p,
                        "listed in the manifest but missing; rebuild with build-index",
                    )
                })?;
                if size != f.size || sha != f.sha256 {
                    return Err(Error::input(
                        &p,
                        "checksum mismatch with manifest.json (corrupted or modified); rebuild with build-index",
                    ));
                }
            }
        }
        Ok(Version { dir, manifest })
    }

    /// Opens the version `CURRENT` points at.
    pub fn open_current(root: &Path, verify: bool) -> Result<Self> {
        match current_name(root)? {
            Some(name) => Version::open(root, &name, verify),
            None => Err(Error::Input(format!(
                "{}: no published version (no CURRENT file); run `recpipe build-index` first",
                root.display()
            ))),
        }
    }

    /// A file of the version.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Removes all but the newest `keep` versions (never the live one), and temporary folders of
/// this host's builds whose process is gone (another host's are never touched: the folder may
/// be on shared storage and that build may be running).
pub fn prune(root: &Path, keep: usize) -> Result<Vec<String>> {
    let versions = root.join("versions");
    let live = current_name(root)?;
    let mut names: Vec<String> = match std::fs::read_dir(&versions) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    names.sort();
    let mut removed = Vec::new();
    let here = host_name();
    for n in names.iter().filter(|n| n.starts_with(".tmp-")) {
        let dead_here = match temp_owner(n) {
            Some((pid, host)) if host.as_deref().is_none_or(|h| h == here) => {
                !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        };
        if dead_here {
            let _ = std::fs::remove_dir_all(versions.join(n));
            removed.push(n.clone());
        }
    }
    let real: Vec<&String> = names.iter().filter(|n| !n.starts_with('.')).collect();
    let excess = real.len().saturating_sub(keep.max(1));
    for n in real.into_iter().take(excess) {
        if Some(n) != live.as_ref() {
            let _ = std::fs::remove_dir_all(versions.join(n));
            removed.push(n.clone());
        }
    }
    Ok(removed)
}

/// File names inside a version.
pub mod files {
    /// Ids and vocabularies (items, tokens, user feature encoder).
    pub const IDS: &str = "ids.json";
    /// Item vectors (DESIGN.md schema).
    pub const ITEM_VECTORS: &str = "item_vectors.parquet";
    /// User vectors of every user with a watch.
    pub const USER_VECTORS: &str = "user_vectors.parquet";
    /// The index folder.
    pub const INDEX_DIR: &str = "index";
}

/// The ids and vocabularies a version serves with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdMaps {
    /// Item ids in model order (row i of the item vectors).
    pub items: crate::examples::IdMap,
    /// Category tokens in model order.
    pub tokens: crate::examples::IdMapStr,
    /// User feature encoding.
    pub user_features: crate::examples::UserFeatureEncoder,
    /// Items' token ids (model order), for building queries.
    pub item_tokens: Vec<Vec<u32>>,
    /// Training users in model order (row i of a per-user embedding); versions written before
    /// models had per-user rows have none, and their users are served from their histories.
    #[serde(default)]
    pub users: crate::examples::IdMap,
    /// The items' string ids, in model order, when the data keys items by strings (see
    /// [`crate::ids`]); empty for integer ids and for versions written before string ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item_keys: Vec<String>,
    /// The time (Unix seconds) item ages were measured from in training (the newest watch of
    /// the data); `add-items` measures new items' ages from it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_time: Option<i64>,
}

impl IdMaps {
    /// Reads `ids.json` and rebuilds its lookups.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut ids: IdMaps = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(path, format!("corrupt: {e}")))?;
        ids.items.reindex();
        ids.users.reindex();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_verify_corrupt_prune() {
        let root = std::env::temp_dir().join(format!("recpipe-art-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut names = Vec::new();
        for k in 0..3 {
            let b = VersionBuilder::start(&root).expect("start");
            std::fs::write(b.dir().join("a.bin"), [k as u8; 100]).expect("write");
            let m = b
                .publish(
                    serde_json::json!({}),
                    serde_json::json!({}),
                    serde_json::json!({"k": k}),
                )
                .expect("publish");
            assert_eq!(m.files.len(), 1);
            names.push(m.version);
        }
        let live = Version::open_current(&root, true).expect("open");
        assert_eq!(live.manifest.version, names[2]);
        // A dropped builder leaves nothing.
        {
            let b = VersionBuilder::start(&root).expect("start");
            std::fs::write(b.dir().join("x"), b"x").expect("write");
        }
        let removed = prune(&root, 2).expect("prune");
        assert_eq!(removed, vec![names[0].clone()]);
        // Flip one byte of the live version.
        let p = live.file("a.bin");
        let mut bytes = std::fs::read(&p).expect("read");
        bytes[10] ^= 1;
        std::fs::write(&p, bytes).expect("write");
        let err = Version::open_current(&root, true)
            .expect_err("corrupt")
            .to_string();
        assert!(err.contains("a.bin") && err.contains("checksum"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
