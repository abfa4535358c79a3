//! `recpipe import csv`: any event log with a header (one file, or a folder of parts read in
//! name order; plain or gzip) into `events.parquet`, streamed in two passes with bounded memory.
//!
//! Pass 1 validates every row (the rules of [`crate::data::read_events`]) and decides, per id
//! column, whether every value is a canonical `i64`; only counters and the sets of distinct ids
//! are kept. Pass 2 reads the input again and writes the rows, in input order, in row groups:
//! ids that are all canonical integers as `Int64`, any other id column as `Utf8` holding the
//! strings unchanged. Bad input is one line naming the file, line and column, and leaves nothing
//! in the output folder.

mod ids;
mod records;
#[cfg(test)]
mod tests;
mod time;

pub use ids::canonical_int;
pub use records::{list_inputs, Records};
pub use time::TimeFormat;

use crate::args::CsvImportArgs;
use crate::data::{EventsWriter, Id, IdType};
use crate::error::{Error, Result};
use crate::import::ImportSummary;
use crate::output::{commit_all, OutputDir};
use ids::Distinct;
use std::path::{Path, PathBuf};

/// A validated `recpipe import csv` command line.
#[derive(Debug, Clone)]
pub struct CsvImport {
    /// What `--input` named, for messages.
    pub input: PathBuf,
    /// The files, read in this order as one stream.
    pub files: Vec<PathBuf>,
    /// The field delimiter.
    pub delimiter: u8,
    /// How the time column is written.
    pub time_format: TimeFormat,
    /// The user id column.
    pub user: String,
    /// The item id column.
    pub item: String,
    /// The time column.
    pub time: String,
    /// The watched flag column (absent: every row is a watch).
    pub watched: Option<String>,
    /// The watch time column (seconds).
    pub watch_time: Option<String>,
    /// The rating column.
    pub rating: Option<String>,
}

impl CsvImport {
    /// Checks the options (the time format and delimiter first, before anything is read) and
    /// lists the input files.
    pub fn from_args(a: &CsvImportArgs) -> Result<Self> {
        let time_format = TimeFormat::parse(&a.time_format)?;
        let delimiter = a.delimiter.as_deref().map(parse_delimiter).transpose()?;
        let files = list_inputs(&a.input)?;
        let tsv = files.iter().all(|f| records::is_tsv(f));
        Ok(CsvImport {
            input: a.input.clone(),
            delimiter: delimiter.unwrap_or(if tsv { b'\t' } else { b',' }),
            files,
            time_format,
            user: a.user.clone(),
            item: a.item.clone(),
            time: a.time.clone(),
            watched: a.watched.clone(),
            watch_time: a.watch_time.clone(),
            rating: a.rating.clone(),
        })
    }
}

/// `--delimiter`: one byte, or `tab` / `\t`.
fn parse_delimiter(s: &str) -> Result<u8> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && !matches!(s.as_bytes()[0], b'"' | b'\n' | b'\r') => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(Error::Input(format!(
            "--delimiter '{s}': expected one character (not a quote or newline), or 'tab'"
        ))),
    }
}

/// One validated row; the ids as the file spells them.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The file, for messages.
    pub path: &'a Path,
    /// The 1-based line the row starts on.
    pub line: u64,
    /// The user id.
    pub user: &'a str,
    /// The item id.
    pub item: &'a str,
    /// Unix seconds within 1990..2100.
    pub timestamp: i64,
    /// Whether it is a watch.
    pub watched: bool,
    /// Seconds watched (only on watches).
    pub watch_time: Option<f32>,
    /// The rating.
    pub rating: Option<f32>,
}

/// Column positions in the header.
struct Columns {
    user: usize,
    item: usize,
    time: usize,
    watched: Option<usize>,
    watch_time: Option<usize>,
    rating: Option<usize>,
}

impl CsvImport {
    /// Reads every file once, calling `each` with every row; returns the number of rows.
    pub fn scan(&self, mut each: impl FnMut(&Row) -> Result<()>) -> Result<u64> {
        let mut first: Option<(&Path, Vec<String>, Columns)> = None;
        let mut rows = 0u64;
        for path in &self.files {
            let mut rec = Records::new(records::open(path)?, self.delimiter);
            let header_line = loop {
                match next(&mut rec, path)? {
                    None => return Err(Error::input(path, "the file is empty (no header)")),
                    Some(_) if rec.is_blank() => continue,
                    Some(line) => break line,
                }
            };
            let names: Vec<String> = (0..rec.len())
                .map(|i| String::from_utf8_lossy(rec.field(i)).into_owned())
                .collect();
            match &first {
                None => {
                    let cols = self.columns(path, header_line, &names)?;
                    first = Some((path, names, cols));
                }
                Some((p, h, _)) if *h != names => {
                    return Err(Error::input(
                        path,
                        format!(
                            "line {header_line}: the header ({}) differs from {}'s ({}); the files of a folder must share one header",
                            shown(&names.join(",")),
                            p.display(),
                            shown(&h.join(","))
                        ),
                    ))
                }
                Some(_) => {}
            }
            let Some((_, header, cols)) = &first else {
                return Err(Error::Other("csv import: no header".into()));
            };
            while let Some(line) = next(&mut rec, path)? {
                if rec.is_blank() {
                    continue;
                }
                if rec.len() != header.len() {
                    return Err(Error::input(
                        path,
                        format!(
                            "line {line}: {} fields, but the header has {}",
                            rec.len(),
                            header.len()
                        ),
                    ));
                }
                each(&self.row(&rec, cols, path, line)?)?;
                rows += 1;
            }
        }
        Ok(rows)
    }

    fn columns(&self, path: &Path, line: u64, names: &[String]) -> Result<Columns> {
        let find = |name: &str, option: &str| -> Result<usize> {
            let mut at = names.iter().enumerate().filter(|(_, n)| *n == name);
            match (at.next(), at.next()) {
                (Some((i, _)), None) => Ok(i),
                (Some(_), Some(_)) => Err(Error::input(
                    path,
                    format!("line {line}: column '{name}' ({option}) appears twice in the header"),
                )),
                (None, _) => {
                    let has: Vec<String> =
                        names.iter().map(|n| format!("'{}'", shown(n))).collect();
                    let hint = if names.len() == 1 {
                        "; is --delimiter right?"
                    } else {
                        ""
                    };
                    Err(Error::input(
                        path,
                        format!(
                            "line {line}: no column '{name}' ({option}); the header has {}{hint}",
                            has.join(", ")
                        ),
                    ))
                }
            }
        };
        let opt = |name: &Option<String>, option: &str| name.as_deref().map(|n| find(n, option));
        Ok(Columns {
            user: find(&self.user, "--user")?,
            item: find(&self.item, "--item")?,
            time: find(&self.time, "--time")?,
            watched: opt(&self.watched, "--watched").transpose()?,
            watch_time: opt(&self.watch_time, "--watch-time").transpose()?,
            rating: opt(&self.rating, "--rating").transpose()?,
        })
    }

    /// Parses and validates the current record.
    fn row<'a, R>(
        &'a self,
        rec: &'a Records<R>,
        cols: &Columns,
        path: &'a Path,
        line: u64,
    ) -> Result<Row<'a>> {
        let bad = |col: &str, what: String| {
            Error::input(path, format!("line {line}, column '{col}': {what}"))
        };
        let text = |i: usize, col: &str| {
            std::str::from_utf8(rec.field(i)).map_err(|_| bad(col, "not valid UTF-8".into()))
        };
        let id = |i: usize, col: &str| match text(i, col)? {
            "" => Err(bad(col, "empty id".into())),
            s => Ok(s),
        };
        let number = |i: usize, col: &str| -> Result<Option<f32>> {
            let s = text(i, col)?.trim();
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<f32>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(bad(col, format!("'{}' is not a finite number", shown(s)))),
            }
        };
        let timestamp = self
            .time_format
            .to_unix(text(cols.time, &self.time)?)
            .map_err(|what| bad(&self.time, what))?;
        let (watched, flag) = match (cols.watched, &self.watched) {
            (Some(i), Some(col)) => {
                let s = text(i, col)?.trim();
                (
                    parse_flag(s).ok_or_else(|| {
                        bad(
                            col,
                            format!(
                                "'{}' is not a watched flag (true/false, 1/0 or yes/no)",
                                shown(s)
                            ),
                        )
                    })?,
                    s,
                )
            }
            _ => (true, ""),
        };
        let watch_time = match (cols.watch_time, &self.watch_time) {
            (Some(i), Some(col)) => match number(i, col)? {
                Some(x) if x < 0.0 => {
                    return Err(bad(
                        col,
                        format!("{x} is not a non-negative number of seconds"),
                    ))
                }
                Some(x) if !watched => {
                    let watched_col = self.watched.as_deref().unwrap_or_default();
                    return Err(bad(col, format!("watch time {x} on a row that is not a watch (column '{watched_col}' is '{}')", shown(flag))));
                }
                x => x,
            },
            _ => None,
        };
        let rating = match (cols.rating, &self.rating) {
            (Some(i), Some(col)) => number(i, col)?,
            _ => None,
        };
        Ok(Row {
            path,
            line,
            user: id(cols.user, &self.user)?,
            item: id(cols.item, &self.item)?,
            timestamp,
            watched,
            watch_time,
            rating,
        })
    }
}

fn next<R: std::io::BufRead>(rec: &mut Records<R>, path: &Path) -> Result<Option<u64>> {
    rec.next_record().map_err(|e| match e {
        records::RecordError::Io(e) => records::read_error(path, rec.lines(), e),
        records::RecordError::Unterminated(line) => Error::input(
            path,
            format!("line {line}: a quoted field is not closed before the end of the file"),
        ),
    })
}

/// `s` for a one-line message: control characters escaped, at most 60 characters.
pub(crate) fn shown(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(60) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(60).is_some() {
        out.push_str("...");
    }
    out
}

fn parse_flag(s: &str) -> Option<bool> {
    let is = |words: [&str; 3]| words.iter().any(|w| s.eq_ignore_ascii_case(w));
    if is(["true", "1", "yes"]) {
        Some(true)
    } else if is(["false", "0", "no"]) {
        Some(false)
    } else {
        None
    }
}

/// What a CSV import produced.
#[derive(Debug, Clone)]
pub struct CsvSummary {
    /// Counts (no catalogue: only `events.parquet` is written).
    pub summary: ImportSummary,
    /// How the user ids were written.
    pub user_ids: IdType,
    /// How the item ids were written.
    pub item_ids: IdType,
}

impl std::fmt::Display for CsvSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.summary;
        let kind = |t: IdType| match t {
            IdType::Int64 => "integers (Int64)",
            IdType::Utf8 => "strings (Utf8)",
        };
        write!(
            f,
            "{}: {} events ({} watched, {:.1}%), {} users, {} items; user ids are {}, item ids {}",
            s.source,
            s.events,
            s.watched,
            100.0 * s.watched as f64 / s.events.max(1) as f64,
            s.users,
            s.items,
            kind(self.user_ids),
            kind(self.item_ids)
        )
    }
}

/// Imports `opts` into `out/events.parquet` (the folder is created when missing): validated in
/// a first pass, written in a second; on failure nothing is left in `out`.
pub fn import_csv(opts: &CsvImport, out: &Path) -> Result<CsvSummary> {
    let (mut users, mut items, mut watched) = (Distinct::default(), Distinct::default(), 0usize);
    let rows = opts.scan(|row| {
        users.add(row.user);
        items.add(row.item);
        watched += usize::from(row.watched);
        Ok(())
    })?;
    if rows == 0 {
        return Err(Error::input(
            &opts.input,
            "no events (the input holds only a header)",
        ));
    }
    tracing::info!(rows, "csv import: pass 1 (validation) done");
    let (user_ids, item_ids) = (users.id_type(), items.id_type());
    let dir = OutputDir::open(out)?;
    let mut writer =
        EventsWriter::create_with_ids(&dir.join("events.parquet"), user_ids, item_ids, &[])?;
    let again = opts.scan(|row| {
        writer.push_row(
            as_id(row.user, user_ids, row)?,
            as_id(row.item, item_ids, row)?,
            row.timestamp,
            row.watched,
            row.watch_time,
            row.rating,
        )
    })?;
    if again != rows {
        return Err(changed(&opts.input));
    }
    commit_all(vec![writer.finish()?])?;
    dir.keep();
    Ok(CsvSummary {
        summary: ImportSummary {
            source: opts.input.display().to_string(),
            events: rows as usize,
            watched,
            users: users.len(),
            items: items.len(),
            catalogue: 0,
        },
        user_ids,
        item_ids,
    })
}

/// `s` as an id of a column of type `t` (written in pass 2 after pass 1 chose `t`).
fn as_id<'a>(s: &'a str, t: IdType, row: &Row) -> Result<Id<'a>> {
    match t {
        IdType::Utf8 => Ok(Id::Text(s)),
        IdType::Int64 => canonical_int(s)
            .map(Id::Int)
            .ok_or_else(|| changed(row.path)),
    }
}

fn changed(path: &Path) -> Error {
    Error::input(
        path,
        "changed while it was being imported; run the import again",
    )
}
