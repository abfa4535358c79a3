//! `candidates.parquet` (retrieval's output) and `ranked.parquet` (the ranker's output).

use crate::error::{Error, Result};
use crate::output::AtomicFile;
use crate::parquet_io::{ColumnSpec, ParquetIn, ParquetOut};
use arrow_array::builder::{Float32Builder, Int64Builder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::path::Path;
use std::sync::Arc;

/// One retrieved candidate, and its ranking when it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The user.
    pub user_id: i64,
    /// The candidate item.
    pub item_id: i64,
    /// u.v + b from the retrieval model.
    pub retrieval_score: f32,
    /// 1-based position in the user's retrieved list.
    pub retrieval_rank: u32,
}

/// The Arrow schema of `candidates.parquet`, or of `ranked.parquet` when `ranked`.
pub fn candidates_schema(ranked: bool) -> SchemaRef {
    let mut f = vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new("retrieval_score", DataType::Float32, false),
        Field::new("retrieval_rank", DataType::UInt32, false),
    ];
    if ranked {
        f.push(Field::new("expected_watch_time", DataType::Float32, false));
        f.push(Field::new("rank", DataType::UInt32, false));
    }
    Arc::new(Schema::new(f))
}

/// Streams candidates (optionally with ranking columns) to Parquet in row groups.
pub struct CandidatesWriter {
    out: ParquetOut,
    schema: SchemaRef,
    ranked: bool,
    /// Rows written.
    pub rows: usize,
}

impl CandidatesWriter {
    /// Starts `candidates.parquet` (or `ranked.parquet` when `ranked`) at `dest`.
    pub fn create(dest: &Path, ranked: bool) -> Result<Self> {
        let schema = candidates_schema(ranked);
        Ok(CandidatesWriter {
            out: ParquetOut::create(dest, schema.clone())?,
            schema,
            ranked,
            rows: 0,
        })
    }

    /// Appends rows; `ranking` holds (expected watch time, rank) per row when the file is ranked.
    pub fn write(&mut self, rows: &[Candidate], ranking: &[(f32, u32)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut u = Int64Builder::with_capacity(rows.len());
        let mut i = Int64Builder::with_capacity(rows.len());
        let mut s = Float32Builder::with_capacity(rows.len());
        let mut r = UInt32Builder::with_capacity(rows.len());
        for c in rows {
            u.append_value(c.user_id);
            i.append_value(c.item_id);
            s.append_value(c.retrieval_score);
            r.append_value(c.retrieval_rank);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(u.finish()),
            Arc::new(i.finish()),
            Arc::new(s.finish()),
            Arc::new(r.finish()),
        ];
        if self.ranked {
            let mut w = Float32Builder::with_capacity(rows.len());
            let mut k = UInt32Builder::with_capacity(rows.len());
            for &(t, rank) in ranking {
                w.append_value(t);
                k.append_value(rank);
            }
            cols.push(Arc::new(w.finish()));
            cols.push(Arc::new(k.finish()));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| Error::Other(format!("candidates batch: {e}")))?;
        self.rows += rows.len();
        self.out.write(&batch)
    }

    /// Completes the file; commit the returned file to rename it into place.
    pub fn finish(self) -> Result<AtomicFile> {
        self.out.finish()
    }
}

/// Streams `candidates.parquet` batch by batch, validated: ids non-null, scores finite.
pub struct CandidatesReader {
    input: ParquetIn,
}

impl CandidatesReader {
    /// Opens `path` and checks its schema.
    pub fn open(path: &Path) -> Result<Self> {
        let specs = vec![
            ColumnSpec::required("user_id", DataType::Int64),
            ColumnSpec::required("item_id", DataType::Int64),
            ColumnSpec::optional("retrieval_score", DataType::Float32),
            ColumnSpec::optional("retrieval_rank", DataType::UInt32),
        ];
        Ok(CandidatesReader {
            input: ParquetIn::open(path, &specs)?,
        })
    }

    /// Rows in the file.
    pub fn num_rows(&self) -> usize {
        self.input.num_rows
    }

    /// The next batch of candidates, or `None` at the end. A missing score is NaN and a missing
    /// rank 0.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Candidate>>> {
        let Some((first, batch)) = self.input.next_batch()? else {
            return Ok(None);
        };
        let path = self.input.path().to_path_buf();
        let users = self
            .input
            .column(&batch, 0)
            .map(|a| a.as_primitive::<Int64Type>());
        let items = self
            .input
            .column(&batch, 1)
            .map(|a| a.as_primitive::<Int64Type>());
        let (Some(users), Some(items)) = (users, items) else {
            return Err(Error::input(&path, "missing user_id or item_id"));
        };
        let scores = self
            .input
            .column(&batch, 2)
            .map(|a| a.as_primitive::<Float32Type>());
        let ranks = self
            .input
            .column(&batch, 3)
            .map(|a| a.as_primitive::<UInt32Type>());
        let mut out = Vec::with_capacity(batch.num_rows());
        for r in 0..batch.num_rows() {
            for (name, a) in [("user_id", users), ("item_id", items)] {
                if a.is_null(r) {
                    return Err(Error::input(
                        &path,
                        format!("column '{name}', row {}: null id", first + r),
                    ));
                }
            }
            let score = scores
                .filter(|s| !s.is_null(r))
                .map(|s| s.value(r))
                .unwrap_or(f32::NAN);
            if score.is_infinite() {
                return Err(Error::input(
                    &path,
                    format!(
                        "column 'retrieval_score', row {}: infinite score",
                        first + r
                    ),
                ));
            }
            out.push(Candidate {
                user_id: users.value(r),
                item_id: items.value(r),
                retrieval_score: score,
                retrieval_rank: ranks
                    .filter(|k| !k.is_null(r))
                    .map(|k| k.value(r))
                    .unwrap_or(0),
            });
        }
        Ok(Some(out))
    }
}
