//! `items.parquet`: the catalogue (DESIGN.md), its writer and its validating reader.

use crate::error::{Error, Result};
use crate::ids::IdSpelling;
use crate::output::AtomicFile;
use crate::parquet_io::{ColumnSpec, ParquetIn, ParquetOut};
use arrow_array::builder::{Float32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// The catalogue, column by column.
#[derive(Debug, Clone, Default)]
pub struct Items {
    /// `item_id` column (unique).
    pub item_id: Vec<i64>,
    /// Length in seconds, when known.
    pub duration: Vec<Option<f32>>,
    /// Publication time (Unix seconds), when known.
    pub published: Vec<Option<i64>>,
    /// Category / genre / tag tokens.
    pub categories: Vec<Vec<String>>,
    /// Title, when known.
    pub title: Vec<Option<String>>,
    /// How the file spelt its item ids (string ids are held as surrogates).
    pub ids: IdSpelling,
}

impl Items {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.item_id.len()
    }

    /// Whether the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.item_id.is_empty()
    }

    /// Appends one item.
    pub fn push(
        &mut self,
        id: i64,
        duration: Option<f32>,
        published: Option<i64>,
        categories: Vec<String>,
        title: Option<String>,
    ) {
        self.item_id.push(id);
        self.duration.push(duration);
        self.published.push(published);
        self.categories.push(categories);
        self.title.push(title);
    }
}

fn categories_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The Arrow schema of `items.parquet`.
pub fn items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new("duration", DataType::Float32, true),
        Field::new("published", DataType::Int64, true),
        Field::new("categories", categories_type(), true),
        Field::new("title", DataType::Utf8, true),
    ]))
}

/// Writes `items` to `dest` (under a temporary name until the returned file is committed).
pub fn write_items(dest: &Path, items: &Items) -> Result<AtomicFile> {
    let schema = items_schema();
    let mut out = ParquetOut::create(dest, schema.clone())?;
    const CHUNK: usize = 64 * 1024;
    let mut start = 0;
    while start < items.len() {
        let end = (start + CHUNK).min(items.len());
        let mut id = Int64Builder::new();
        let mut dur = Float32Builder::new();
        let mut publ = Int64Builder::new();
        let mut cats = ListBuilder::new(StringBuilder::new());
        let mut title = StringBuilder::new();
        for i in start..end {
            id.append_value(items.item_id[i]);
            dur.append_option(items.duration[i]);
            publ.append_option(items.published[i]);
            for c in &items.categories[i] {
                cats.values().append_value(c);
            }
            cats.append(true);
            title.append_option(items.title[i].as_deref());
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(dur.finish()),
            Arc::new(publ.finish()),
            Arc::new(cats.finish()),
            Arc::new(title.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| Error::Other(format!("items batch: {e}")))?;
        out.write(&batch)?;
        start = end;
    }
    out.finish()
}

/// Reads and validates `items.parquet`: `item_id` is required, non-null and unique; the other
/// DESIGN.md columns are optional and checked for type.
pub fn read_items(path: &Path) -> Result<Items> {
    let specs = vec![
        ColumnSpec::required("item_id", DataType::Int64).id(),
        ColumnSpec::optional("duration", DataType::Float32),
        ColumnSpec::optional("published", DataType::Int64).unix_seconds(),
        ColumnSpec::optional("categories", categories_type()),
        ColumnSpec::optional("title", DataType::Utf8),
    ];
    let mut input = ParquetIn::open(path, &specs)?;
    let mut items = Items::default();
    let mut seen = HashSet::new();
    while let Some((first, batch)) = input.next_batch()? {
        let path = input.path().to_path_buf();
        let path = path.as_path();
        let n = batch.num_rows();
        let ids = input
            .column(&batch, 0)
            .map(|a| a.as_primitive::<Int64Type>())
            .ok_or_else(|| Error::input(path, "missing required column 'item_id'"))?;
        for r in 0..n {
            if ids.is_null(r) {
                return Err(Error::input(
                    path,
                    format!("column 'item_id', row {}: null id", first + r),
                ));
            }
            let id = ids.value(r);
            if !seen.insert(id) {
                return Err(Error::input(
                    path,
                    format!(
                        "column 'item_id', row {}: duplicate item id {id}",
                        first + r
                    ),
                ));
            }
            items.item_id.push(id);
        }
        match input
            .column(&batch, 1)
            .map(|a| a.as_primitive::<Float32Type>())
        {
            Some(d) => {
                for r in 0..n {
                    let v = (!d.is_null(r)).then(|| d.value(r));
                    if let Some(x) = v {
                        if !x.is_finite() || x < 0.0 {
                            return Err(Error::input(
                                path,
                                format!(
                                    "column 'duration', row {}: {x} is not a finite non-negative number of seconds",
                                    first + r
                                ),
                            ));
                        }
                    }
                    items.duration.push(v);
                }
            }
            None => items.duration.extend(std::iter::repeat_n(None, n)),
        }
        match input
            .column(&batch, 2)
            .map(|a| a.as_primitive::<Int64Type>())
        {
            Some(p) => items
                .published
                .extend((0..n).map(|r| (!p.is_null(r)).then(|| p.value(r)))),
            None => items.published.extend(std::iter::repeat_n(None, n)),
        }
        match input.column(&batch, 3) {
            Some(c) => {
                for r in 0..n {
                    items.categories.push(list_strings(c, r));
                }
            }
            None => items.categories.extend(std::iter::repeat_n(Vec::new(), n)),
        }
        match input.column(&batch, 4) {
            Some(t) => {
                for r in 0..n {
                    items.title.push(string_at(t, r));
                }
            }
            None => items.title.extend(std::iter::repeat_n(None, n)),
        }
    }
    items.ids = IdSpelling::from_keys(input.keys(0).cloned());
    Ok(items)
}

/// The string at row `r` of a Utf8 / LargeUtf8 / Utf8View column (`None` when null).
pub fn string_at(a: &dyn Array, r: usize) -> Option<String> {
    if a.is_null(r) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(r).to_string()),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(r).to_string()),
        DataType::Utf8View => Some(a.as_string_view().value(r).to_string()),
        _ => None,
    }
}

/// The strings of row `r` of a list-of-strings column (empty when null).
fn list_strings(a: &dyn Array, r: usize) -> Vec<String> {
    if a.is_null(r) {
        return Vec::new();
    }
    let values = match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().value(r),
        DataType::LargeList(_) => a.as_list::<i64>().value(r),
        _ => return Vec::new(),
    };
    (0..values.len())
        .filter_map(|i| string_at(values.as_ref(), i))
        .collect()
}
