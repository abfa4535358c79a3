//! Parquet reading and writing shared by every stage: files are written in row groups under a
//! temporary name and read back as a stream of record batches, after checking the schema.

use crate::error::{Error, Result};
use crate::ids::IdKeys;
use crate::output::AtomicFile;
use crate::parquet_parts::{part_files, partition_column};
use crate::parquet_types::{convert, convertible, is_string, strings_to_ids, Meaning};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group: bounds the writer's memory whatever the file size.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;
/// Rows per record batch when reading.
pub const READ_BATCH_ROWS: usize = 64 * 1024;

/// A Parquet file being written; [`ParquetOut::finish`] closes it and returns the pending rename.
pub struct ParquetOut {
    file: AtomicFile,
    writer: ArrowWriter<File>,
}

impl ParquetOut {
    /// Starts `dest` with `schema` (snappy compression, row groups of [`ROW_GROUP_ROWS`]).
    pub fn create(dest: &Path, schema: SchemaRef) -> Result<Self> {
        let (file, handle) = AtomicFile::create(dest)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by("recpipe".to_string())
            .build();
        let writer = ArrowWriter::try_new(handle, schema, Some(props))
            .map_err(|e| Error::Other(format!("{}: {e}", dest.display())))?;
        Ok(ParquetOut { file, writer })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| Error::Other(format!("{}: {e}", self.file.dest().display())))
    }

    /// Writes the footer; the file is complete but still under its temporary name.
    pub fn finish(self) -> Result<AtomicFile> {
        let dest = self.file.dest().to_path_buf();
        self.writer
            .close()
            .map_err(|e| Error::Other(format!("{}: {e}", dest.display())))?;
        Ok(self.file)
    }

    /// Writes the footer and renames the file into place.
    pub fn commit(self) -> Result<()> {
        self.finish()?.commit()
    }
}

/// A column a reader needs: its name, accepted types and whether it may be absent.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// The Arrow type it is read as (compared with [`type_matches`]; the types
    /// [`parquet_types::convertible`] accepts are converted on read).
    pub data_type: DataType,
    /// Whether the file may lack it.
    pub optional: bool,
    /// What its values mean (a time also accepts `Timestamp` and `Date32`).
    pub meaning: Meaning,
}

impl ColumnSpec {
    /// A required column.
    pub fn required(name: &str, data_type: DataType) -> Self {
        ColumnSpec {
            name: name.to_string(),
            data_type,
            optional: false,
            meaning: Meaning::Value,
        }
    }

    /// The same column holding a time in Unix seconds.
    pub fn unix_seconds(mut self) -> Self {
        self.meaning = Meaning::UnixSeconds;
        self
    }

    /// The same column holding user or item ids (strings are also read, see [`crate::ids`]).
    pub fn id(mut self) -> Self {
        self.meaning = Meaning::Id;
        self
    }

    /// A column that may be absent.
    pub fn optional(name: &str, data_type: DataType) -> Self {
        ColumnSpec {
            name: name.to_string(),
            data_type,
            optional: true,
            meaning: Meaning::Value,
        }
    }
}

/// Whether `actual` satisfies `expected`; list element field names are ignored (arrow-rs calls
/// them "item", pyarrow and Spark "element").
pub fn type_matches(actual: &DataType, expected: &DataType) -> bool {
    match (actual, expected) {
        (DataType::List(a), DataType::List(e)) | (DataType::LargeList(a), DataType::List(e)) => {
            type_matches(a.data_type(), e.data_type())
        }
        (DataType::FixedSizeList(a, _), DataType::FixedSizeList(e, _)) => {
            type_matches(a.data_type(), e.data_type())
        }
        (DataType::LargeUtf8, DataType::Utf8) | (DataType::Utf8View, DataType::Utf8) => true,
        _ => actual == expected,
    }
}

/// The types a column read as `expected` accepts, for errors.
pub(crate) fn accepted(expected: &DataType, meaning: Meaning) -> String {
    match (expected, meaning) {
        (DataType::Int64, Meaning::UnixSeconds) => {
            "Int64 Unix seconds (or another integer type, a Timestamp or a Date32)".into()
        }
        (DataType::Int64, Meaning::Id) => "Int64 (or another integer type, or strings)".into(),
        (DataType::Int64, _) => "Int64 (or another integer type)".into(),
        (DataType::Float32, _) => "Float32 (or Float16, Float64 or an integer type)".into(),
        (DataType::Boolean, _) => "Boolean (or 0/1 integers)".into(),
        (other, _) => other.to_string(),
    }
}

/// A validated stream of record batches from a Parquet file, or from a folder of part files
/// (`part-0.parquet`, ..., also Hive-style partitions such as `date=2024-01-01/part-0.parquet`,
/// whose partition values are read as columns). Batches hold the columns of the specs given to
/// [`ParquetIn::open`] that are present, in the canonical types the specs ask for.
pub struct ParquetIn {
    path: PathBuf,
    specs: Vec<ColumnSpec>,
    parts: Vec<Part>,
    next_part: usize,
    current: Option<(ParquetRecordBatchReader, usize)>,
    /// Per spec: whether batches hold it.
    present: Vec<bool>,
    /// Rows in the file (all parts).
    pub num_rows: usize,
    schema: SchemaRef,
    next_row: usize,
    /// Per spec: the strings of a string id column read so far.
    keys: Vec<Option<IdKeys>>,
}

/// One Parquet file of the input and how its columns become the output's.
struct Part {
    path: PathBuf,
    /// Per spec: where its values come from in this file (`None`: not in the output).
    sources: Vec<Option<Source>>,
    /// The file's root columns read, sorted.
    roots: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Source {
    /// Root column `root` of the file, of type `actual`.
    Column { root: usize, actual: DataType },
    /// The value of a Hive partition (`None`: the null partition).
    Partition(Option<String>),
    /// An optional column this part lacks: nulls.
    Nulls,
}

/// Opens a Parquet file for reading its metadata (errors name the file).
fn open_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?
        .len();
    if len == 0 {
        return Err(Error::input(path, "the file is empty (0 bytes)"));
    }
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        Error::input(
            path,
            format!("not a readable Parquet file (truncated or another format?): {e}"),
        )
    })
}

impl ParquetIn {
    /// Opens `path` (a Parquet file, or a folder of part files), checks that every part is a
    /// readable Parquet file whose schema has every required column (from the file or its
    /// partition path) in a type that reads as the spec's, and projects to the columns in
    /// `specs`. An optional column is present when the first part has it.
    pub fn open(path: &Path, specs: &[ColumnSpec]) -> Result<Self> {
        let files = part_files(path)?;
        let mut parts = Vec::with_capacity(files.len());
        let mut num_rows = 0usize;
        let mut present: Vec<bool> = Vec::new();
        let mut schema: Option<SchemaRef> = None;
        let mut string_ids: Vec<Option<(bool, PathBuf)>> = vec![None; specs.len()];
        for (file, partition) in files {
            let builder = open_builder(&file)?;
            let file_schema = builder.schema().clone();
            num_rows += builder.metadata().file_metadata().num_rows().max(0) as usize;
            let mut sources = Vec::with_capacity(specs.len());
            for (k, spec) in specs.iter().enumerate() {
                let source = match file_schema.index_of(&spec.name) {
                    Ok(i) => {
                        let actual = file_schema.field(i).data_type().clone();
                        if !type_matches(&actual, &spec.data_type) {
                            if !convertible(&actual, &spec.data_type, spec.meaning) {
                                return Err(Error::input(
                                    &file,
                                    format!(
                                        "column '{}' has type {actual}, expected {}",
                                        spec.name,
                                        accepted(&spec.data_type, spec.meaning)
                                    ),
                                ));
                            }
                            tracing::info!(
                                file = %file.display(),
                                column = %spec.name,
                                from = %actual,
                                to = %spec.data_type,
                                "converting on read"
                            );
                        }
                        if spec.meaning == Meaning::Id {
                            let strings = is_string(&actual);
                            match &string_ids[k] {
                                Some((s, first)) if *s != strings => {
                                    return Err(Error::input(
                                        &file,
                                        format!(
                                            "column '{}' has type {actual}, but {} has {} ids; \
                                             write every part with the same id type",
                                            spec.name,
                                            first.display(),
                                            if *s { "string" } else { "integer" }
                                        ),
                                    ))
                                }
                                Some(_) => {}
                                None => string_ids[k] = Some((strings, file.clone())),
                            }
                        }
                        Some(Source::Column { root: i, actual })
                    }
                    Err(_) => match partition.iter().find(|(key, _)| key == &spec.name) {
                        Some((_, v)) => Some(Source::Partition(v.clone())),
                        None if spec.optional => None,
                        None => {
                            return Err(Error::input(
                                &file,
                                format!("missing required column '{}'", spec.name),
                            ))
                        }
                    },
                };
                sources.push(source);
            }
            if parts.is_empty() {
                present = sources.iter().map(Option::is_some).collect();
                let mut fields: Vec<Field> = file_schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                for (key, _) in &partition {
                    if file_schema.index_of(key).is_err() {
                        fields.push(Field::new(key, DataType::Utf8, true));
                    }
                }
                schema = Some(Arc::new(Schema::new(fields)));
            }
            for (s, &p) in sources.iter_mut().zip(&present) {
                if !p {
                    *s = None;
                } else if s.is_none() {
                    *s = Some(Source::Nulls);
                }
            }
            let mut roots: Vec<usize> = sources
                .iter()
                .filter_map(|s| match s {
                    Some(Source::Column { root, .. }) => Some(*root),
                    _ => None,
                })
                .collect();
            roots.sort_unstable();
            roots.dedup();
            parts.push(Part {
                path: file,
                sources,
                roots,
            });
        }
        Ok(ParquetIn {
            path: path.to_path_buf(),
            specs: specs.to_vec(),
            parts,
            next_part: 0,
            current: None,
            present,
            num_rows,
            schema: schema.unwrap_or_else(|| Arc::new(Schema::empty())),
            next_row: 0,
            keys: vec![None; specs.len()],
        })
    }

    /// The file being read: the current part of a folder (for errors that name a row).
    pub fn path(&self) -> &Path {
        match self.current {
            Some((_, p)) => &self.parts[p].path,
            None => &self.path,
        }
    }

    /// The first part's Arrow schema, with its partition columns as `Utf8`.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the column of spec number `spec` is in the batches.
    pub fn has(&self, spec: usize) -> bool {
        self.present.get(spec).copied().unwrap_or(false)
    }

    /// Whether spec number `spec` is an id column that the files hold as strings.
    pub fn is_string_id(&self, spec: usize) -> bool {
        self.specs
            .get(spec)
            .is_some_and(|s| s.meaning == Meaning::Id)
            && self
                .parts
                .first()
                .is_some_and(|p| match p.sources.get(spec) {
                    Some(Some(Source::Column { actual, .. })) => is_string(actual),
                    Some(Some(Source::Partition(Some(v)))) => v.parse::<i64>().is_err(),
                    _ => false,
                })
    }

    /// The strings of spec number `spec`'s column read so far, when it is a string id column
    /// (see [`crate::ids`]); `None` when it holds integers.
    pub fn keys(&self, spec: usize) -> Option<&IdKeys> {
        self.keys.get(spec).and_then(Option::as_ref)
    }

    /// The next batch with the 1-based row number of its first row within its file
    /// ([`ParquetIn::path`]), or `None` at the end. Columns are fetched from it with
    /// [`ParquetIn::column`].
    pub fn next_batch(&mut self) -> Result<Option<(usize, RecordBatch)>> {
        loop {
            if self.current.is_none() {
                if self.next_part == self.parts.len() {
                    return Ok(None);
                }
                let p = self.next_part;
                self.next_part += 1;
                let part = &self.parts[p];
                let builder = open_builder(&part.path)?;
                let mask = ProjectionMask::roots(builder.parquet_schema(), part.roots.clone());
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(READ_BATCH_ROWS)
                    .build()
                    .map_err(|e| Error::input(&part.path, format!("cannot read: {e}")))?;
                self.current = Some((reader, p));
                self.next_row = 0;
            }
            let Some((reader, p)) = self.current.as_mut() else {
                continue;
            };
            let p = *p;
            match reader.next() {
                None => self.current = None,
                Some(Err(e)) => {
                    return Err(Error::input(
                        &self.parts[p].path,
                        format!(
                            "corrupt data after row {} (truncated file?): {e}",
                            self.next_row
                        ),
                    ))
                }
                Some(Ok(batch)) => {
                    let first = self.next_row + 1;
                    self.next_row += batch.num_rows();
                    return Ok(Some((first, self.output(p, batch, first)?)));
                }
            }
        }
    }

    /// The output batch of part `p`'s projected `batch`: one column per present spec, in the
    /// spec's canonical type (`first` is the 1-based row number of its first row, for errors).
    fn output(&mut self, p: usize, batch: RecordBatch, first: usize) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let part = &self.parts[p];
        let mut columns: Vec<ArrayRef> = Vec::new();
        let mut fields: Vec<Field> = Vec::new();
        for (k, spec) in self.specs.iter().enumerate() {
            let Some(source) = &part.sources[k] else {
                continue;
            };
            let at_row = |(row, why): (usize, String)| {
                Error::input(
                    &part.path,
                    format!("column '{}', row {}: {why}", spec.name, first + row),
                )
            };
            let raw: ArrayRef = match source {
                Source::Column { root, .. } => {
                    let pos = part.roots.binary_search(root).map_err(|_| {
                        Error::Other(format!("{}: column not projected", part.path.display()))
                    })?;
                    batch.column(pos).clone()
                }
                Source::Partition(v) => partition_column(v.as_deref(), spec, n)
                    .map_err(|why| Error::input(&part.path, why))?,
                Source::Nulls => arrow_array::new_null_array(&spec.data_type, n),
            };
            let column = if type_matches(raw.data_type(), &spec.data_type) {
                raw
            } else if spec.meaning == Meaning::Id && is_string(raw.data_type()) {
                let keys = self.keys[k].get_or_insert_with(IdKeys::default);
                strings_to_ids(raw.as_ref(), keys).map_err(at_row)?
            } else {
                convert(raw.as_ref(), &spec.data_type).map_err(at_row)?
            };
            fields.push(Field::new(&spec.name, column.data_type().clone(), true));
            columns.push(column);
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| Error::input(&part.path, format!("cannot convert columns: {e}")))
    }

    /// Column number `spec` (the index into the specs given to `open`) of `batch`, or `None` when
    /// that optional column is absent.
    pub fn column<'b>(&self, batch: &'b RecordBatch, spec: usize) -> Option<&'b dyn Array> {
        if !self.has(spec) {
            return None;
        }
        let pos = self.present[..spec].iter().filter(|&&p| p).count();
        Some(batch.column(pos).as_ref())
    }
}
