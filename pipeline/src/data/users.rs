//! `users.parquet`: `user_id` plus optional categorical (`Utf8`) and numeric columns.

use crate::data::items::string_at;
use crate::error::{Error, Result};
use crate::ids::IdSpelling;
use crate::output::AtomicFile;
use crate::parquet_io::{ColumnSpec, ParquetIn, ParquetOut};
use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// User side features, column by column.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// `user_id` column (unique).
    pub user_id: Vec<i64>,
    /// Categorical columns: name and one value per user.
    pub categorical: Vec<(String, Vec<Option<String>>)>,
    /// Numeric columns: name and one value per user.
    pub numeric: Vec<(String, Vec<Option<f64>>)>,
    /// How the file spelt its user ids (string ids are held as surrogates).
    pub ids: IdSpelling,
}

impl Users {
    /// Number of users.
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }
}

/// Writes `users` to `dest` (under a temporary name until the returned file is committed).
pub fn write_users(dest: &Path, users: &Users) -> Result<AtomicFile> {
    let mut fields = vec![Field::new("user_id", DataType::Int64, false)];
    fields.extend(
        users
            .categorical
            .iter()
            .map(|(n, _)| Field::new(n, DataType::Utf8, true)),
    );
    fields.extend(
        users
            .numeric
            .iter()
            .map(|(n, _)| Field::new(n, DataType::Float64, true)),
    );
    let schema = Arc::new(Schema::new(fields));
    let mut out = ParquetOut::create(dest, schema.clone())?;
    const CHUNK: usize = 64 * 1024;
    let mut start = 0;
    while start < users.len() {
        let end = (start + CHUNK).min(users.len());
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut ids = Int64Builder::new();
        ids.append_slice(&users.user_id[start..end]);
        cols.push(Arc::new(ids.finish()));
        for (_, vals) in &users.categorical {
            let mut b = StringBuilder::new();
            for v in &vals[start..end] {
                b.append_option(v.as_deref());
            }
            cols.push(Arc::new(b.finish()));
        }
        for (_, vals) in &users.numeric {
            let mut b = Float64Builder::new();
            for v in &vals[start..end] {
                b.append_option(*v);
            }
            cols.push(Arc::new(b.finish()));
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| Error::Other(format!("users batch: {e}")))?;
        out.write(&batch)?;
        start = end;
    }
    out.finish()
}

/// Reads `users.parquet`: `user_id` (required, non-null, unique), every `Utf8` column as a
/// categorical feature and every integer or float column as a numeric one; other types are
/// ignored.
pub fn read_users(path: &Path) -> Result<Users> {
    // Learn the schema first, then project to the usable columns.
    let probe = ParquetIn::open(
        path,
        &[ColumnSpec::required("user_id", DataType::Int64).id()],
    )?;
    let schema = probe.schema();
    drop(probe);
    let mut cat_names = Vec::new();
    let mut num_names = Vec::new();
    for f in schema.fields() {
        if f.name() == "user_id" {
            continue;
        }
        match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                cat_names.push(f.name().clone())
            }
            DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64 => {
                num_names.push((f.name().clone(), f.data_type().clone()))
            }
            _ => {}
        }
    }
    let mut specs = vec![ColumnSpec::required("user_id", DataType::Int64).id()];
    for n in &cat_names {
        let t = schema
            .field_with_name(n)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Utf8);
        specs.push(ColumnSpec::required(n, t));
    }
    for (n, t) in &num_names {
        specs.push(ColumnSpec::required(n, t.clone()));
    }
    let mut input = ParquetIn::open(path, &specs)?;
    let mut users = Users {
        categorical: cat_names.iter().map(|n| (n.clone(), Vec::new())).collect(),
        numeric: num_names
            .iter()
            .map(|(n, _)| (n.clone(), Vec::new()))
            .collect(),
        ..Default::default()
    };
    let mut seen = HashSet::new();
    while let Some((first, batch)) = input.next_batch()? {
        let path = input.path().to_path_buf();
        let path = path.as_path();
        let n = batch.num_rows();
        let ids = input
            .column(&batch, 0)
            .map(|a| a.as_primitive::<Int64Type>())
            .ok_or_else(|| Error::input(path, "missing required column 'user_id'"))?;
        for r in 0..n {
            if ids.is_null(r) {
                return Err(Error::input(
                    path,
                    format!("column 'user_id', row {}: null id", first + r),
                ));
            }
            if !seen.insert(ids.value(r)) {
                return Err(Error::input(
                    path,
                    format!(
                        "column 'user_id', row {}: duplicate user id {}",
                        first + r,
                        ids.value(r)
                    ),
                ));
            }
            users.user_id.push(ids.value(r));
        }
        for (k, (_, vals)) in users.categorical.iter_mut().enumerate() {
            if let Some(a) = input.column(&batch, 1 + k) {
                vals.extend((0..n).map(|r| string_at(a, r)));
            }
        }
        let base = 1 + cat_names.len();
        for (k, (_, vals)) in users.numeric.iter_mut().enumerate() {
            if let Some(a) = input.column(&batch, base + k) {
                vals.extend((0..n).map(|r| numeric_at(a, r)));
            }
        }
    }
    users.ids = IdSpelling::from_keys(input.keys(0).cloned());
    Ok(users)
}

fn numeric_at(a: &dyn Array, r: usize) -> Option<f64> {
    if a.is_null(r) {
        return None;
    }
    let v = match a.data_type() {
        DataType::Int32 => a.as_primitive::<Int32Type>().value(r) as f64,
        DataType::Int64 => a.as_primitive::<Int64Type>().value(r) as f64,
        DataType::Float32 => a.as_primitive::<Float32Type>().value(r) as f64,
        DataType::Float64 => a.as_primitive::<Float64Type>().value(r),
        _ => return None,
    };
    v.is_finite().then_some(v)
}
