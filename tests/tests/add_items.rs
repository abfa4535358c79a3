//! `recpipe add-items` (issue 14): items published after the nightly build get vectors from their
//! features and are served at once.

use recpipe::data::events::write_events_file;
use recpipe::data::{read_events, read_items, write_items, Events, Items};
use recpipe::generate::WORLD_START;
use recpipe_tests::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

const DAYS: i64 = 14;
const TOP: usize = 50;

/// The rows of `items` that `keep` selects.
fn select_items(items: &Items, keep: impl Fn(usize) -> bool) -> Items {
    let mut out = Items::default();
    for r in (0..items.len()).filter(|&r| keep(r)) {
        out.push(
            items.item_id[r],
            items.duration[r],
            items.published[r],
            items.categories[r].clone(),
            items.title[r].clone(),
        );
    }
    out
}

/// The world's category pair of an item ("genreA|genreB"), which names its taste cluster group.
fn pair(items: &Items, r: usize) -> String {
    items.categories[r].join("|")
}

/// Probability that `draws` items drawn without replacement from `pool` miss all `marked`.
fn miss_probability(pool: usize, marked: usize, draws: usize) -> f64 {
    (0..draws.min(pool)).fold(1.0, |p, i| {
        p * (pool.saturating_sub(marked + i)) as f64 / (pool - i) as f64
    })
}

fn two_tower_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("recpipe.toml");
    std::fs::write(
        &p,
        format!(
            "{}\n[build]\nkeep_versions = 5\n\n[ranking.youtube]\nepochs = 1\nhidden = [32]\n",
            retrieval_section("two_tower")
        ),
    )
    .expect("write config");
    p
}

/// Items published on the world's last day are held out of training (their events and their
/// catalogue rows); after `add-items` they are in the index, and a user whose favourite
/// category pair (taste cluster group) matches a fresh item gets one in the top 50 far more
/// often than 50 random unseen items would.
#[test]
fn fresh_items_reach_users_of_their_taste() {
    let root = temp_dir("add-items");
    let full = root.join("full");
    recpipe_ok(&[
        "generate",
        "--out",
        s(&full),
        "--users",
        "1500",
        "--items",
        "3000",
        "--days",
        "14",
        "--seed",
        "11",
    ]);
    let events = read_events(&full.join("events.parquet"), &[]).expect("events");
    let items = read_items(&full.join("items.parquet")).expect("items");
    let last_day = WORLD_START + (DAYS - 1) * 86_400;
    let is_fresh = |r: usize| items.published[r].is_some_and(|p| p >= last_day);
    let fresh: HashSet<i64> = (0..items.len())
        .filter(|&r| is_fresh(r))
        .map(|r| items.item_id[r])
        .collect();
    assert!(fresh.len() >= 20, "{} fresh items", fresh.len());

    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let mut train = Events::default();
    for i in 0..events.len() {
        let e = events.get(i);
        if !fresh.contains(&e.item_id) {
            train.push(e);
        }
    }
    write_events_file(&data.join("events.parquet"), &train)
        .expect("write events")
        .commit()
        .expect("commit");
    write_items(
        &data.join("items.parquet"),
        &select_items(&items, |r| !is_fresh(r)),
    )
    .expect("write items")
    .commit()
    .expect("commit");
    std::fs::copy(full.join("users.parquet"), data.join("users.parquet")).expect("users");
    let new_items = root.join("new_items.parquet");
    write_items(&new_items, &select_items(&items, is_fresh))
        .expect("write new items")
        .commit()
        .expect("commit");

    let cfg = two_tower_config(&root);
    let art = root.join("art");
    recpipe_ok(&[
        "--config",
        s(&cfg),
        "build-index",
        "--data",
        s(&data),
        "--artifacts",
        s(&art),
    ]);
    let built = current(&art).expect("a version");
    let out = recpipe_ok(&[
        "--config",
        s(&cfg),
        "add-items",
        "--artifacts",
        s(&art),
        "--items",
        s(&new_items),
    ]);
    assert!(
        out.contains(&format!("added {} items", fresh.len())),
        "{out}"
    );
    let added = current(&art).expect("a version");
    assert_ne!(added, built);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(art.join("versions").join(&added).join("manifest.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(manifest["inputs"]["added_items"]["added"], fresh.len());
    assert_eq!(
        manifest["inputs"]["added_items"]["from_version"].as_str(),
        Some(built.as_str())
    );

    // The same file again adds nothing and publishes nothing.
    let again = recpipe_ok(&[
        "--config",
        s(&cfg),
        "add-items",
        "--artifacts",
        s(&art),
        "--items",
        s(&new_items),
    ]);
    assert!(again.contains("nothing to add"), "{again}");
    assert_eq!(current(&art).as_deref(), Some(added.as_str()));

    // Each user's favourite category pair over their training watches.
    let pair_of: HashMap<i64, String> = (0..items.len())
        .map(|r| (items.item_id[r], pair(&items, r)))
        .collect();
    let mut counts: HashMap<i64, HashMap<&str, usize>> = HashMap::new();
    let mut seen: HashMap<i64, HashSet<i64>> = HashMap::new();
    for i in 0..train.len() {
        let e = train.get(i);
        if e.watched {
            if let Some(p) = pair_of.get(&e.item_id) {
                *counts
                    .entry(e.user_id)
                    .or_default()
                    .entry(p.as_str())
                    .or_default() += 1;
            }
            seen.entry(e.user_id).or_default().insert(e.item_id);
        }
    }
    let mut fresh_by_pair: HashMap<String, HashSet<i64>> = HashMap::new();
    for r in (0..items.len()).filter(|&r| is_fresh(r)) {
        fresh_by_pair
            .entry(pair(&items, r))
            .or_default()
            .insert(items.item_id[r]);
    }

    let cands = root.join("candidates.parquet");
    recpipe_ok(&[
        "candidates",
        "--artifacts",
        s(&art),
        "--all",
        "-k",
        &TOP.to_string(),
        "--out",
        s(&cands),
    ]);
    let mut top: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut reader = recpipe::data::CandidatesReader::open(&cands).expect("candidates");
    while let Some(batch) = reader.next_batch().expect("batch") {
        for c in batch {
            top.entry(c.user_id).or_default().push(c.item_id);
        }
    }
    let catalogue = items.len();
    let (mut users, mut hits, mut any_fresh, mut chance) = (0usize, 0usize, 0usize, 0.0f64);
    for (user, per_pair) in &counts {
        let Some((favourite, _)) = per_pair.iter().max_by_key(|(p, n)| (**n, *p)) else {
            continue;
        };
        let Some(matching) = fresh_by_pair.get(*favourite) else {
            continue;
        };
        let list = top.get(user).map(Vec::as_slice).unwrap_or(&[]);
        users += 1;
        hits += usize::from(list.iter().any(|i| matching.contains(i)));
        any_fresh += usize::from(list.iter().any(|i| fresh.contains(i)));
        let pool = catalogue - seen.get(user).map_or(0, HashSet::len);
        chance += 1.0 - miss_probability(pool, matching.len(), TOP);
    }
    assert!(users >= 300, "{users} users have a matching fresh item");
    let rate = hits as f64 / users as f64;
    let chance = chance / users as f64;
    eprintln!(
        "add-items: {} fresh items; {hits} of {users} users whose favourite category pair has a \
         fresh item get one of those in their top {TOP} (rate {rate:.4}, chance {chance:.4}, \
         {:.1}x); {any_fresh} get any fresh item",
        fresh.len(),
        rate / chance
    );
    assert!(
        rate >= 3.0 * chance && rate >= 0.1,
        "rate {rate:.4} against chance {chance:.4}"
    );

    // The next night's build (the data now has the fresh items and their watches) warm-starts
    // from the version add-items published. (--force: the quality gate compares figures
    // measured on different data, which is not what this checks.)
    recpipe_ok(&[
        "--config",
        s(&cfg),
        "build-index",
        "--data",
        s(&full),
        "--artifacts",
        s(&art),
        "--force",
    ]);
    let night = current(&art).expect("a version");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(art.join("versions").join(&night).join("manifest.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(
        manifest["inputs"]["warm_start_from"].as_str(),
        Some(added.as_str())
    );
}

/// A model whose item vectors are free rows cannot embed a new item: one line, exit code 2,
/// nothing published.
#[test]
fn add_items_needs_an_item_tower() {
    let w = World::new("add-items-youtube", 5);
    w.build(&[]);
    let before = published_versions(&w.art);
    let items = read_items(&w.data.join("items.parquet")).expect("items");
    let mut new = select_items(&items, |r| r < 3);
    for (k, id) in new.item_id.iter_mut().enumerate() {
        *id = 1_000_000 + k as i64;
    }
    let file = w.root.join("new_items.parquet");
    write_items(&file, &new)
        .expect("write")
        .commit()
        .expect("commit");
    let out = recpipe(&[
        "--config",
        s(&w.cfg),
        "add-items",
        "--artifacts",
        s(&w.art),
        "--items",
        s(&file),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("youtube_dnn") && err.contains("two_tower"),
        "{err}"
    );
    assert_eq!(published_versions(&w.art), before);
    let leftovers: Vec<_> = std::fs::read_dir(w.art.join("versions"))
        .expect("versions")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
