//! A data table as a folder of part files, as Spark, DuckDB and Polars write it: the part files
//! in name order, and the values of Hive-style partitions (`date=2024-01-01/part-0.parquet`),
//! which [`crate::parquet_io::ParquetIn`] reads as columns.

use crate::error::{Error, Result};
use crate::parquet_io::{accepted, ColumnSpec};
use crate::parquet_types::Meaning;
use arrow_array::{ArrayRef, BooleanArray, Float32Array, Int64Array, StringArray};
use arrow_schema::DataType;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A part file and its partition values (`None`: Hive's null partition).
pub type PartFile = (PathBuf, Vec<(String, Option<String>)>);

/// The Parquet files of `path`: itself, or the `.parquet` files under the folder (recursively,
/// in name order; names starting with `_` or `.` are skipped, as Spark's `_SUCCESS` and `.crc`
/// files), each with its Hive partition values (`key=value` folder names).
pub fn part_files(path: &Path) -> Result<Vec<PartFile>> {
    if !path.is_dir() {
        return Ok(vec![(path.to_path_buf(), Vec::new())]);
    }
    fn walk(
        dir: &Path,
        partition: &[(String, Option<String>)],
        out: &mut Vec<PartFile>,
    ) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                let mut part = partition.to_vec();
                if let Some((k, v)) = name.split_once('=') {
                    let v = percent_decode(v);
                    let value = (v != "__HIVE_DEFAULT_PARTITION__").then_some(v);
                    part.push((k.to_string(), value));
                }
                walk(&p, &part, out)?;
            } else if name.ends_with(".parquet") || name.ends_with(".parq") {
                out.push((p, partition.to_vec()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(path, &[], &mut out)?;
    if out.is_empty() {
        return Err(Error::input(
            path,
            "the folder holds no .parquet files (a folder of parts must hold *.parquet files)",
        ));
    }
    Ok(out)
}

/// `%XX` escapes decoded, as Spark and Hive write special characters in partition values.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A partition value as a column of `n` rows for `spec`: integers as `Int64`; a `YYYY-MM-DD`
/// date as Unix seconds for a time and as the number YYYYMMDD for another `Int64` column (the
/// `date` column's convention); numbers for `Float32`; `true`/`false`/`0`/`1` for `Boolean`;
/// otherwise a string (read as an id or a category).
pub fn partition_column(
    value: Option<&str>,
    spec: &ColumnSpec,
    n: usize,
) -> std::result::Result<ArrayRef, String> {
    let Some(v) = value else {
        return Ok(arrow_array::new_null_array(&spec.data_type, n));
    };
    let bad = || {
        format!(
            "partition value '{v}' of column '{}' cannot be read as {}",
            spec.name,
            accepted(&spec.data_type, spec.meaning)
        )
    };
    let date = || -> Option<(i64, u32, u32)> {
        let mut it = v.splitn(3, '-');
        let y = it.next()?.parse::<i64>().ok()?;
        let m = it.next()?.parse::<u32>().ok()?;
        let d = it.next()?.parse::<u32>().ok()?;
        (v.len() == 10 && (1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
    };
    let strings = || Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    Ok(match &spec.data_type {
        DataType::Int64 => {
            let x = match (v.parse::<i64>(), date(), spec.meaning) {
                (Ok(x), _, _) => x,
                (_, _, Meaning::Id) => return Ok(strings()),
                (_, Some((y, m, d)), Meaning::UnixSeconds) => {
                    crate::calendar::days_from_civil(y, m, d) * 86_400
                }
                (_, Some((y, m, d)), Meaning::Value) => {
                    y * 10_000 + i64::from(m) * 100 + i64::from(d)
                }
                (_, None, _) => return Err(bad()),
            };
            Arc::new(Int64Array::from(vec![x; n]))
        }
        DataType::Float32 => {
            let x = v.parse::<f32>().map_err(|_| bad())?;
            Arc::new(Float32Array::from(vec![x; n]))
        }
        DataType::Boolean => {
            let x = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(bad()),
            };
            Arc::new(BooleanArray::from(vec![x; n]))
        }
        DataType::Utf8 => strings(),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;

    #[test]
    fn parts_in_name_order_with_partition_values_and_markers_skipped() {
        let dir = std::env::temp_dir().join(format!("recpipe-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for p in [
            "date=2024-01-02/part-0.parquet",
            "date=2024-01-01/part-1.parquet",
            "date=2024-01-01/part-0.parquet",
            "date=__HIVE_DEFAULT_PARTITION__/part-0.parquet",
            "date=2024-01-01/.part-0.parquet.crc",
            "_SUCCESS",
            "_temporary/part-9.parquet",
            "country=c%C3%B4te%20d%27ivoire/part-0.parquet",
        ] {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b"x").unwrap();
        }
        let parts = part_files(&dir).unwrap();
        let names: Vec<String> = parts
            .iter()
            .map(|(p, _)| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "country=c%C3%B4te%20d%27ivoire/part-0.parquet",
                "date=2024-01-01/part-0.parquet",
                "date=2024-01-01/part-1.parquet",
                "date=2024-01-02/part-0.parquet",
                "date=__HIVE_DEFAULT_PARTITION__/part-0.parquet",
            ]
        );
        assert_eq!(
            parts[0].1,
            vec![("country".into(), Some("côte d'ivoire".into()))]
        );
        assert_eq!(parts[1].1, vec![("date".into(), Some("2024-01-01".into()))]);
        assert_eq!(parts[4].1, vec![("date".into(), None)]);
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = part_files(&empty).unwrap_err().to_string();
        assert!(err.contains("holds no .parquet files"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn partition_values_as_columns() {
        let int = |spec: ColumnSpec, v: &str| {
            partition_column(Some(v), &spec, 2)
                .map(|a| a.as_primitive::<Int64Type>().values().to_vec())
        };
        let date = ColumnSpec::optional("date", DataType::Int64);
        assert_eq!(int(date.clone(), "2024-01-31"), Ok(vec![20_240_131; 2]));
        assert_eq!(int(date.clone(), "20240131"), Ok(vec![20_240_131; 2]));
        let time = ColumnSpec::required("timestamp", DataType::Int64).unix_seconds();
        assert_eq!(int(time, "2024-01-01"), Ok(vec![1_704_067_200; 2]));
        let err = int(date.clone(), "yesterday").unwrap_err();
        assert!(
            err.contains("partition value 'yesterday' of column 'date'"),
            "{err}"
        );
        let id = ColumnSpec::required("user_id", DataType::Int64).id();
        let a = partition_column(Some("alice"), &id, 2).unwrap();
        assert_eq!(a.data_type(), &DataType::Utf8);
        let nulls = partition_column(None, &date, 3).unwrap();
        assert_eq!(nulls.null_count(), 3);
        let flag = ColumnSpec::required("watched", DataType::Boolean);
        assert!(partition_column(Some("true"), &flag, 1).is_ok());
        assert!(partition_column(Some("maybe"), &flag, 1).is_err());
    }
}
