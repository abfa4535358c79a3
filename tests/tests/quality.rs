//! Quality floors on the real data (EVAL.md), with the default configuration: a little under
//! what the project measured, so a regression fails.

use recpipe_tests::*;

#[test]
fn ml_100k_retrieval_beats_the_best_peer() {
    let Some(input) = shared_data("ml-100k") else {
        return;
    };
    let root = temp_dir("quality-ml100k");
    let data = root.join("data");
    recpipe_ok(&[
        "import",
        "movielens",
        "--input",
        input.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
    ]);
    let json = root.join("eval.json");
    recpipe_ok(&[
        "evaluate",
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let test = &v["retrieval"]["test_exact"];
    let hr10 = test["hr"][0].as_f64().expect("hr10");
    let hr100 = test["hr"][2].as_f64().expect("hr100");
    assert_eq!(test["users"], 943);
    // EASE^R, the best peer of EVAL.md: 0.090 / 0.476.
    assert!(hr10 >= HR10_FLOOR, "test HR@10 {hr10} below {HR10_FLOOR}");
    assert!(
        hr100 >= HR100_FLOOR,
        "test HR@100 {hr100} below {HR100_FLOOR}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

const HR10_FLOOR: f64 = 0.13;
const HR100_FLOOR: f64 = 0.53;
