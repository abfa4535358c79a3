//! Unit tests of the CSV import: gzip and folders of parts read as one plain file, canonical
//! integer ids, delimiters.

use super::*;
use std::io::Write;

type Owned = (String, String, i64, bool, Option<f32>, Option<f32>);

fn options(files: Vec<PathBuf>) -> CsvImport {
    CsvImport {
        input: files[0].clone(),
        files,
        delimiter: b',',
        time_format: TimeFormat::parse("rfc3339").expect("format"),
        user: "user".into(),
        item: "item".into(),
        time: "when".into(),
        watched: Some("seen".into()),
        watch_time: Some("secs".into()),
        rating: None,
    }
}

fn rows(opts: &CsvImport) -> Result<Vec<Owned>> {
    let mut out = Vec::new();
    opts.scan(|r| {
        out.push((
            r.user.to_string(),
            r.item.to_string(),
            r.timestamp,
            r.watched,
            r.watch_time,
            r.rating,
        ));
        Ok(())
    })?;
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

const HEADER: &str = "user,item,when,seen,secs\n";
const PART1: &str =
    "u1,10,2024-01-01T00:00:00Z,yes,12.5\n\"u,2\",11,2024-01-01T01:00:00+01:00,NO,\n";
const PART2: &str = "u1,007,2024-01-02T00:00:00Z,True,\n";

#[test]
fn gzip_equals_plain_and_a_folder_equals_the_concatenation() {
    let dir = std::env::temp_dir().join(format!("recpipe-csv-{}", std::process::id()));
    let parts = dir.join("parts");
    std::fs::create_dir_all(&parts).expect("temp dir");
    let whole = format!("{HEADER}{PART1}{PART2}");
    let plain = dir.join("all.csv");
    std::fs::write(&plain, &whole).expect("write");
    let gz = dir.join("all.csv.gz");
    std::fs::write(&gz, gzip(whole.as_bytes())).expect("write");
    std::fs::write(
        parts.join("b.csv.gz"),
        gzip(format!("{HEADER}{PART2}").as_bytes()),
    )
    .expect("write");
    std::fs::write(parts.join("a.csv"), format!("{HEADER}{PART1}")).expect("write");
    std::fs::write(parts.join("notes.txt"), "not read").expect("write");
    let want = rows(&options(vec![plain])).expect("plain");
    assert_eq!(want.len(), 3);
    assert_eq!(want[1].0, "u,2");
    assert_eq!(
        (want[1].2, want[1].3, want[1].4),
        (1_704_067_200, false, None)
    );
    assert_eq!(want[0].4, Some(12.5));
    assert_eq!(rows(&options(vec![gz])).expect("gzip"), want);
    let files = list_inputs(&parts).expect("parts");
    assert_eq!(files.len(), 2);
    assert_eq!(rows(&options(files)).expect("folder"), want);
    // A part with another header is refused.
    std::fs::write(
        parts.join("c.csv"),
        "user,item,when\nu,1,2024-01-01T00:00:00Z\n",
    )
    .expect("write");
    let err = rows(&options(list_inputs(&parts).expect("parts"))).unwrap_err();
    assert!(err.to_string().contains("differs from"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn canonical_integers() {
    for s in ["0", "7", "-7", "1704067200", "9223372036854775807"] {
        assert_eq!(canonical_int(s).map(|v| v.to_string()), Some(s.to_string()));
    }
    for s in [
        "007",
        "+7",
        "-0",
        "-07",
        "1e3",
        "7.0",
        " 7",
        "",
        "-",
        "9223372036854775808",
    ] {
        assert_eq!(canonical_int(s), None, "{s}");
    }
    let mut d = Distinct::default();
    for s in ["1", "2", "1"] {
        d.add(s);
    }
    assert_eq!((d.id_type(), d.len()), (IdType::Int64, 2));
    d.add("007");
    d.add("2");
    assert_eq!((d.id_type(), d.len()), (IdType::Utf8, 3));
}

#[test]
fn values_in_messages_stay_on_one_line() {
    assert_eq!(shown("café"), "café");
    assert_eq!(shown("a\nb\tc"), "a\\nb\\tc");
    assert_eq!(shown(&"x".repeat(100)), format!("{}...", "x".repeat(60)));
    let err = TimeFormat::parse("unix")
        .expect("format")
        .to_unix("17\n04")
        .unwrap_err();
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn delimiters() {
    assert_eq!(parse_delimiter(",").ok(), Some(b','));
    assert_eq!(parse_delimiter("tab").ok(), Some(b'\t'));
    assert_eq!(parse_delimiter("\\t").ok(), Some(b'\t'));
    assert_eq!(parse_delimiter(";").ok(), Some(b';'));
    assert!(parse_delimiter("\"").is_err());
    assert!(parse_delimiter("ab").is_err());
}
