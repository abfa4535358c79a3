//! The nightly job end to end: build-index publishes a version that query and candidates use;
//! the quality gate; a corrupted artifact is refused.

use recpipe_tests::*;

#[test]
fn build_query_candidates_on_a_synthetic_world() {
    let w = World::new("e2e-synth", 3);
    let (root, data, art) = (w.root.clone(), w.data.clone(), w.art.clone());
    let out = w.build(&[]);
    assert!(out.contains("published version"), "{out}");
    let v1 = current(&art).expect("CURRENT written");
    assert_eq!(published_versions(&art), vec![v1.clone()]);
    let manifest = w.manifest(&v1);
    let names: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    for f in [
        "retrieval.safetensors",
        "item_vectors.parquet",
        "user_vectors.parquet",
        "ids.json",
        "index/manifest.json",
    ] {
        assert!(names.contains(&f), "{f} not in {names:?}");
    }
    let hr10 = manifest["metrics"]["test_exact"]["hr"][0]
        .as_f64()
        .expect("hr10");
    // Popularity alone gets about 0.02 here; the model must do far better.
    assert!(hr10 > 0.05, "synthetic test HR@10 {hr10}");

    // query: a known user's list excludes everything they watched.
    let q = recpipe_ok(&[
        "query",
        "--artifacts",
        s(&art),
        "--user",
        "7",
        "-k",
        "20",
        "--json",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&q).expect("json");
    assert_eq!(rec["source"], "personal");
    let items: Vec<i64> = rec["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(items.len(), 20);
    let ev = recpipe::data::read_events(&data.join("events.parquet"), &[]).expect("events");
    let seen: std::collections::HashSet<i64> = (0..ev.len())
        .filter(|&i| ev.user_id[i] == 7 && ev.watched[i])
        .map(|i| ev.item_id[i])
        .collect();
    assert!(!seen.is_empty());
    assert!(
        items.iter().all(|i| !seen.contains(i)),
        "a seen item was recommended"
    );
    let scores: Vec<f64> = rec["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["retrieval_score"].as_f64().expect("score"))
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not ordered by score"
    );

    // Unknown user: popularity list, marked as such.
    let q = recpipe_ok(&["query", "--artifacts", s(&art), "--user", "-5", "--json"]);
    let rec: serde_json::Value = serde_json::from_str(&q).expect("json");
    assert_eq!(rec["source"], "popular_fresh");
    assert_eq!(rec["items"].as_array().expect("items").len(), 10);

    // Ad-hoc history.
    let q = recpipe_ok(&[
        "query",
        "--artifacts",
        s(&art),
        "--history",
        "1,2,3",
        "-k",
        "5",
        "--json",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&q).expect("json");
    let ids: Vec<i64> = rec["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(!ids.iter().any(|i| [1, 2, 3].contains(i)));

    // Batch candidates for every user.
    let cands = root.join("candidates.parquet");
    recpipe_ok(&[
        "candidates",
        "--artifacts",
        s(&art),
        "--all",
        "-k",
        "25",
        "--out",
        s(&cands),
    ]);
    let mut r = recpipe::data::CandidatesReader::open(&cands).expect("candidates");
    let mut rows = 0;
    while let Some(b) = r.next_batch().expect("batch") {
        for c in &b {
            assert!((1..=25).contains(&c.retrieval_rank));
        }
        rows += b.len();
    }
    let users = ev
        .user_id
        .iter()
        .filter(|_| true)
        .collect::<std::collections::HashSet<_>>();
    assert!(
        rows >= 25 * (users.len() - 50),
        "{rows} rows for {} users",
        users.len()
    );
}

#[test]
fn flipped_byte_in_any_artifact_is_refused() {
    let w = World::new("e2e-flip", 4);
    let art = w.art.clone();
    w.build(&[]);
    let v = current(&art).expect("CURRENT");
    let vdir = art.join("versions").join(&v);
    let manifest = w.manifest(&v);
    let names: Vec<String> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_string())
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let p = vdir.join(&name);
        let orig = std::fs::read(&p).expect("read");
        let mut bad = orig.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x20;
        std::fs::write(&p, &bad).expect("write");
        let out = recpipe(&["query", "--artifacts", s(&art), "--user", "3"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&name) || err.contains(name.rsplit('/').next().unwrap_or(&name)),
            "{name}: {err}"
        );
        assert!(err.contains("checksum"), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        std::fs::write(&p, &orig).expect("restore");
    }
    recpipe_ok(&["query", "--artifacts", s(&art), "--user", "3"]);
}

#[test]
fn quality_gate_refuses_a_worse_model_unless_forced() {
    let w = World::new("e2e-gate", 5);
    let (root, data, art) = (w.root.clone(), w.data.clone(), w.art.clone());
    w.build(&[]);
    let v1 = current(&art).expect("CURRENT");
    // A model that cannot learn: one epoch at a tiny learning rate.
    let bad = root.join("bad.toml");
    std::fs::write(&bad, "[retrieval.youtube_dnn]\nepochs = 1\nlearning_rate = 1e-7\ndim = 32\nitem_embedding_dim = 32\nhidden = [64]\nnum_negatives = 256\n\n[build]\nmax_hr10_drop = 0.1\nwarm_start = false\n").expect("write");
    let bad_build = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            s(&bad),
            "build-index",
            "--data",
            s(&data),
            "--artifacts",
            s(&art),
        ];
        args.extend_from_slice(extra);
        recpipe(&args)
    };
    let out = bad_build(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("quality gate"), "{err}");
    assert_eq!(
        current(&art).as_deref(),
        Some(v1.as_str()),
        "live version changed"
    );
    assert_eq!(published_versions(&art), vec![v1.clone()]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(bad_build(&["--force"]).status.success());
    assert_ne!(current(&art).as_deref(), Some(v1.as_str()));
    assert_eq!(published_versions(&art).len(), 2);
}

#[test]
fn warm_start_keeps_known_items_vectors() {
    warm_start_keeps_known_items_vectors_of("youtube_dnn");
}

#[test]
fn warm_start_keeps_known_items_vectors_mf() {
    warm_start_keeps_known_items_vectors_of("mf");
}

#[test]
fn warm_start_keeps_known_items_vectors_mult_vae() {
    warm_start_keeps_known_items_vectors_of("mult_vae");
}

#[test]
fn warm_start_keeps_known_items_vectors_cdae() {
    warm_start_keeps_known_items_vectors_of("cdae");
}

#[test]
fn warm_start_keeps_known_items_vectors_gmf() {
    warm_start_keeps_known_items_vectors_of("gmf");
}

fn warm_start_keeps_known_items_vectors_of(model: &str) {
    let w = World::with_model(&format!("e2e-warm-{model}"), 6, model);
    w.build(&[]);
    let v1 = current(&w.art).expect("CURRENT");
    // A second build that barely trains: warm-started, its item vectors are v1's.
    let frozen = w.root.join("frozen.toml");
    let base = std::fs::read_to_string(&w.cfg).expect("cfg");
    let header = format!("[retrieval.{model}]\n");
    let tweak = |extra: &str| base.replace(&header, &format!("{header}{extra}"));
    std::fs::write(
        &frozen,
        tweak("learning_rate = 1e-9\n").replace("epochs = 3", "epochs = 1"),
    )
    .expect("write");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.build_with(&frozen, &["--force"]);
    let v2 = current(&w.art).expect("CURRENT");
    assert_ne!(v1, v2);
    assert_eq!(w.manifest(&v2)["inputs"]["warm_start_from"], v1.as_str());
    assert_eq!(w.manifest(&v2)["metrics"]["retrieval_model"], model);
    let vectors = |v: &str| {
        recpipe::data::read_vectors(
            &w.art.join("versions").join(v).join("item_vectors.parquet"),
            "item_id",
        )
        .expect("item vectors")
    };
    let (a, b) = (vectors(&v1), vectors(&v2));
    assert_eq!(a.ids, b.ids);
    let max_diff = max_abs_diff(&a.data, &b.data);
    assert!(max_diff < 1e-3, "warm-started vectors moved by {max_diff}");
    // The same build cold: vectors start from scratch.
    let cold = w.root.join("cold.toml");
    std::fs::write(
        &cold,
        tweak("learning_rate = 1e-9\n")
            .replace("epochs = 3", "epochs = 1")
            .replace("[build]\n", "[build]\nwarm_start = false\n"),
    )
    .expect("write");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.build_with(&cold, &["--force"]);
    let v3 = current(&w.art).expect("CURRENT");
    let c = vectors(&v3);
    let cold_diff = max_abs_diff(&a.data, &c.data);
    assert!(
        cold_diff > 0.05,
        "a cold start matched the old vectors ({cold_diff})"
    );
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// `--device` / `[train] device`: a GPU asked of this CPU-only binary, or a bad device name, is
/// a one-line error with a non-zero exit, and nothing is published.
#[test]
fn a_device_that_cannot_train_is_a_one_line_error() {
    let w = World::new("device", 5);
    let build = |cfg: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["--config", s(cfg)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "build-index",
            "--data",
            s(&w.data),
            "--artifacts",
            s(&w.art),
        ]);
        let out = recpipe(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        stderr
    };
    let e = build(&w.cfg, &["--device", "cuda:0"]);
    assert!(e.contains("`cuda` feature"), "{e}");
    let e = build(&w.cfg, &["--device", "gpu"]);
    assert!(
        e.contains("--device gpu") && e.contains("\"cuda:N\""),
        "{e}"
    );

    let text = std::fs::read_to_string(&w.cfg).expect("config");
    let bad = w.root.join("bad-device.toml");
    std::fs::write(&bad, format!("{text}\n[train]\ndevice = \"tpu\"\n")).expect("write");
    let e = build(&bad, &[]);
    assert!(
        e.contains("bad-device.toml") && e.contains("[train] device = \"tpu\""),
        "{e}"
    );

    assert!(published_versions(&w.art).is_empty());
}
