//! Reading delimited text files record by record with errors that name the file, line and field.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// How text bytes are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (invalid sequences are replaced).
    Utf8,
    /// ISO-8859-1 / Windows-1252, as the older MovieLens files are.
    Latin1,
}

impl Encoding {
    /// Decodes one field.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Latin1 => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned(),
        }
    }
}

/// The layout of a delimited file.
#[derive(Debug, Clone)]
pub struct TextFormat {
    /// The field separator; `"::"` is allowed (MovieLens 1M).
    pub separator: &'static str,
    /// Whether fields may be double-quoted (CSV).
    pub quoted: bool,
    /// Whether the first line is a header.
    pub header: bool,
    /// How bytes are decoded.
    pub encoding: Encoding,
}

/// One record: its 1-based line number and its fields.
pub struct Record<'a> {
    /// The file, for messages.
    pub path: &'a Path,
    /// 1-based line number.
    pub line: u64,
    /// The decoded fields.
    pub fields: Vec<String>,
}

impl Record<'_> {
    /// Field `i` parsed as `T`, or an error naming the file, line and column.
    pub fn parse<T: std::str::FromStr>(&self, i: usize, column: &str) -> Result<T> {
        let raw = self.fields.get(i).map(|s| s.trim()).unwrap_or("");
        raw.parse::<T>().map_err(|_| {
            Error::input(
                self.path,
                format!(
                    "line {}, column '{column}': '{raw}' is not a valid {}",
                    self.line,
                    short_type::<T>()
                ),
            )
        })
    }

    /// Field `i` as an optional number: empty means `None`.
    pub fn parse_opt<T: std::str::FromStr>(&self, i: usize, column: &str) -> Result<Option<T>> {
        let raw = self.fields.get(i).map(|s| s.trim()).unwrap_or("");
        if raw.is_empty() {
            Ok(None)
        } else {
            self.parse(i, column).map(Some)
        }
    }

    /// Field `i` as text ("" when absent).
    pub fn text(&self, i: usize) -> &str {
        self.fields.get(i).map(|s| s.as_str()).unwrap_or("")
    }
}

fn short_type<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    if name.contains("f32") || name.contains("f64") {
        "number"
    } else {
        "integer"
    }
}

/// Reads `path` record by record. Every record must have `expected_fields` fields (when given),
/// else the error names the line. Returns the header's fields (empty without a header).
pub fn read_records(
    path: &Path,
    format: &TextFormat,
    expected_fields: Option<usize>,
    mut each: impl FnMut(&Record) -> Result<()>,
) -> Result<Vec<String>> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut header = Vec::new();
    let mut expected = expected_fields;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        while matches!(buf.last(), Some(b'\n') | Some(b'\r')) {
            buf.pop();
        }
        if buf.is_empty() {
            continue;
        }
        let fields: Vec<String> = split_fields(&buf, format)
            .map_err(|what| Error::input(path, format!("line {line}: {what}")))?
            .into_iter()
            .map(|f| format.encoding.decode(&f))
            .collect();
        if format.header && header.is_empty() && line == 1 {
            if expected.is_none() {
                expected = Some(fields.len());
            }
            header = fields;
            continue;
        }
        if let Some(want) = expected {
            if fields.len() != want {
                return Err(Error::input(
                    path,
                    format!(
                        "line {line}: expected {want} fields, found {}",
                        fields.len()
                    ),
                ));
            }
        }
        each(&Record { path, line, fields })?;
    }
    if line == 0 {
        return Err(Error::input(path, "the file is empty"));
    }
    Ok(header)
}

fn split_fields(line: &[u8], format: &TextFormat) -> std::result::Result<Vec<Vec<u8>>, String> {
    let sep = format.separator.as_bytes();
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    let mut in_quotes = false;
    let mut field_start = true;
    while i < line.len() {
        let b = line[i];
        if format.quoted && in_quotes {
            if b == b'"' {
                if line.get(i + 1) == Some(&b'"') {
                    cur.push(b'"');
                    i += 2;
                    continue;
                }
                in_quotes = false;
            } else {
                cur.push(b);
            }
            i += 1;
            continue;
        }
        if format.quoted && field_start && b == b'"' {
            in_quotes = true;
            field_start = false;
            i += 1;
            continue;
        }
        if line[i..].starts_with(sep) {
            fields.push(std::mem::take(&mut cur));
            i += sep.len();
            field_start = true;
            continue;
        }
        cur.push(b);
        field_start = false;
        i += 1;
    }
    if in_quotes {
        return Err("unterminated quoted field".to_string());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_csv_fields() {
        let f = TextFormat {
            separator: ",",
            quoted: true,
            header: false,
            encoding: Encoding::Utf8,
        };
        let got = split_fields(br#"11,"American President, The (1995)",Comedy|Drama"#, &f)
            .expect("valid line");
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], b"American President, The (1995)".to_vec());
        let got = split_fields(br#"1,"say ""hi""",x"#, &f).expect("valid line");
        assert_eq!(got[1], b"say \"hi\"".to_vec());
        let f2 = TextFormat {
            separator: "::",
            quoted: false,
            ..f
        };
        let got = split_fields(b"1::Toy Story (1995)::Animation|Comedy", &f2).expect("valid");
        assert_eq!(got.len(), 3);
    }
}
