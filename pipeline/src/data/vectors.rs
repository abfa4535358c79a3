//! `item_vectors.parquet` and `user_vectors.parquet`: an id, a `FixedSizeList<Float32, d>`
//! vector and, for items, the softmax bias.

use crate::error::{Error, Result};
use crate::output::AtomicFile;
use crate::parquet_io::{ColumnSpec, ParquetIn, ParquetOut};
use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Int64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::path::Path;
use std::sync::Arc;

/// Vectors keyed by id, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdVectors {
    /// The ids (items or users).
    pub ids: Vec<i64>,
    /// Dimension.
    pub dim: usize,
    /// `ids.len() * dim` values.
    pub data: Vec<f32>,
    /// One bias per id (items); empty for users.
    pub bias: Vec<f32>,
}

fn vector_type(dim: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, false)),
        dim as i32,
    )
}

fn schema(id_col: &str, dim: usize, with_bias: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new(id_col, DataType::Int64, false),
        Field::new("vector", vector_type(dim), false),
    ];
    if with_bias {
        fields.push(Field::new("bias", DataType::Float32, false));
    }
    Arc::new(Schema::new(fields))
}

/// Writes `v` with id column `id_col` (`item_id` or `user_id`); the bias column is written when
/// `v.bias` is non-empty. The file is renamed into place when the returned file is committed.
pub fn write_vectors(dest: &Path, id_col: &str, v: &IdVectors) -> Result<AtomicFile> {
    let with_bias = !v.bias.is_empty();
    let schema = schema(id_col, v.dim, with_bias);
    let mut out = ParquetOut::create(dest, schema.clone())?;
    const CHUNK: usize = 32 * 1024;
    let mut start = 0;
    while start < v.ids.len() {
        let end = (start + CHUNK).min(v.ids.len());
        let mut ids = Int64Builder::new();
        ids.append_slice(&v.ids[start..end]);
        let mut vec = FixedSizeListBuilder::new(Float32Builder::new(), v.dim as i32)
            .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
        for r in start..end {
            vec.values()
                .append_slice(&v.data[r * v.dim..(r + 1) * v.dim]);
            vec.append(true);
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(vec.finish())];
        if with_bias {
            let mut b = Float32Builder::new();
            b.append_slice(&v.bias[start..end]);
            cols.push(Arc::new(b.finish()));
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| Error::Other(format!("vectors batch: {e}")))?;
        out.write(&batch)?;
        start = end;
    }
    out.finish()
}

/// Reads a vectors file with id column `id_col`; the bias column is read when present. Every
/// value must be finite.
pub fn read_vectors(path: &Path, id_col: &str) -> Result<IdVectors> {
    let specs = vec![
        ColumnSpec::required(id_col, DataType::Int64),
        ColumnSpec::required("vector", vector_type(0)),
        ColumnSpec::optional("bias", DataType::Float32),
    ];
    let mut input = ParquetIn::open(path, &specs)?;
    let mut out = IdVectors::default();
    let has_bias = input.has(2);
    while let Some((first, batch)) = input.next_batch()? {
        let bad = |col: &str, r: usize, what: &str| {
            Error::input(path, format!("column '{col}', row {}: {what}", first + r))
        };
        let ids = input
            .column(&batch, 0)
            .map(|a| a.as_primitive::<Int64Type>())
            .ok_or_else(|| Error::input(path, format!("missing required column '{id_col}'")))?;
        let list = input
            .column(&batch, 1)
            .map(|a| a.as_fixed_size_list())
            .ok_or_else(|| Error::input(path, "missing required column 'vector'"))?;
        let dim = list.value_length() as usize;
        if out.dim == 0 {
            out.dim = dim;
        }
        if dim == 0 || dim != out.dim {
            return Err(Error::input(
                path,
                format!("column 'vector': dimension {dim}"),
            ));
        }
        let values = list.values().as_primitive::<Float32Type>();
        for r in 0..batch.num_rows() {
            if ids.is_null(r) {
                return Err(bad(id_col, r, "null id"));
            }
            if list.is_null(r) {
                return Err(bad("vector", r, "null vector"));
            }
            let off = list.value_offset_at(r);
            let row = &values.values()[off..off + dim];
            if row.iter().any(|x| !x.is_finite()) {
                return Err(bad("vector", r, "non-finite value"));
            }
            out.ids.push(ids.value(r));
            out.data.extend_from_slice(row);
        }
        if has_bias {
            if let Some(b) = input
                .column(&batch, 2)
                .map(|a| a.as_primitive::<Float32Type>())
            {
                for r in 0..batch.num_rows() {
                    if b.is_null(r) || !b.value(r).is_finite() {
                        return Err(bad("bias", r, "null or non-finite bias"));
                    }
                    out.bias.push(b.value(r));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("recpipe-vec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("item_vectors.parquet");
        let v = IdVectors {
            ids: vec![5, 9, 2],
            dim: 2,
            data: vec![1.0, 2.0, 3.0, 4.0, -5.0, 0.5],
            bias: vec![0.1, 0.2, 0.3],
        };
        write_vectors(&p, "item_id", &v)
            .expect("write")
            .commit()
            .expect("commit");
        assert_eq!(read_vectors(&p, "item_id").expect("read"), v);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
