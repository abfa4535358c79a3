//! Import of the real data sets in ../shared/data: counts and schemas column by column.

use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recpipe_tests::{import_shared, temp_dir};
use std::collections::HashSet;
use std::path::Path;

fn schema_of(path: &Path) -> Vec<(String, DataType, bool)> {
    let f = std::fs::File::open(path).expect("open parquet");
    let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    b.schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect()
}

fn assert_events_schema(path: &Path, extra: &[&str]) {
    let s = schema_of(path);
    let mut want = vec![
        ("user_id".to_string(), DataType::Int64, false),
        ("item_id".to_string(), DataType::Int64, false),
        ("timestamp".to_string(), DataType::Int64, false),
        ("watched".to_string(), DataType::Boolean, false),
        ("watch_time".to_string(), DataType::Float32, true),
        ("rating".to_string(), DataType::Float32, true),
    ];
    want.extend(extra.iter().map(|n| (n.to_string(), DataType::Int64, true)));
    assert_eq!(s, want);
}

fn assert_items_schema(path: &Path) {
    let s = schema_of(path);
    let names: Vec<&str> = s.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["item_id", "duration", "published", "categories", "title"]
    );
    assert_eq!(s[0].1, DataType::Int64);
    assert_eq!(s[1].1, DataType::Float32);
    assert_eq!(s[2].1, DataType::Int64);
    match &s[3].1 {
        DataType::List(f) => assert_eq!(f.data_type(), &DataType::Utf8),
        other => panic!("categories is {other}, expected List<Utf8>"),
    }
    assert_eq!(s[4].1, DataType::Utf8);
}

struct Counts {
    events: usize,
    users: usize,
    items: usize,
    watched: usize,
}

fn counts(dir: &Path) -> Counts {
    let ev = recpipe::data::read_events(&dir.join("events.parquet"), &[]).expect("valid events");
    Counts {
        events: ev.len(),
        users: ev.user_id.iter().collect::<HashSet<_>>().len(),
        items: ev.item_id.iter().collect::<HashSet<_>>().len(),
        watched: ev.watched.iter().filter(|w| **w).count(),
    }
}

#[test]
fn ml_100k() {
    let Some(out) = import_shared("movielens", "ml-100k", &temp_dir("ml100k")) else {
        return;
    };
    let c = counts(&out);
    assert_eq!(
        (c.events, c.users, c.items, c.watched),
        (100_000, 943, 1_682, 100_000)
    );
    assert_events_schema(&out.join("events.parquet"), &[]);
    assert_items_schema(&out.join("items.parquet"));
    let items = recpipe::data::read_items(&out.join("items.parquet")).expect("items");
    let toy = items.item_id.iter().position(|&i| i == 1).expect("item 1");
    assert_eq!(items.title[toy].as_deref(), Some("Toy Story (1995)"));
    assert_eq!(items.categories[toy], ["Animation", "Children's", "Comedy"]);
    assert_eq!(items.published[toy], Some(788_918_400));
    let users = recpipe::data::read_users(&out.join("users.parquet")).expect("users");
    assert_eq!(users.len(), 943);
    let cats: Vec<&str> = users.categorical.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(cats, ["gender", "occupation", "zip"]);
    assert_eq!(users.numeric[0].0, "age");
    let ev = recpipe::data::read_events(&out.join("events.parquet"), &[]).expect("events");
    let stars: f32 = ev
        .rating
        .iter()
        .map(|r| r.expect("every rating kept"))
        .sum();
    // 6110*1 + 11370*2 + 27145*3 + 34174*4 + 21201*5
    assert_eq!(stars as u64, 352_986);
    assert!(ev.watch_time.iter().all(|w| w.is_none()));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ml_latest_small() {
    let Some(out) = import_shared("movielens", "ml-latest-small", &temp_dir("mlsmall")) else {
        return;
    };
    let c = counts(&out);
    assert_eq!((c.events, c.users, c.items), (100_836, 610, 9_724));
    assert_events_schema(&out.join("events.parquet"), &[]);
    assert_items_schema(&out.join("items.parquet"));
    let items = recpipe::data::read_items(&out.join("items.parquet")).expect("items");
    assert_eq!(items.len(), 9_742);
    let i = items
        .item_id
        .iter()
        .position(|&i| i == 11)
        .expect("movie 11");
    assert_eq!(
        items.title[i].as_deref(),
        Some("American President, The (1995)")
    );
    assert_eq!(items.categories[i], ["Comedy", "Drama", "Romance"]);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn kuairand() {
    let Some(out) = import_shared("kuairand", "kuairand-pure", &temp_dir("kuairand")) else {
        return;
    };
    let c = counts(&out);
    assert_eq!(c.events, 185_061);
    let share = c.watched as f64 / c.events as f64;
    assert!((0.40..=0.48).contains(&share), "clicked share {share}");
    let extra = [
        "date",
        "hourmin",
        "time_ms",
        "is_click",
        "is_like",
        "is_follow",
        "is_comment",
        "is_forward",
        "is_hate",
        "long_view",
        "play_time_ms",
        "duration_ms",
        "profile_stay_time",
        "comment_stay_time",
        "is_profile_enter",
        "is_rand",
        "tab",
    ];
    assert_events_schema(&out.join("events.parquet"), &extra);
    assert_items_schema(&out.join("items.parquet"));
    let ev = recpipe::data::read_events(&out.join("events.parquet"), &["date", "play_time_ms"])
        .expect("events");
    let date = ev.extra("date").expect("date column");
    assert!(date.iter().all(|d| (20220425..=20220505).contains(d)));
    let play = ev.extra("play_time_ms").expect("play_time_ms");
    for ((wt, p), w) in ev.watch_time.iter().zip(play).zip(&ev.watched) {
        match wt {
            Some(t) => assert!((t - *p as f32 / 1000.0).abs() < 1e-3),
            None => assert!(!w),
        }
    }
    let items = recpipe::data::read_items(&out.join("items.parquet")).expect("items");
    assert!(items.len() >= 7_583);
    let users = recpipe::data::read_users(&out.join("users.parquet")).expect("users");
    assert!(users.len() >= c.users);
    let _ = std::fs::remove_dir_all(&out);
}
