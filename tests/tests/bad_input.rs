//! Bad input: each case gets a one-line error naming the file, column and row, exit code 2, and
//! no output left behind.

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use recpipe_tests::{recpipe, temp_dir};
use std::path::Path;
use std::sync::Arc;

/// A column of the events file under test.
enum Col {
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    Bool(Vec<bool>),
    Str(Vec<&'static str>),
    /// Unsigned 64-bit ids, as some writers produce.
    U64(Vec<u64>),
    /// pandas' datetime: microseconds since 1970 in UTC.
    Micros(Vec<i64>),
}

fn write(path: &Path, cols: Vec<(&str, Col)>) {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (name, c) in cols {
        let (t, a): (DataType, ArrayRef) = match c {
            Col::I64(v) => (DataType::Int64, Arc::new(Int64Array::from(v))),
            Col::F32(v) => (DataType::Float32, Arc::new(Float32Array::from(v))),
            Col::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v))),
            Col::Str(v) => (DataType::Utf8, Arc::new(StringArray::from(v))),
            Col::U64(v) => (DataType::UInt64, Arc::new(UInt64Array::from(v))),
            Col::Micros(v) => {
                let a = TimestampMicrosecondArray::from(v).with_timezone("UTC");
                (a.data_type().clone(), Arc::new(a))
            }
        };
        fields.push(Field::new(name, t, true));
        arrays.push(a);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("batch");
    let f = std::fs::File::create(path).expect("create");
    let mut w = ArrowWriter::try_new(f, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// A valid three-event file's columns; cases change one of them.
fn good() -> Vec<(&'static str, Col)> {
    vec![
        ("user_id", Col::I64(vec![Some(1), Some(1), Some(2)])),
        ("item_id", Col::I64(vec![Some(10), Some(11), Some(10)])),
        (
            "timestamp",
            Col::I64(vec![
                Some(1_600_000_000),
                Some(1_600_000_100),
                Some(1_600_000_200),
            ]),
        ),
        ("watched", Col::Bool(vec![true, false, true])),
        ("watch_time", Col::F32(vec![Some(12.5), None, Some(3.0)])),
        ("rating", Col::F32(vec![None, None, None])),
    ]
}

fn with(name: &str, col: Col) -> Vec<(&'static str, Col)> {
    let mut col = Some(col);
    good()
        .into_iter()
        .map(|(n, c)| match (n == name, col.take_if(|_| n == name)) {
            (true, Some(new)) => (n, new),
            _ => (n, c),
        })
        .collect()
}

/// Runs `recpipe check` on a data folder holding `events.parquet` and returns stderr, after
/// asserting exit code 2, a one-line message and that it names every piece of `expect`.
fn expect_rejected(dir: &Path, expect: &[&str]) -> String {
    let out = recpipe(&["check", "--data", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for piece in expect {
        assert!(err.contains(piece), "{err:?} lacks {piece:?}");
    }
    err
}

fn case(tag: &str, cols: Vec<(&'static str, Col)>, expect: &[&str]) {
    let dir = temp_dir(tag);
    write(&dir.join("events.parquet"), cols);
    expect_rejected(&dir, expect);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn valid_file_passes() {
    let dir = temp_dir("good");
    write(&dir.join("events.parquet"), good());
    let out = recpipe(&["check", "--data", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_required_column() {
    let cols = good()
        .into_iter()
        .filter(|(n, _)| *n != "watched")
        .collect();
    case(
        "missing",
        cols,
        &["events.parquet", "missing required column 'watched'"],
    );
}

#[test]
fn mistyped_column() {
    case(
        "mistyped",
        with("item_id", Col::F32(vec![Some(1.0), Some(2.0), Some(3.0)])),
        &[
            "events.parquet",
            "column 'item_id'",
            "Float32",
            "expected Int64 (or another integer type, or strings)",
        ],
    );
}

#[test]
fn text_where_a_boolean_belongs() {
    case(
        "watched-text",
        with("watched", Col::Str(vec!["yes", "no", "yes"])),
        &[
            "events.parquet",
            "column 'watched' has type Utf8",
            "expected Boolean (or 0/1 integers)",
        ],
    );
}

#[test]
fn unsigned_id_above_the_signed_range() {
    case(
        "u64",
        with("user_id", Col::U64(vec![1, u64::MAX, 2])),
        &[
            "events.parquet",
            "column 'user_id', row 2",
            "18446744073709551615 does not fit in a signed 64-bit integer",
        ],
    );
}

#[test]
fn datetime_before_1990() {
    // 1985-06-01T00:00:00Z as a pandas datetime.
    case(
        "ts1985",
        with(
            "timestamp",
            Col::Micros(vec![1_600_000_000_000_000, 486_432_000_000_000, 1]),
        ),
        &[
            "events.parquet",
            "column 'timestamp', row 2",
            "486432000 is outside 1990..2100",
        ],
    );
}

#[test]
fn null_id() {
    case(
        "nullid",
        with("user_id", Col::I64(vec![Some(1), None, Some(2)])),
        &["events.parquet", "column 'user_id', row 2", "null"],
    );
}

#[test]
fn negative_watch_time() {
    case(
        "negwt",
        with("watch_time", Col::F32(vec![Some(12.5), None, Some(-1.0)])),
        &["column 'watch_time', row 3", "-1"],
    );
}

#[test]
fn nan_watch_time() {
    case(
        "nanwt",
        with(
            "watch_time",
            Col::F32(vec![Some(f32::NAN), None, Some(1.0)]),
        ),
        &["column 'watch_time', row 1", "NaN"],
    );
}

#[test]
fn infinite_watch_time() {
    case(
        "infwt",
        with(
            "watch_time",
            Col::F32(vec![Some(f32::INFINITY), None, Some(1.0)]),
        ),
        &["column 'watch_time', row 1", "inf"],
    );
}

#[test]
fn watch_time_on_unwatched_impression() {
    case(
        "unwatched",
        with(
            "watch_time",
            Col::F32(vec![Some(12.5), Some(4.0), Some(3.0)]),
        ),
        &["column 'watch_time', row 2", "unwatched"],
    );
}

#[test]
fn timestamp_out_of_range() {
    case(
        "ts",
        with(
            "timestamp",
            Col::I64(vec![Some(1_600_000_000), Some(1_600_000_000_000), Some(1)]),
        ),
        &["column 'timestamp', row 2", "1990..2100"],
    );
}

fn raw_case(tag: &str, bytes: &[u8], expect: &[&str]) {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("events.parquet"), bytes).expect("write");
    expect_rejected(&dir, expect);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn empty_file() {
    raw_case("empty", b"", &["events.parquet", "empty"]);
}

#[test]
fn not_parquet() {
    raw_case(
        "csv",
        b"user_id,item_id\n1,2\n",
        &["events.parquet", "not a readable Parquet file"],
    );
}

#[test]
fn truncated_parquet() {
    let dir = temp_dir("trunc-src");
    let p = dir.join("events.parquet");
    write(&p, good());
    let bytes = std::fs::read(&p).expect("read");
    raw_case(
        "trunc",
        &bytes[..bytes.len() / 2],
        &["events.parquet", "Parquet"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zero_rows() {
    let cols = vec![
        ("user_id", Col::I64(vec![])),
        ("item_id", Col::I64(vec![])),
        ("timestamp", Col::I64(vec![])),
        ("watched", Col::Bool(vec![])),
        ("watch_time", Col::F32(vec![])),
        ("rating", Col::F32(vec![])),
    ];
    case("zerorows", cols, &["events.parquet", "no events"]);
}

fn out_absent(out: &Path) {
    assert!(!out.exists(), "{} was left behind", out.display());
}

#[test]
fn csv_row_with_wrong_field_count() {
    let root = temp_dir("csvfields");
    let input = root.join("ml");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("u.data"), "1\t2\t5\t881250949\n1\t3\t4\n").expect("write");
    let out = root.join("out");
    let o = recpipe(&[
        "import",
        "movielens",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
    assert!(
        err.contains("u.data: line 2: expected 4 fields, found 3"),
        "{err}"
    );
    out_absent(&out);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn csv_bad_number_leaves_existing_output_folder_clean() {
    let root = temp_dir("csvnum");
    let input = root.join("ml");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(
        input.join("ratings.csv"),
        "userId,movieId,rating,timestamp\n1,2,4.0,964982703\n1,x,4.0,964982703\n",
    )
    .expect("write");
    let out = root.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let o = recpipe(&[
        "import",
        "movielens",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ratings.csv: line 3, column 'item_id': 'x'"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&out).expect("list").collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
}
