//! Parquet reading and writing shared by every stage: files are written in row groups under a
//! temporary name and read back as a stream of record batches, after checking the schema.

use crate::error::{Error, Result};
use crate::output::AtomicFile;
use crate::parquet_types::{convert, convertible, Meaning};
use arrow_array::{Array, RecordBatch};
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
fn accepted(expected: &DataType, meaning: Meaning) -> String {
    match (expected, meaning) {
        (DataType::Int64, Meaning::UnixSeconds) => {
            "Int64 Unix seconds (or another integer type, a Timestamp or a Date32)".into()
        }
        (DataType::Int64, _) => "Int64 (or another integer type)".into(),
        (DataType::Float32, _) => "Float32 (or Float16, Float64 or an integer type)".into(),
        (DataType::Boolean, _) => "Boolean (or 0/1 integers)".into(),
        (other, _) => other.to_string(),
    }
}

/// A validated stream of record batches from a Parquet file, holding the projected columns in
/// the order of the specs given to [`ParquetIn::open`] (absent optional columns are `None`).
pub struct ParquetIn {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    /// For each spec, the column's position within the projected batches.
    positions: Vec<Option<usize>>,
    /// Rows in the file.
    pub num_rows: usize,
    schema: SchemaRef,
    next_row: usize,
    /// Projected columns read in another type: (position, name, canonical type).
    conversions: Vec<(usize, String, DataType)>,
}

impl ParquetIn {
    /// Opens `path`, checks it is a non-empty Parquet file whose schema has every required column
    /// with its type, and projects to the columns in `specs`.
    pub fn open(path: &Path, specs: &[ColumnSpec]) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| Error::input(path, format!("cannot read: {e}")))?
            .len();
        if len == 0 {
            return Err(Error::input(path, "the file is empty (0 bytes)"));
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            Error::input(
                path,
                format!("not a readable Parquet file (truncated or another format?): {e}"),
            )
        })?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        let mut converted = Vec::new();
        for spec in specs {
            match schema.index_of(&spec.name) {
                Ok(i) => {
                    let actual = schema.field(i).data_type();
                    if !type_matches(actual, &spec.data_type) {
                        if !convertible(actual, &spec.data_type, spec.meaning) {
                            return Err(Error::input(
                                path,
                                format!(
                                    "column '{}' has type {actual}, expected {}",
                                    spec.name,
                                    accepted(&spec.data_type, spec.meaning)
                                ),
                            ));
                        }
                        tracing::info!(
                            file = %path.display(),
                            column = %spec.name,
                            from = %actual,
                            to = %spec.data_type,
                            "converting on read"
                        );
                        converted.push((i, spec.name.clone(), spec.data_type.clone()));
                    }
                    roots.push(Some(i));
                }
                Err(_) if spec.optional => roots.push(None),
                Err(_) => {
                    return Err(Error::input(
                        path,
                        format!("missing required column '{}'", spec.name),
                    ))
                }
            }
        }
        let mut sorted: Vec<usize> = roots.iter().flatten().copied().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let positions = roots
            .iter()
            .map(|r| r.and_then(|i| sorted.binary_search(&i).ok()))
            .collect();
        let conversions = converted
            .into_iter()
            .filter_map(|(i, name, t)| sorted.binary_search(&i).ok().map(|p| (p, name, t)))
            .collect();
        let num_rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
        let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
        Ok(ParquetIn {
            path: path.to_path_buf(),
            reader,
            positions,
            num_rows,
            schema,
            next_row: 0,
            conversions,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file's Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the column of spec number `spec` is in the file.
    pub fn has(&self, spec: usize) -> bool {
        matches!(self.positions.get(spec), Some(Some(_)))
    }

    /// The next batch with the 1-based row number of its first row, or `None` at the end.
    /// Columns are fetched from it with [`ParquetIn::column`].
    pub fn next_batch(&mut self) -> Result<Option<(usize, RecordBatch)>> {
        match self.reader.next() {
            None => Ok(None),
            Some(Err(e)) => Err(Error::input(
                &self.path,
                format!(
                    "corrupt data after row {} (truncated file?): {e}",
                    self.next_row
                ),
            )),
            Some(Ok(batch)) => {
                let first = self.next_row + 1;
                self.next_row += batch.num_rows();
                Ok(Some((first, self.converted(batch, first)?)))
            }
        }
    }

    /// `batch` with the columns of other types converted to their canonical types (`first` is
    /// the 1-based row number of its first row, for errors).
    fn converted(&self, batch: RecordBatch, first: usize) -> Result<RecordBatch> {
        if self.conversions.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (p, name, to) in &self.conversions {
            columns[*p] = convert(columns[*p].as_ref(), to).map_err(|(row, why)| {
                Error::input(
                    &self.path,
                    format!("column '{name}', row {}: {why}", first + row),
                )
            })?;
            fields[*p] = Field::new(name, to.clone(), true);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| Error::input(&self.path, format!("cannot convert columns: {e}")))
    }

    /// Column number `spec` (the index into the specs given to `open`) of `batch`, or `None` when
    /// that optional column is absent from the file.
    pub fn column<'b>(&self, batch: &'b RecordBatch, spec: usize) -> Option<&'b dyn Array> {
        self.positions
            .get(spec)
            .copied()
            .flatten()
            .map(|p| batch.column(p).as_ref())
    }
}
