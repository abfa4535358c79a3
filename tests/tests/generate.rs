//! The synthetic world: same seed, same bytes; heavy-tailed popularity; watch time within duration.

use recpipe_tests::{recpipe_ok, temp_dir};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

fn hash(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    format!("{:x}", Sha256::digest(bytes))
}

fn gen(out: &Path, seed: &str) {
    recpipe_ok(&[
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--users",
        "800",
        "--items",
        "3000",
        "--days",
        "10",
        "--seed",
        seed,
    ]);
}

#[test]
fn same_seed_same_bytes_and_plausible_world() {
    let root = temp_dir("generate");
    let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
    gen(&a, "7");
    gen(&b, "7");
    gen(&c, "8");
    for f in ["events.parquet", "items.parquet", "users.parquet"] {
        assert_eq!(
            hash(&a.join(f)),
            hash(&b.join(f)),
            "{f} differs for one seed"
        );
    }
    assert_ne!(
        hash(&a.join("events.parquet")),
        hash(&c.join("events.parquet"))
    );

    let ev = recpipe::data::read_events(&a.join("events.parquet"), &["position"]).expect("events");
    let items = recpipe::data::read_items(&a.join("items.parquet")).expect("items");
    assert_eq!(items.len(), 3_000);
    let duration: HashMap<i64, f32> = items
        .item_id
        .iter()
        .zip(&items.duration)
        .map(|(&i, d)| (i, d.expect("every synthetic item has a duration")))
        .collect();
    let published: HashMap<i64, i64> = items
        .item_id
        .iter()
        .zip(&items.published)
        .map(|(&i, p)| (i, p.expect("published")))
        .collect();
    let mut shown: HashMap<i64, usize> = HashMap::new();
    let mut watched = 0;
    for i in 0..ev.len() {
        let item = ev.item_id[i];
        *shown.entry(item).or_default() += 1;
        assert!(
            published[&item] <= ev.timestamp[i],
            "item shown before it was published"
        );
        if let Some(w) = ev.watch_time[i] {
            watched += 1;
            assert!(
                w <= duration[&item],
                "watch time {w} above duration {}",
                duration[&item]
            );
        }
    }
    let share = watched as f64 / ev.len() as f64;
    assert!((0.1..0.6).contains(&share), "watched share {share}");
    // Heavy tail: the 1% most shown items hold far more than 1% of impressions.
    let mut counts: Vec<usize> = shown.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top = counts.iter().take(30).sum::<usize>() as f64 / ev.len() as f64;
    assert!(
        top > 0.08,
        "top 1% of items hold only {top:.3} of impressions"
    );
    // Pages: positions 0..20.
    let pos = ev.extra("position").expect("position column");
    assert!(pos.iter().all(|p| (0..20).contains(p)));
    let _ = std::fs::remove_dir_all(&root);
}
