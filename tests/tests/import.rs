//! Import of the real data sets in ../shared/data: counts and schemas column by column; and
//! `import csv` on logs these tests write.

use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recpipe_tests::{import_shared, recpipe, recpipe_ok, s, shared_data, temp_dir};
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

    // The out-of-core path: with a 1 MiB budget the sort spills runs and merges them, and
    // writes the same files byte for byte as the in-memory sort; no spill is left behind.
    let input = shared_data("kuairand-pure").expect("present above");
    let spilled = temp_dir("kuairand-spilled");
    let said = recpipe_ok(&[
        "import",
        "kuairand",
        "--input",
        s(&input),
        "--out",
        s(&spilled),
        "--memory-mb",
        "1",
    ]);
    assert!(
        said.contains("spilled run(s) within --memory-mb 1"),
        "{said}"
    );
    for f in ["events.parquet", "items.parquet", "users.parquet"] {
        let a = std::fs::read(out.join(f)).expect("in memory");
        let b = std::fs::read(spilled.join(f)).expect("spilled");
        assert!(
            a == b,
            "{f} differs between the in-memory and the spilled sort"
        );
    }
    let left: Vec<String> = std::fs::read_dir(&spilled)
        .expect("out")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&spilled);
}

/// `recpipe import csv` with `args` after `--input FILE --out OUT`.
fn import_csv(input: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["import", "csv", "--input", s(input), "--out", s(out)];
    all.extend_from_slice(args);
    recpipe(&all)
}

/// Every batch of `path` concatenated per column: (user_id, item_id, timestamp, watched,
/// watch_time, rating), ids as text.
type CsvRow = (String, String, i64, bool, Option<f32>, Option<f32>);

fn read_back(path: &Path) -> Vec<CsvRow> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    use arrow_array::Array;
    let f = std::fs::File::open(path).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader");
    let id = |a: &dyn Array, r: usize| match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(r).to_string(),
        _ => a.as_primitive::<Int64Type>().value(r).to_string(),
    };
    let opt = |a: &dyn Array, r: usize| {
        let a = a.as_primitive::<Float32Type>();
        (!a.is_null(r)).then(|| a.value(r))
    };
    let mut rows = Vec::new();
    for batch in reader {
        let b = batch.expect("batch");
        for r in 0..b.num_rows() {
            rows.push((
                id(b.column(0).as_ref(), r),
                id(b.column(1).as_ref(), r),
                b.column(2).as_primitive::<Int64Type>().value(r),
                b.column(3).as_boolean().value(r),
                opt(b.column(4).as_ref(), r),
                opt(b.column(5).as_ref(), r),
            ));
        }
    }
    rows
}

#[test]
fn csv_with_string_users_round_trips_row_for_row() {
    let dir = temp_dir("csv-strings");
    let (input, out) = (dir.join("log.csv"), dir.join("data"));
    let mut text = String::from("\u{feff}uid,note,iid,ts,seen,secs\n");
    let mut want = Vec::new();
    for i in 0..300i64 {
        let user = format!("u{}", i % 17);
        let item = 1000 + (i * 7) % 53;
        // 2024-01-01T00:00:00Z plus i hours and 13 s, written with an offset of i % 5 hours.
        let t = 1_704_067_200 + i * 3600 + 13;
        let off = i % 5;
        let local = t + off * 3600;
        let (d, rem) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let stamp = format!(
            "2024-01-{:02}T{:02}:{:02}:{:02}+0{off}:00",
            1 + d - 19_723,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        let watched = i % 3 != 0;
        let secs = (watched && i % 4 != 0).then_some((i as f32) * 0.5);
        text.push_str(&format!(
            "{user},\"a, \"\"quoted\"\"\nnote {i}\",{item},{stamp},{},{}\n",
            if watched { "yes" } else { "No" },
            secs.map(|x| x.to_string()).unwrap_or_default()
        ));
        want.push((user, item.to_string(), t, watched, secs, None));
    }
    std::fs::write(&input, text).expect("write csv");
    let o = import_csv(
        &input,
        &out,
        &[
            "--user",
            "uid",
            "--item",
            "iid",
            "--time",
            "ts",
            "--time-format",
            "rfc3339",
            "--watched",
            "seen",
            "--watch-time",
            "secs",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("300 events (200 watched"), "{stdout}");
    assert!(stdout.contains("17 users, 53 items"), "{stdout}");
    let events = out.join("events.parquet");
    let mut types = schema_of(&events);
    assert_eq!(types.remove(0), ("user_id".into(), DataType::Utf8, false));
    assert_eq!(types.remove(0), ("item_id".into(), DataType::Int64, false));
    assert_eq!(
        types.remove(0),
        ("timestamp".into(), DataType::Int64, false)
    );
    assert_eq!(
        types.remove(0),
        ("watched".into(), DataType::Boolean, false)
    );
    assert_eq!(
        types.remove(0),
        ("watch_time".into(), DataType::Float32, true)
    );
    assert_eq!(types.remove(0), ("rating".into(), DataType::Float32, true));
    assert!(types.is_empty());
    assert_eq!(read_back(&events), want);
    let names: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["events.parquet"]);
    // The string ids are read back as such.
    let check = recpipe_ok(&["check", "--data", s(&out)]);
    assert!(
        check.contains("300 events, 200 watched, 17 users")
            && check.contains("user ids are strings, item ids integers"),
        "{check}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn csv_with_integer_ids_passes_check() {
    let dir = temp_dir("csv-ints");
    let (input, out) = (dir.join("log.tsv"), dir.join("data"));
    let mut text = String::from("user\titem\ttime\trating\n");
    for i in 0..400i64 {
        let rating = if i % 2 == 0 {
            format!("{}", 1 + i % 5)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{}\t{}\t{}.75\t{rating}\n",
            i % 20,
            -3 + (i * 11) % 40,
            1_600_000_000 + i * 60
        ));
    }
    std::fs::write(&input, text).expect("write tsv");
    let o = import_csv(
        &input,
        &out,
        &[
            "--user", "user", "--item", "item", "--time", "time", "--rating", "rating",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_events_schema(&out.join("events.parquet"), &[]);
    let check = recpipe_ok(&["check", "--data", s(&out)]);
    assert!(
        check.contains("400 events, 400 watched, 20 users")
            && check.contains("user ids are integers, item ids integers"),
        "{check}"
    );
    let ev = recpipe::data::read_events(&out.join("events.parquet"), &[]).expect("events");
    assert_eq!(ev.timestamp[1], 1_600_000_060);
    assert_eq!(ev.item_id[..3], [-3, 8, 19]);
    assert_eq!((ev.rating[0], ev.rating[1]), (Some(1.0), None));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn csv_bad_input_is_one_line_exit_2_and_writes_nothing() {
    let dir = temp_dir("csv-bad");
    let header = "user,item,ts,watched,secs\n";
    let good = "u1,1,2024-01-01 00:00:00,yes,10\nu2,2,2024-01-01 00:00:01,no,\n";
    let cases: [(&str, String, &[&str], &[&str]); 4] = [
        (
            "old",
            format!("{header}{good}u3,3,1985-06-01 00:00:00,yes,1\n"),
            &["--time-format", "%Y-%m-%d %H:%M:%S"],
            &["old.csv: line 4, column 'ts': '1985-06-01 00:00:00' is before 1990-01-01"],
        ),
        (
            "format",
            format!("{header}{good}"),
            &["--time-format", "foo"],
            &["--time-format 'foo': expected unix, unix_ms, rfc3339 or a strftime pattern"],
        ),
        (
            "column",
            format!("{header}{good}"),
            &["--time-format", "%Y-%m-%d %H:%M:%S", "--rating", "stars"],
            &[
                "column.csv: line 1: no column 'stars' (--rating)",
                "'user', 'item', 'ts'",
            ],
        ),
        (
            "secs",
            format!("{header}{good}u3,3,2024-01-02 00:00:00,yes,ten\n"),
            &["--time-format", "%Y-%m-%d %H:%M:%S"],
            &["secs.csv: line 4, column 'secs': 'ten' is not a finite number"],
        ),
    ];
    for (name, text, extra, needles) in cases {
        let input = dir.join(format!("{name}.csv"));
        std::fs::write(&input, text).expect("write csv");
        // Once into a fresh folder, once into one that exists.
        for out in [
            dir.join(format!("{name}-new")),
            dir.join(format!("{name}-old")),
        ] {
            if out.ends_with(format!("{name}-old")) {
                std::fs::create_dir_all(&out).expect("out");
            }
            let mut args = vec!["--user", "user", "--item", "item", "--time", "ts"];
            args.extend_from_slice(&["--watched", "watched", "--watch-time", "secs"]);
            args.extend_from_slice(extra);
            let o = import_csv(&input, &out, &args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{name}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
            for needle in needles {
                assert!(err.contains(needle), "{name}: {err}");
            }
            let left: Vec<_> = std::fs::read_dir(&out)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "{name}: {left:?} left in {}",
                out.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
