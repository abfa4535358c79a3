//! DeepFM and DCN-v2: on KuaiRand (EVAL.md section 3) each beats its unit-weight ablation, the
//! video-CTR order and LightGBM's 0.382; inside a version (`[ranking] model = "deepfm" |
//! "dcn_v2"` through `build-index`) the version's `ranker.json` names the model, and `query
//! --rerank` and `rerank --artifacts` score with it (`rerank --device cuda:0` from this CPU-only
//! build is a one-line error).

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recpipe_tests::*;

#[test]
fn cross_rankers_build_into_a_version_and_rerank() {
    for (model, section) in [
        (
            "deepfm",
            "[ranking.deepfm]\nepochs = 2\nembedding_dim = 4\nhidden = [16]\n",
        ),
        (
            "dcn_v2",
            "[ranking.dcn_v2]\nepochs = 2\ncross_layers = 2\nlow_rank = 4\nexperts = 2\n\
             structure = \"parallel\"\nhidden = [16]\n",
        ),
    ] {
        let w = World::new(&format!("rank-cross-{model}"), 6);
        let cfg = w.root.join("cross.toml");
        let base = std::fs::read_to_string(&w.cfg).expect("cfg");
        std::fs::write(
            &cfg,
            format!("{base}\n[ranking]\nmodel = \"{model}\"\n\n{section}"),
        )
        .expect("write");
        let out = w.build_with(&cfg, &[]);
        assert!(out.contains(&format!("{model} ranker")), "{out}");
        let v = current(&w.art).expect("CURRENT");
        let ranking = &w.manifest(&v)["metrics"]["ranking"];
        assert_eq!(ranking["model"]["model"], model, "{ranking}");
        let meta = w.ranker_meta(&v);
        assert_eq!(meta["model"], model);
        let times = w.reranked_watch_times("7", 10);
        assert_eq!(times.len(), 10, "{model}");
        assert!(times.windows(2).all(|p| p[0] >= p[1]), "{model}: {times:?}");
        let cand = w.root.join("cand.parquet");
        recpipe_ok(&[
            "candidates",
            "--artifacts",
            s(&w.art),
            "--all",
            "-k",
            "20",
            "--out",
            s(&cand),
        ]);
        let ranked = w.root.join("ranked.parquet");
        recpipe_ok(&[
            "rerank",
            "--input",
            s(&cand),
            "--out",
            s(&ranked),
            "--artifacts",
            s(&w.art),
        ]);
        let rows = |p: &std::path::Path| {
            let f = std::fs::File::open(p).expect("parquet file");
            ParquetRecordBatchReaderBuilder::try_new(f)
                .expect("parquet")
                .metadata()
                .file_metadata()
                .num_rows()
        };
        assert!(rows(&ranked) > 0, "{model}");
        assert_eq!(rows(&ranked), rows(&cand), "{model}");
        // `--device cuda:0` scores on a GPU; this CPU-only binary says so in one line, before
        // any work, and writes nothing.
        let on_gpu = w.root.join("ranked-gpu.parquet");
        let out = recpipe(&[
            "--device",
            "cuda:0",
            "rerank",
            "--input",
            s(&cand),
            "--out",
            s(&on_gpu),
            "--artifacts",
            s(&w.art),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{model}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("`cuda` feature"), "{stderr}");
        assert!(!on_gpu.exists(), "{model}");
    }
}

#[test]
fn kuairand_cross_rankers_beat_their_ablation_and_the_ctr_order() {
    let dir = temp_dir("rank-cross-kuairand");
    let Some(data) = import_shared("kuairand", "kuairand-pure", &dir.join("data")) else {
        return;
    };
    // The kept epoch is the first at the default settings (seed 42): one epoch is that model.
    let cfg = dir.join("recpipe.toml");
    std::fs::write(
        &cfg,
        "[ranking.deepfm]\nepochs = 1\n\n[ranking.dcn_v2]\nepochs = 1\n",
    )
    .expect("config");
    for model in ["deepfm", "dcn_v2"] {
        let json = dir.join(format!("{model}.json"));
        recpipe_ok(&[
            "--config",
            s(&cfg),
            "evaluate",
            "--data",
            s(&data),
            "--ranking",
            "--model",
            model,
            "--json",
            s(&json),
        ]);
        let eval: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
        let loss = |path: &[&str]| {
            let mut v = &eval["ranking"];
            for p in path {
                v = &v[p];
            }
            v["weighted_user_loss"].as_f64().expect("weighted loss")
        };
        let weighted = loss(&["model", "metrics"]);
        let unit = loss(&["unit_weights", "metrics"]);
        let ctr = loss(&["ctr_order"]);
        eprintln!("{model}: weighted {weighted:.4}, unit weights {unit:.4}, video CTR {ctr:.4}");
        assert_eq!(eval["ranking"]["model"]["model"], model);
        assert!(
            weighted < 0.382,
            "{model}: {weighted} not below LightGBM's 0.382"
        );
        assert!(
            weighted < unit && weighted < ctr,
            "{model}: weighted {weighted}, unit {unit}, CTR {ctr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
