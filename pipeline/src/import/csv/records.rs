//! RFC 4180 records streamed from a plain or gzip file: quoted fields, doubled quotes, delimiters
//! and newlines inside quotes; a UTF-8 BOM at the start is skipped. Memory holds one record.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

const BUFFER: usize = 1 << 20;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The files of `input`: the file itself, or a folder's `*.csv`, `*.csv.gz`, `*.tsv` and
/// `*.tsv.gz` files in name order (hidden files skipped).
pub fn list_inputs(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        return Err(Error::input(input, "no such file or folder"));
    }
    let entries = std::fs::read_dir(input).map_err(|e| Error::io(input, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(input, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let known = [".csv", ".csv.gz", ".tsv", ".tsv.gz"];
        if !name.starts_with('.') && path.is_file() && known.iter().any(|k| name.ends_with(k)) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::input(
            input,
            "no *.csv, *.csv.gz, *.tsv or *.tsv.gz files in this folder",
        ));
    }
    Ok(files)
}

/// Whether `path`'s name says tab-separated (`.tsv` or `.tsv.gz`).
pub fn is_tsv(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    name.ends_with(".tsv") || name.ends_with(".tsv.gz")
}

/// Opens `path` for reading, decompressing gzip (told by its magic bytes) and skipping a UTF-8
/// byte order mark.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let mut raw = BufReader::with_capacity(BUFFER, file);
    let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    if !gzip && path.to_string_lossy().to_lowercase().ends_with(".gz") {
        return Err(Error::input(path, "named .gz but not gzip data"));
    }
    let mut reader: Box<dyn BufRead> = if gzip {
        let decoder = flate2::read::MultiGzDecoder::new(raw);
        Box::new(BufReader::with_capacity(BUFFER, decoder))
    } else {
        Box::new(raw)
    };
    let mut start = Vec::with_capacity(BOM.len());
    (&mut reader)
        .take(BOM.len() as u64)
        .read_to_end(&mut start)
        .map_err(|e| read_error(path, 0, e))?;
    if start == BOM {
        Ok(reader)
    } else {
        Ok(Box::new(Cursor::new(start).chain(reader)))
    }
}

/// A read failure after `line` lines: corrupt or truncated data is the input's fault (exit 2).
pub fn read_error(path: &Path, line: u64, e: std::io::Error) -> Error {
    use std::io::ErrorKind::*;
    match e.kind() {
        InvalidData | InvalidInput | UnexpectedEof => Error::input(
            path,
            format!("cannot read after line {line} (corrupt or truncated gzip?): {e}"),
        ),
        _ => Error::io(path, e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: a doubled quote or the closing one.
    QuoteSeen,
}

/// Reads records one at a time; the current record's fields are borrowed from it.
pub struct Records<R> {
    inner: R,
    delimiter: u8,
    /// Newlines consumed so far.
    lines: u64,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// Why a record could not be read.
#[derive(Debug)]
pub enum RecordError {
    /// The underlying reader failed.
    Io(std::io::Error),
    /// The file ended inside a quoted field that began on this line.
    Unterminated(u64),
}

impl<R: BufRead> Records<R> {
    /// Reads `inner` with fields separated by `delimiter`.
    pub fn new(inner: R, delimiter: u8) -> Self {
        Records {
            inner,
            delimiter,
            lines: 0,
            bytes: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Reads the next record; returns the 1-based line it starts on, or `None` at the end.
    pub fn next_record(&mut self) -> std::result::Result<Option<u64>, RecordError> {
        let Records {
            inner,
            delimiter,
            lines,
            bytes,
            ends,
        } = self;
        bytes.clear();
        ends.clear();
        let first_line = *lines + 1;
        let mut state = State::FieldStart;
        let mut any = false;
        loop {
            let chunk = inner.fill_buf().map_err(RecordError::Io)?;
            if chunk.is_empty() {
                return match (any, state) {
                    (false, _) => Ok(None),
                    (true, State::Quoted) => Err(RecordError::Unterminated(first_line)),
                    (true, _) => {
                        end_field(bytes, ends, state, true);
                        Ok(Some(first_line))
                    }
                };
            }
            any = true;
            let mut used = 0;
            let mut done = false;
            for &b in chunk {
                used += 1;
                match (state, b) {
                    (State::Quoted, b'"') => state = State::QuoteSeen,
                    (State::Quoted, _) => {
                        *lines += u64::from(b == b'\n');
                        bytes.push(b);
                    }
                    (State::QuoteSeen, b'"') => {
                        bytes.push(b'"');
                        state = State::Quoted;
                    }
                    (State::FieldStart, b'"') => state = State::Quoted,
                    (_, b'\n') => {
                        *lines += 1;
                        end_field(bytes, ends, state, true);
                        done = true;
                        break;
                    }
                    (_, d) if d == *delimiter => {
                        end_field(bytes, ends, state, false);
                        state = State::FieldStart;
                    }
                    // A CR after a closing quote belongs to a CRLF line end.
                    (State::QuoteSeen, b'\r') => {}
                    // Lenient like most readers: text after a closing quote, or a quote inside
                    // an unquoted field, is kept as it is.
                    (_, _) => {
                        bytes.push(b);
                        state = State::Unquoted;
                    }
                }
            }
            inner.consume(used);
            if done {
                return Ok(Some(first_line));
            }
        }
    }
}

/// Ends the current field; at a line end, the CR of a CRLF is dropped from an unquoted one.
fn end_field(bytes: &mut Vec<u8>, ends: &mut Vec<usize>, state: State, line_end: bool) {
    if line_end && state == State::Unquoted && bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    ends.push(bytes.len());
}

impl<R> Records<R> {
    /// Lines read so far (for messages about what follows).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Number of fields in the current record.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the current record has no fields (never after a successful read).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Whether the current record is a blank line.
    pub fn is_blank(&self) -> bool {
        self.ends.len() == 1 && self.bytes.is_empty()
    }

    /// Field `i` of the current record (empty when absent).
    pub fn field(&self, i: usize) -> &[u8] {
        let Some(&end) = self.ends.get(i) else {
            return &[];
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `text` as (line, fields).
    fn all(text: &str, delimiter: u8) -> Vec<(u64, Vec<String>)> {
        let mut r = Records::new(text.as_bytes(), delimiter);
        let mut out = Vec::new();
        while let Some(line) = r.next_record().expect("valid records") {
            let fields = (0..r.len())
                .map(|i| String::from_utf8(r.field(i).to_vec()).expect("utf-8"))
                .collect();
            out.push((line, fields));
        }
        out
    }

    fn rec(line: u64, fields: &[&str]) -> (u64, Vec<String>) {
        (line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn quotes_escapes_delimiters_and_newlines_inside_quotes() {
        let text = "a,b,c\n\"x, y\",\"say \"\"hi\"\"\",3\n\"two\nlines\",,\"\"\nlast,5\"11,\"q\"z";
        assert_eq!(
            all(text, b','),
            vec![
                rec(1, &["a", "b", "c"]),
                rec(2, &["x, y", "say \"hi\"", "3"]),
                rec(3, &["two\nlines", "", ""]),
                rec(5, &["last", "5\"11", "qz"]),
            ]
        );
    }

    #[test]
    fn crlf_tabs_and_blank_lines() {
        let text = "a\tb\r\n\r\n\"1\"\t2\r\n3\t\"x\ty\"\r\n";
        let got = all(text, b'\t');
        assert_eq!(
            got,
            vec![
                rec(1, &["a", "b"]),
                rec(2, &[""]),
                rec(3, &["1", "2"]),
                rec(4, &["3", "x\ty"]),
            ]
        );
        // A CR inside a quoted field is data.
        assert_eq!(all("\"a\r\nb\",c\n", b','), vec![rec(1, &["a\r\nb", "c"])]);
    }

    #[test]
    fn an_unclosed_quote_names_its_line() {
        let mut r = Records::new("a,b\n1,\"open\n2,3\n".as_bytes(), b',');
        assert_eq!(r.next_record().ok().flatten(), Some(1));
        match r.next_record() {
            Err(RecordError::Unterminated(line)) => assert_eq!(line, 2),
            other => panic!("expected an unterminated field, got {other:?}"),
        }
    }

    #[test]
    fn byte_order_mark_and_gzip_by_magic_bytes() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("recpipe-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain = dir.join("bom.csv");
        std::fs::write(&plain, b"\xEF\xBB\xBF\"user\",item\n1,2\n").expect("write");
        let gz = dir.join("no-extension");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"\xEF\xBB\xBF\"user\",item\n1,2\n")
            .expect("gzip");
        std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        for path in [&plain, &gz] {
            let mut r = Records::new(open(path).expect("open"), b',');
            assert_eq!(r.next_record().ok().flatten(), Some(1));
            assert_eq!((r.field(0), r.field(1)), (&b"user"[..], &b"item"[..]));
        }
        let bad = dir.join("fake.csv.gz");
        std::fs::write(&bad, b"user,item\n").expect("write");
        let err = open(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not gzip"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
