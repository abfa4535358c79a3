//! A real SIGKILL of `build-index` at several points leaves `CURRENT` and its version loadable
//! and answering queries; a temporary folder is never taken for a version.

use recpipe_tests::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts build-index paused at `stage`, waits until it gets there, and kills it with SIGKILL.
fn kill_at(cfg: &Path, data: &Path, art: &Path, stage: &str) {
    let mut child = Command::new(recpipe_bin())
        .args([
            "--config",
            s(cfg),
            "build-index",
            "--data",
            s(data),
            "--artifacts",
            s(art),
            "--force",
        ])
        .env("RECPIPE_PAUSE_AT", stage)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn build-index");
    let stderr = child.stderr.take().expect("stderr");
    let mut reached = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read stderr");
        if line.contains(&format!("paused at {stage}")) {
            reached = true;
            break;
        }
    }
    assert!(reached, "build-index never reached stage {stage}");
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success());
}

fn assert_live_and_answering(art: &Path, expect: &str) {
    let cur = current(art).expect("CURRENT");
    assert_eq!(cur, expect);
    assert!(
        !cur.starts_with('.'),
        "a temporary folder was taken for a version"
    );
    for v in published_versions(art) {
        assert!(
            art.join("versions")
                .join(&v)
                .join("manifest.json")
                .is_file(),
            "published folder {v} has no manifest"
        );
    }
    let out = recpipe_ok(&[
        "query",
        "--artifacts",
        s(art),
        "--user",
        "2",
        "-k",
        "5",
        "--json",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rec["version"], cur);
    assert_eq!(rec["items"].as_array().expect("items").len(), 5);
}

#[test]
fn sigkill_at_every_stage_keeps_the_live_version() {
    sigkill_at_every_stage_keeps_the_live_version_of("youtube_dnn");
}

#[test]
fn sigkill_at_every_stage_keeps_the_live_version_mf() {
    sigkill_at_every_stage_keeps_the_live_version_of("mf");
}

fn sigkill_at_every_stage_keeps_the_live_version_of(model: &str) {
    let w = World::with_model(&format!("crash-{model}"), 11, model);
    let (data, art, cfg) = (w.data.clone(), w.art.clone(), w.cfg.clone());
    w.build(&[]);
    let v1 = current(&art).expect("CURRENT");
    for stage in [
        "load",
        "train_retrieval",
        "write_model",
        "index",
        "publish",
        "renamed",
    ] {
        kill_at(&cfg, &data, &art, stage);
        // Killed before CURRENT moved: the old version still serves. After "renamed" the new
        // folder is complete but not live.
        assert_live_and_answering(&art, &v1);
    }
    // Killed right after CURRENT moved: the new version is live, whole and verified.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    kill_at(&cfg, &data, &art, "published");
    let v2 = current(&art).expect("CURRENT");
    assert_ne!(v2, v1);
    assert_live_and_answering(&art, &v2);
    // The next successful build cleans the dead builds' temporary folders.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.build(&["--force"]);
    let temps = std::fs::read_dir(art.join("versions"))
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(
        temps, 0,
        "temporary folders of killed builds were not cleaned"
    );
}
