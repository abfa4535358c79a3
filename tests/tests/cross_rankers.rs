//! DeepFM and DCN-v2 inside a version: `[ranking] model = "deepfm" | "dcn_v2"` trains through
//! `build-index`, the version's `ranker.json` names the model, and `query --rerank` and
//! `rerank --artifacts` score with it.

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
            "[ranking.dcn_v2]\nepochs = 2\ncross_layers = 2\nlow_rank = 4\nexperts = 2\nstructure = \"parallel\"\nhidden = [16]\n",
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
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(w.art.join("versions").join(&v).join("ranker.json")).expect("meta"),
        )
        .expect("ranker.json");
        assert_eq!(meta["model"], model);
        let q = recpipe_ok(&[
            "query",
            "--artifacts",
            s(&w.art),
            "--user",
            "7",
            "-k",
            "10",
            "--rerank",
            "--json",
        ]);
        let rec: serde_json::Value = serde_json::from_str(&q).expect("json");
        let times: Vec<f64> = rec["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["expected_watch_time"].as_f64().expect("score"))
            .collect();
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
    }
}
