//! Reading events in the types other writers produce.

use super::*;
use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, TimestampMicrosecondArray, UInt32Array,
    UInt64Array,
};
use arrow_schema::{Field, Schema};
use std::sync::Arc;

/// Writes `columns` to `path` as one Parquet file.
fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut out = ParquetOut::create(path, schema).unwrap();
    out.write(&batch).unwrap();
    out.finish().unwrap().commit().unwrap();
}

#[test]
fn files_in_pandas_spark_and_duckdb_types_read_as_the_canonical_file() {
    let dir = std::env::temp_dir().join(format!("recpipe-events-types-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let canonical = Events {
        user_id: vec![1, 2, 2],
        item_id: vec![10, 11, 12],
        timestamp: vec![1_704_067_200, 1_704_067_201, 1_704_153_600],
        watched: vec![true, false, true],
        watch_time: vec![Some(12.5), None, Some(3.0)],
        rating: vec![Some(4.0), None, None],
        extra: Vec::new(),
        ids: Default::default(),
    };
    let canonical_path = dir.join("canonical.parquet");
    write_events_file(&canonical_path, &canonical)
        .unwrap()
        .commit()
        .unwrap();
    // pandas: Int32 / UInt32 ids, a UTC microsecond datetime, 0/1 integers, float64.
    let pandas_path = dir.join("pandas.parquet");
    let micros: Vec<i64> = canonical
        .timestamp
        .iter()
        .map(|t| t * 1_000_000 + 250)
        .collect();
    write(
        &pandas_path,
        vec![
            (
                "user_id",
                Arc::new(Int32Array::from(vec![1, 2, 2])) as ArrayRef,
            ),
            ("item_id", Arc::new(UInt32Array::from(vec![10, 11, 12]))),
            (
                "timestamp",
                Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC")),
            ),
            ("watched", Arc::new(Int64Array::from(vec![1, 0, 1]))),
            (
                "watch_time",
                Arc::new(Float64Array::from(vec![Some(12.5), None, Some(3.0)])),
            ),
            (
                "rating",
                Arc::new(Float64Array::from(vec![Some(4.0), None, None])),
            ),
        ],
    );
    let a = read_events(&canonical_path, &[]).unwrap();
    let b = read_events(&pandas_path, &[]).unwrap();
    assert_eq!(
        (
            a.user_id,
            a.item_id,
            a.timestamp,
            a.watched,
            a.watch_time,
            a.rating
        ),
        (
            b.user_id,
            b.item_id,
            b.timestamp,
            b.watched,
            b.watch_time,
            b.rating
        )
    );
    // What does not fit is a one-line error naming the file, column and row.
    let big = dir.join("big.parquet");
    write(
        &big,
        vec![
            (
                "user_id",
                Arc::new(UInt64Array::from(vec![1, u64::MAX])) as ArrayRef,
            ),
            ("item_id", Arc::new(Int64Array::from(vec![1, 2]))),
            (
                "timestamp",
                Arc::new(Int64Array::from(vec![1_704_067_200; 2])),
            ),
            ("watched", Arc::new(Int64Array::from(vec![1, 2]))),
            ("watch_time", Arc::new(Float64Array::from(vec![None, None]))),
            ("rating", Arc::new(Float64Array::from(vec![None, None]))),
        ],
    );
    let err = read_events(&big, &[]).unwrap_err().to_string();
    assert!(
        err.contains("big.parquet") && err.contains("column 'user_id', row 2"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // A type with no lossless reading names what is accepted.
    let text = dir.join("text.parquet");
    write(
        &text,
        vec![(
            "timestamp",
            Arc::new(Float64Array::from(vec![1.5])) as ArrayRef,
        )],
    );
    let err = ParquetIn::open(
        &text,
        &[ColumnSpec::required("timestamp", DataType::Int64).unix_seconds()],
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("Timestamp or a Date32"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_label_column_outside_0_1_is_a_one_line_error_naming_file_column_and_row() {
    let dir = std::env::temp_dir().join(format!("recpipe-events-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut events = Events {
        user_id: vec![1, 2, 2],
        item_id: vec![10, 11, 12],
        timestamp: vec![1_704_067_200, 1_704_067_201, 1_704_153_600],
        watched: vec![true, false, true],
        watch_time: vec![Some(12.5), None, Some(3.0)],
        rating: vec![None; 3],
        extra: vec![
            ("is_like".into(), vec![0, 1, 0]),
            ("position".into(), vec![3, 7, 2]),
        ],
        ids: Default::default(),
    };
    let path = dir.join("events.parquet");
    write_events_file(&path, &events).unwrap().commit().unwrap();
    let read = read_events(&path, crate::dataset::USED_EXTRA_COLUMNS).unwrap();
    assert_eq!(read.extra("is_like"), Some(&[0, 1, 0][..]));
    // Any Int64 is fine in other extra columns, not in a label column.
    events.extra[0].1[2] = 2;
    write_events_file(&path, &events).unwrap().commit().unwrap();
    let err = read_events(&path, crate::dataset::USED_EXTRA_COLUMNS)
        .unwrap_err()
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.contains("events.parquet")
            && err.contains("column 'is_like', row 3: 2 is not 0 or 1")
            && !err.contains('\n'),
        "{err}"
    );
}
