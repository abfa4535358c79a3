//! `candidates.parquet` (retrieval's output) and `ranked.parquet` (the ranker's output).

use crate::error::{Error, Result};
use crate::ids::{key_or_number, IdKeys, StringIds};
use crate::output::AtomicFile;
use crate::parquet_io::{ColumnSpec, ParquetIn, ParquetOut};
use arrow_array::builder::{Float32Builder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
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

/// The Arrow schema of `candidates.parquet`, or of `ranked.parquet` when `ranked`; id columns
/// are `Utf8` where the data's ids are strings.
pub fn candidates_schema(ranked: bool, strings: StringIds) -> SchemaRef {
    let id_type = |s: bool| if s { DataType::Utf8 } else { DataType::Int64 };
    let mut f = vec![
        Field::new("user_id", id_type(strings.users), false),
        Field::new("item_id", id_type(strings.items), false),
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
    strings: StringIds,
    /// Rows written.
    pub rows: usize,
}

impl CandidatesWriter {
    /// Starts `candidates.parquet` (or `ranked.parquet` when `ranked`) at `dest`, with string
    /// id columns where `strings` says.
    pub fn create(dest: &Path, ranked: bool, strings: StringIds) -> Result<Self> {
        let schema = candidates_schema(ranked, strings);
        Ok(CandidatesWriter {
            out: ParquetOut::create(dest, schema.clone())?,
            schema,
            ranked,
            strings,
            rows: 0,
        })
    }

    /// Appends rows; `ranking` holds (expected watch time, rank) per row when the file is ranked.
    /// String id columns are written from `users` and `items`, the strings of the surrogates.
    pub fn write(
        &mut self,
        rows: &[Candidate],
        ranking: &[(f32, u32)],
        users: Option<&IdKeys>,
        items: Option<&IdKeys>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids = |string: bool, keys: Option<&IdKeys>, id: &dyn Fn(&Candidate) -> i64| {
            if string {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|c| key_or_number(keys, id(c))),
                )) as ArrayRef
            } else {
                Arc::new(Int64Array::from_iter_values(rows.iter().map(id))) as ArrayRef
            }
        };
        let mut s = Float32Builder::with_capacity(rows.len());
        let mut r = UInt32Builder::with_capacity(rows.len());
        for c in rows {
            s.append_value(c.retrieval_score);
            r.append_value(c.retrieval_rank);
        }
        let mut cols: Vec<ArrayRef> = vec![
            ids(self.strings.users, users, &|c| c.user_id),
            ids(self.strings.items, items, &|c| c.item_id),
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
            ColumnSpec::required("user_id", DataType::Int64).id(),
            ColumnSpec::required("item_id", DataType::Int64).id(),
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

    /// Which id columns hold strings.
    pub fn string_ids(&self) -> StringIds {
        StringIds {
            users: self.input.is_string_id(0),
            items: self.input.is_string_id(1),
        }
    }

    /// The strings of the string user ids read so far.
    pub fn user_keys(&self) -> Option<&IdKeys> {
        self.input.keys(0)
    }

    /// The strings of the string item ids read so far.
    pub fn item_keys(&self) -> Option<&IdKeys> {
        self.input.keys(1)
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
