//! Data as users have it: a data folder written the way pandas, Spark and DuckDB write it
//! (string ids, a dictionary column, `Timestamp(µs, UTC)` times, `Float64` watch times, `element`
//! list children, a Hive-partitioned folder of event parts, a folder of user parts) reads as the
//! same events, items and users as the canonical folder, and every answer comes back in the
//! user's own string ids.

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array,
    LargeStringArray, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use recpipe::dataset::Dataset;
use recpipe_tests::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

fn write(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn read_all(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).expect("open");
    ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

fn user_key(id: i64) -> String {
    format!("user-{id}")
}

fn item_key(id: i64) -> String {
    format!("item-{id}")
}

/// Rewrites the canonical folder `a` into `b` in the layouts other writers use.
fn rewrite_as_warehouse_export(a: &Path, b: &Path) {
    let d = Dataset::load(a).expect("canonical folder");
    let ev = &d.events;
    // Events: one part per UTC day under `date=YYYY-MM-DD/` (the date is not in the files).
    let mut by_day: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for i in 0..ev.len() {
        by_day
            .entry(ev.timestamp[i].div_euclid(86_400))
            .or_default()
            .push(i);
    }
    for (day, rows) in &by_day {
        let (y, m, dd) = recpipe::calendar::civil_from_days(*day);
        let users = StringArray::from_iter_values(rows.iter().map(|&i| user_key(ev.user_id[i])));
        let keys: Vec<String> = rows.iter().map(|&i| item_key(ev.item_id[i])).collect();
        let items: DictionaryArray<arrow_array::types::Int32Type> =
            keys.iter().map(String::as_str).collect();
        let micros = TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|&i| ev.timestamp[i] * 1_000_000 + 17),
        )
        .with_timezone("UTC");
        let position = ev.extra("position").expect("position column");
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("user_id", Arc::new(users)),
            ("item_id", Arc::new(items)),
            ("timestamp", Arc::new(micros)),
            (
                "watched",
                Arc::new(BooleanArray::from_iter(
                    rows.iter().map(|&i| Some(ev.watched[i])),
                )),
            ),
            (
                "watch_time",
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|&i| ev.watch_time[i].map(f64::from)),
                )),
            ),
            (
                "rating",
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|&i| ev.rating[i].map(f64::from)),
                )),
            ),
            (
                "position",
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|&i| position[i] as i32),
                )),
            ),
        ];
        let part = b
            .join("events")
            .join(format!("date={y:04}-{m:02}-{dd:02}"))
            .join("part-00000-c000.snappy.parquet");
        write(&part, cols);
    }
    // Spark's marker files are skipped.
    std::fs::write(b.join("events").join("_SUCCESS"), b"").unwrap();
    // Items: string ids, Float64 durations, millisecond times, lists with `element` children.
    let it = &d.items;
    let element = Arc::new(Field::new("element", DataType::Utf8, true));
    let mut offsets = vec![0i32];
    let mut values = Vec::new();
    for c in &it.categories {
        values.extend(c.iter().cloned());
        offsets.push(values.len() as i32);
    }
    let categories = ListArray::new(
        element,
        arrow_buffer::OffsetBuffer::new(offsets.into()),
        Arc::new(StringArray::from(values)),
        None,
    );
    write(
        &b.join("items.parquet"),
        vec![
            (
                "item_id",
                Arc::new(StringArray::from_iter_values(
                    it.item_id.iter().map(|&i| item_key(i)),
                )),
            ),
            (
                "duration",
                Arc::new(Float64Array::from_iter(
                    it.duration.iter().map(|d| d.map(f64::from)),
                )),
            ),
            (
                "published",
                Arc::new(
                    TimestampMillisecondArray::from_iter(
                        it.published.iter().map(|p| p.map(|s| s * 1_000)),
                    )
                    .with_timezone("+02:00"),
                ),
            ),
            ("categories", Arc::new(categories)),
            ("title", Arc::new(StringArray::from(it.title.clone()))),
        ],
    );
    // Users: a folder of two parts, LargeUtf8 ids.
    let us = &d.users;
    let half = us.len() / 2;
    for (k, range) in [(0usize, 0..half), (1, half..us.len())] {
        let mut cols: Vec<(&str, ArrayRef)> = vec![(
            "user_id",
            Arc::new(LargeStringArray::from_iter_values(
                us.user_id[range.clone()].iter().map(|&u| user_key(u)),
            )),
        )];
        for (name, v) in &us.categorical {
            cols.push((name, Arc::new(StringArray::from(v[range.clone()].to_vec()))));
        }
        for (name, v) in &us.numeric {
            cols.push((
                name,
                Arc::new(Float64Array::from(v[range.clone()].to_vec())),
            ));
        }
        write(&b.join("users").join(format!("part-{k}.parquet")), cols);
    }
}

#[test]
fn a_warehouse_export_reads_as_the_canonical_folder_and_answers_in_its_own_ids() {
    let w = World::new("byo", 5);
    let b = w.root.join("export");
    rewrite_as_warehouse_export(&w.data, &b);
    let a = Dataset::load(&w.data).expect("canonical");
    let d = Dataset::load(&b).expect("export");
    assert!(d.ids.users.is_strings() && d.ids.items.is_strings());
    assert!(!a.ids.users.is_strings() && !a.ids.items.is_strings());

    // Events, row for row (the export is grouped by day: compare in one order).
    let key = |ds: &Dataset, i: usize| {
        let e = &ds.events;
        (
            ds.ids.users.external(e.user_id[i]).to_string(),
            e.timestamp[i],
            ds.ids.items.external(e.item_id[i]).to_string(),
        )
    };
    let mut ra: Vec<usize> = (0..a.events.len()).collect();
    let mut rb: Vec<usize> = (0..d.events.len()).collect();
    ra.sort_by_key(|&i| key(&a, i));
    rb.sort_by_key(|&i| key(&d, i));
    assert_eq!(ra.len(), rb.len());
    let days = recpipe::stages::ranking::event_days(&a.events);
    let date = d
        .events
        .extra("date")
        .expect("the partition column is read");
    let (pa, pb) = (
        a.events.extra("position").expect("position"),
        d.events.extra("position").expect("position"),
    );
    for (&i, &j) in ra.iter().zip(&rb) {
        let (ea, eb) = (a.events.get(i), d.events.get(j));
        assert_eq!(
            user_key(ea.user_id),
            d.ids.users.external(eb.user_id).to_string()
        );
        assert_eq!(
            item_key(ea.item_id),
            d.ids.items.external(eb.item_id).to_string()
        );
        assert_eq!(
            (ea.timestamp, ea.watched, ea.watch_time, ea.rating, pa[i]),
            (eb.timestamp, eb.watched, eb.watch_time, eb.rating, pb[j])
        );
        assert_eq!(
            days[i], date[j],
            "partition date=YYYY-MM-DD reads as YYYYMMDD"
        );
    }
    // Items and users, by key.
    assert_eq!(a.items.len(), d.items.len());
    for r in 0..a.items.len() {
        let k = item_key(a.items.item_id[r]);
        let s = (0..d.items.len())
            .find(|&s| d.ids.items.external(d.items.item_id[s]).to_string() == k)
            .expect("item in the export");
        assert_eq!(
            (
                a.items.duration[r],
                a.items.published[r],
                &a.items.categories[r],
                &a.items.title[r]
            ),
            (
                d.items.duration[s],
                d.items.published[s],
                &d.items.categories[s],
                &d.items.title[s]
            )
        );
    }
    assert_eq!(a.users.len(), d.users.len());
    assert_eq!(a.users.categorical, d.users.categorical);
    assert_eq!(a.users.numeric, d.users.numeric);
    for (x, y) in a.users.user_id.iter().zip(&d.users.user_id) {
        assert_eq!(user_key(*x), d.ids.users.external(*y).to_string());
    }

    // The nightly job on the export, and answers in the user's ids.
    let art = w.root.join("art-export");
    let out = recpipe_ok(&[
        "--config",
        s(&w.cfg),
        "build-index",
        "--data",
        s(&b),
        "--artifacts",
        s(&art),
    ]);
    assert!(out.contains("published version"), "{out}");
    let q = recpipe_ok(&[
        "query",
        "--artifacts",
        s(&art),
        "--user",
        "user-7",
        "-k",
        "20",
        "--json",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&q).expect("json");
    assert_eq!(rec["source"], "personal");
    let got: Vec<String> = rec["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item_id"].as_str().expect("a string id").to_string())
        .collect();
    assert_eq!(got.len(), 20);
    let seen: HashSet<String> = (0..a.events.len())
        .filter(|&i| a.events.user_id[i] == 7 && a.events.watched[i])
        .map(|i| item_key(a.events.item_id[i]))
        .collect();
    let known: HashSet<String> = a.items.item_id.iter().map(|&i| item_key(i)).collect();
    for id in &got {
        assert!(known.contains(id) && !seen.contains(id), "{id}");
    }
    // The table names the user as they spell it; a history in string ids works too.
    let table = recpipe_ok(&["query", "--artifacts", s(&art), "--user", "user-7"]);
    assert!(table.starts_with("user user-7 (personal)"), "{table}");
    let adhoc = recpipe_ok(&[
        "query",
        "--artifacts",
        s(&art),
        "--history",
        &format!("{},{}", got[0], got[1]),
        "--json",
    ]);
    let adhoc: serde_json::Value = serde_json::from_str(&adhoc).expect("json");
    assert!(adhoc["items"][0]["item_id"].as_str().is_some(), "{adhoc}");

    // Batch candidates keep the string type; re-ranking keeps it too.
    let cands = w.root.join("candidates.parquet");
    recpipe_ok(&[
        "candidates",
        "--artifacts",
        s(&art),
        "--all",
        "-k",
        "5",
        "--out",
        s(&cands),
    ]);
    let ranked = w.root.join("ranked.parquet");
    recpipe_ok(&[
        "rerank",
        "--artifacts",
        s(&art),
        "--input",
        s(&cands),
        "--out",
        s(&ranked),
    ]);
    for file in [&cands, &ranked] {
        let batches = read_all(file);
        let mut rows = 0;
        for batch in &batches {
            let u = batch.column_by_name("user_id").expect("user_id");
            let i = batch.column_by_name("item_id").expect("item_id");
            assert_eq!(u.data_type(), &DataType::Utf8, "{}", file.display());
            assert_eq!(i.data_type(), &DataType::Utf8, "{}", file.display());
            for r in 0..batch.num_rows() {
                assert!(u.as_string::<i32>().value(r).starts_with("user-"));
                assert!(known.contains(i.as_string::<i32>().value(r)));
            }
            rows += batch.num_rows();
        }
        assert!(rows >= 5 * 500, "{rows} rows in {}", file.display());
    }
    let _ = std::fs::remove_dir_all(&w.root);
}

#[test]
fn parts_with_different_id_types_are_refused_naming_the_part() {
    let dir = temp_dir("byo-mixed");
    let cols = |users: ArrayRef| -> Vec<(&'static str, ArrayRef)> {
        vec![
            ("user_id", users),
            ("item_id", Arc::new(Int64Array::from(vec![10, 11]))),
            (
                "timestamp",
                Arc::new(Int64Array::from(vec![1_600_000_000; 2])),
            ),
            ("watched", Arc::new(BooleanArray::from(vec![true, true]))),
            ("watch_time", Arc::new(Float64Array::from(vec![None, None]))),
            ("rating", Arc::new(Float64Array::from(vec![None, None]))),
        ]
    };
    write(
        &dir.join("events").join("part-0.parquet"),
        cols(Arc::new(StringArray::from(vec!["a", "b"]))),
    );
    write(
        &dir.join("events").join("part-1.parquet"),
        cols(Arc::new(Int64Array::from(vec![1, 2]))),
    );
    let out = recpipe(&["check", "--data", s(&dir)]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("part-1.parquet")
            && err.contains("column 'user_id'")
            && err.contains("part-0.parquet"),
        "{err}"
    );
    // A bad value in a later part names that part and the row within it.
    std::fs::remove_file(dir.join("events").join("part-1.parquet")).unwrap();
    let mut bad = cols(Arc::new(StringArray::from(vec!["c", "d"])));
    bad[4] = (
        "watch_time",
        Arc::new(Float64Array::from(vec![Some(1.0), Some(-3.0)])),
    );
    write(&dir.join("events").join("part-1.parquet"), bad);
    let out = recpipe(&["check", "--data", s(&dir)]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("part-1.parquet: column 'watch_time', row 2"),
        "{err}"
    );
    // Parts of one type read as one stream.
    std::fs::remove_file(dir.join("events").join("part-1.parquet")).unwrap();
    write(
        &dir.join("events").join("part-1.parquet"),
        cols(Arc::new(StringArray::from(vec!["c", "d"]))),
    );
    let ok = recpipe_ok(&["check", "--data", s(&dir)]);
    assert!(
        ok.contains("events: 4 events") && ok.contains("user ids are strings"),
        "{ok}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
