//! Helpers for recpipe's end-to-end tests: locating the release binary and the shared data sets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `recpipe` binary built by `cargo build --release` (or the profile these tests run in).
pub fn recpipe_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/recpipe
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(format!("recpipe{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release` before the tests",
        bin.display()
    );
    bin
}

/// Runs `recpipe` with `args`.
pub fn recpipe(args: &[&str]) -> Output {
    Command::new(recpipe_bin())
        .args(args)
        .output()
        .expect("run recpipe")
}

/// Runs `recpipe` with `args` and asserts success; returns standard output.
pub fn recpipe_ok(args: &[&str]) -> String {
    let out = recpipe(args);
    assert!(
        out.status.success(),
        "recpipe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared data set `name` (e.g. "ml-100k") under `../shared/data`, or `None` when absent
/// outside CI (the test then skips, saying so). Under CI (`CI=true`) a missing folder fails.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let dir = root.join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!(
            "{} is missing and CI=true: the shared data must be beside the repository",
            dir.display()
        );
    }
    eprintln!("skipping: {} not found", dir.display());
    None
}

/// Imports the shared data set `set` with `recpipe import <kind>` (movielens, kuairand) into
/// `out`; `None` when the data set is absent (see [`shared_data`]).
pub fn import_shared(kind: &str, set: &str, out: &Path) -> Option<PathBuf> {
    let input = shared_data(set)?;
    recpipe_ok(&["import", kind, "--input", s(&input), "--out", s(out)]);
    Some(out.to_path_buf())
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("recpipe-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A `recpipe.toml` with a small, fast model for tests, written into `dir`; returns its path.
pub fn small_config(dir: &Path) -> PathBuf {
    small_config_for(dir, "youtube_dnn")
}

/// The `[retrieval]` sections of a small, fast retrieval `model` (`youtube_dnn` or `mf`).
/// The model's own section comes first, so that a test can add keys after its header.
pub fn retrieval_section(model: &str) -> String {
    let own = match model {
        "mf" => "epochs = 3\npatience = 0\ndim = 32\nnum_negatives = 256\n",
        "mult_vae" => "epochs = 3\npatience = 0\nhidden = 64\nlatent = 16\nbatch_size = 16\n",
        "mult_dae" | "cdae" | "autorec_u" => {
            "epochs = 3\npatience = 0\nhidden = 32\nbatch_size = 16\n"
        }
        "cfgan" => "epochs = 3\npatience = 0\nhidden = 32\ndiscriminator_hidden = 16\nbatch_size = 16\n",
        "gmf" => "epochs = 3\npatience = 0\ndim = 32\n",
        "two_tower" => {
            "epochs = 6\npatience = 0\ndim = 32\nid_embedding_dim = 32\nitem_hidden = [64]\nuser_hidden = [64]\nnum_negatives = 256\n"
        }
        _ => "epochs = 3\npatience = 0\ndim = 32\nitem_embedding_dim = 32\nhidden = [64]\nnum_negatives = 256\n",
    };
    format!("[retrieval.{model}]\n{own}\n[retrieval]\nmodel = \"{model}\"\n")
}

/// [`small_config`] with retrieval `model`.
pub fn small_config_for(dir: &Path, model: &str) -> PathBuf {
    let p = dir.join("recpipe.toml");
    std::fs::write(
        &p,
        format!(
            "{}\n[build]\nkeep_versions = 5\n\n[ranking.youtube]\nepochs = 2\nhidden = [64, 32]\n",
            retrieval_section(model)
        ),
    )
    .expect("write config");
    p
}

/// Generates a small synthetic world into `dir` with `seed`.
pub fn small_world(dir: &Path, seed: u64) {
    recpipe_ok(&[
        "generate",
        "--out",
        dir.to_str().expect("utf-8 path"),
        "--users",
        "600",
        "--items",
        "1500",
        "--days",
        "10",
        "--seed",
        &seed.to_string(),
    ]);
}

/// Names of the published version folders under `art/versions` (temporary folders excluded).
pub fn published_versions(art: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(art.join("versions"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The live version's name.
pub fn current(art: &Path) -> Option<String> {
    std::fs::read_to_string(art.join("CURRENT"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A path as `&str` for command lines.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A small synthetic world with a test config: `root/data`, `root/art`, `root/recpipe.toml`.
pub struct World {
    /// The test's temporary folder.
    pub root: PathBuf,
    /// The data folder.
    pub data: PathBuf,
    /// The artifact folder.
    pub art: PathBuf,
    /// The config file.
    pub cfg: PathBuf,
}

impl World {
    /// Generates the world with `seed` into a fresh temporary folder named after `tag`.
    pub fn new(tag: &str, seed: u64) -> Self {
        Self::with_model(tag, seed, "youtube_dnn")
    }

    /// [`World::new`] whose config trains retrieval `model`.
    pub fn with_model(tag: &str, seed: u64, model: &str) -> Self {
        let root = temp_dir(tag);
        let data = root.join("data");
        small_world(&data, seed);
        World {
            art: root.join("art"),
            cfg: small_config_for(&root, model),
            data,
            root,
        }
    }

    /// Runs `build-index` with the world's config plus `extra` arguments; returns stdout.
    pub fn build(&self, extra: &[&str]) -> String {
        self.build_with(&self.cfg, extra)
    }

    /// Runs `build-index` with the config file `cfg` plus `extra` arguments; returns stdout.
    pub fn build_with(&self, cfg: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "--config",
            s(cfg),
            "build-index",
            "--data",
            s(&self.data),
            "--artifacts",
            s(&self.art),
        ];
        args.extend_from_slice(extra);
        recpipe_ok(&args)
    }

    /// The manifest of `version`.
    pub fn manifest(&self, version: &str) -> serde_json::Value {
        let p = self
            .art
            .join("versions")
            .join(version)
            .join("manifest.json");
        serde_json::from_slice(&std::fs::read(p).expect("manifest")).expect("manifest JSON")
    }

    /// `ranker.json` of version `version`.
    pub fn ranker_meta(&self, version: &str) -> serde_json::Value {
        let p = self.art.join("versions").join(version).join("ranker.json");
        serde_json::from_slice(&std::fs::read(p).expect("ranker.json")).expect("ranker.json")
    }

    /// The expected watch times of `query --user USER -k K --rerank` on the live version, in
    /// the answer's order.
    pub fn reranked_watch_times(&self, user: &str, k: usize) -> Vec<f64> {
        let q = recpipe_ok(&[
            "query",
            "--artifacts",
            s(&self.art),
            "--user",
            user,
            "-k",
            &k.to_string(),
            "--rerank",
            "--json",
        ]);
        let rec: serde_json::Value = serde_json::from_str(&q).expect("json");
        rec["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["expected_watch_time"].as_f64().expect("score"))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
