//! `recpipe import kuairand`: KuaiRand logs (one event per impression), video and user features.

use super::text::{read_records, Encoding, Record, TextFormat};
use super::EventSink;
use crate::calendar::days_from_civil;
use crate::data::{Event, Items, Users};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// KuaiRand's dates are China Standard Time (UTC+8).
const CST_OFFSET_S: i64 = 8 * 3600;

fn csv() -> TextFormat {
    TextFormat {
        separator: ",",
        quoted: true,
        header: true,
        encoding: Encoding::Utf8,
    }
}

/// Files in `dir` whose name starts with `prefix` and ends with `.csv`, sorted by name.
fn matching(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::input(dir, format!("cannot list: {e}")))?;
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(prefix) && name.ends_with(".csv") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn column(header: &[String], path: &Path, name: &str) -> Result<usize> {
    header.iter().position(|h| h.trim() == name).ok_or_else(|| {
        Error::input(
            path,
            format!("missing required column '{name}' in the header"),
        )
    })
}

/// Reads a KuaiRand folder: `log_*.csv` impressions become events (`watched = is_click`,
/// `watch_time = play_time_ms / 1000` on clicked impressions, timestamp from `time_ms`); every
/// other log column is kept as an extra `Int64` column. Items come from
/// `video_features_basic*.csv` (duration, upload date, tags), users from `user_features*.csv`.
/// The events go into `sink`.
pub fn read(dir: &Path, sink: &mut EventSink) -> Result<(Items, Users)> {
    let logs = matching(dir, "log_")?;
    if logs.is_empty() {
        return Err(Error::Input(format!(
            "{}: no KuaiRand log found (expected log_*.csv)",
            dir.display()
        )));
    }
    let mut log_duration: HashMap<i64, f32> = HashMap::new();
    let mut extra_names: Option<Vec<String>> = None;
    for path in &logs {
        let header = first_line_fields(path)?;
        let uid = column(&header, path, "user_id")?;
        let vid = column(&header, path, "video_id")?;
        let tms = column(&header, path, "time_ms")?;
        let click = column(&header, path, "is_click")?;
        let play = column(&header, path, "play_time_ms")?;
        let dur = header.iter().position(|h| h == "duration_ms");
        let extra_cols: Vec<usize> = (0..header.len())
            .filter(|&i| i != uid && i != vid)
            .collect();
        let names: Vec<String> = extra_cols
            .iter()
            .map(|&i| header[i].trim().to_string())
            .collect();
        match &extra_names {
            None => {
                sink.start("kuairand", &names);
                extra_names = Some(names);
            }
            Some(prev) if *prev != names => return Err(Error::input(
                path,
                "its columns differ from the first log file's; import logs of one kind together",
            )),
            Some(_) => {}
        }
        let mut extra = vec![0i64; extra_cols.len()];
        read_records(path, &csv(), Some(header.len()), |r: &Record| {
            let time_ms: i64 = r.parse(tms, "time_ms")?;
            let clicked: i64 = r.parse(click, "is_click")?;
            let watched = match clicked {
                0 => false,
                1 => true,
                other => {
                    return Err(Error::input(
                        path,
                        format!("line {}, column 'is_click': {other} is not 0 or 1", r.line),
                    ))
                }
            };
            let play_ms: f64 = r.parse(play, "play_time_ms")?;
            if !play_ms.is_finite() || play_ms < 0.0 {
                return Err(Error::input(
                    path,
                    format!(
                        "line {}, column 'play_time_ms': {play_ms} is not a non-negative number",
                        r.line
                    ),
                ));
            }
            let item_id: i64 = r.parse(vid, "video_id")?;
            if let Some(d) = dur {
                if let Some(ms) = r.parse_opt::<f64>(d, "duration_ms")? {
                    log_duration.entry(item_id).or_insert((ms / 1000.0) as f32);
                }
            }
            for (slot, &c) in extra.iter_mut().zip(&extra_cols) {
                *slot = r.parse_opt::<i64>(c, &header[c])?.unwrap_or(0);
            }
            sink.push(
                Event {
                    user_id: r.parse(uid, "user_id")?,
                    item_id,
                    timestamp: time_ms.div_euclid(1000),
                    watched,
                    watch_time: watched.then_some((play_ms / 1000.0) as f32),
                    rating: None,
                },
                &extra,
            )
        })?;
    }
    let items = read_items(dir, &log_duration)?;
    let users = read_users(dir)?;
    Ok((items, users))
}

fn first_line_fields(path: &Path) -> Result<Vec<String>> {
    use std::io::BufRead;
    let file =
        std::fs::File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(|e| Error::io(path, e))?;
    if line.trim().is_empty() {
        return Err(Error::input(path, "the file is empty (no header)"));
    }
    Ok(line
        .trim_end()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect())
}

/// `2022-04-10` as Unix seconds of midnight China Standard Time.
fn parse_upload_date(s: &str) -> Option<i64> {
    let mut p = s.trim().split('-');
    let y: i64 = p.next()?.parse().ok()?;
    let m: u32 = p.next()?.parse().ok()?;
    let d: u32 = p.next()?.get(..2)?.parse().ok()?;
    Some(days_from_civil(y, m, d) * 86_400 - CST_OFFSET_S)
}

fn read_items(dir: &Path, log_duration: &HashMap<i64, f32>) -> Result<Items> {
    let mut items = Items::default();
    for path in matching(dir, "video_features_basic")? {
        let header = first_line_fields(&path)?;
        let vid = column(&header, &path, "video_id")?;
        let dur = header.iter().position(|h| h == "video_duration");
        let up = header.iter().position(|h| h == "upload_dt");
        let tag = header.iter().position(|h| h == "tag");
        read_records(&path, &csv(), Some(header.len()), |r| {
            let id: i64 = r.parse(vid, "video_id")?;
            let duration = match dur {
                Some(c) => r
                    .parse_opt::<f64>(c, "video_duration")?
                    .map(|ms| (ms / 1000.0) as f32),
                None => None,
            }
            .or_else(|| log_duration.get(&id).copied());
            let published = up.and_then(|c| parse_upload_date(r.text(c)));
            let cats = tag
                .map(|c| {
                    r.text(c)
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| format!("tag{t}"))
                        .collect()
                })
                .unwrap_or_default();
            items.push(id, duration, published, cats, None);
            Ok(())
        })?;
    }
    // Items seen only in the logs still get their duration.
    let known: std::collections::HashSet<i64> = items.item_id.iter().copied().collect();
    let mut rest: Vec<(&i64, &f32)> = log_duration
        .iter()
        .filter(|(id, _)| !known.contains(id))
        .collect();
    rest.sort_by_key(|(id, _)| **id);
    for (&id, &d) in rest {
        items.push(id, Some(d), None, Vec::new(), None);
    }
    Ok(items)
}

/// User features: `user_id`; flags (`is_*`) and one-hot codes (`onehot_feat*`) and any
/// non-numeric column are categorical, other columns numeric.
fn read_users(dir: &Path) -> Result<Users> {
    let mut users = Users::default();
    let Some(path) = matching(dir, "user_features")?.into_iter().next() else {
        return Ok(users);
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let header = read_records(&path, &csv(), None, |r| {
        rows.push(r.fields.clone());
        Ok(())
    })?;
    let uid = column(&header, &path, "user_id")?;
    for (line, row) in rows.iter().enumerate() {
        let raw = row[uid].trim();
        let id = raw.parse::<i64>().map_err(|_| {
            Error::input(
                &path,
                format!(
                    "line {}, column 'user_id': '{raw}' is not a valid integer",
                    line + 2
                ),
            )
        })?;
        users.user_id.push(id);
    }
    for (c, name) in header.iter().enumerate() {
        if c == uid {
            continue;
        }
        let values: Vec<&str> = rows.iter().map(|r| r[c].trim()).collect();
        let numeric = !(name.starts_with("is_") || name.starts_with("onehot_feat"))
            && values
                .iter()
                .all(|v| v.is_empty() || v.parse::<f64>().is_ok());
        if numeric {
            users.numeric.push((
                name.clone(),
                values
                    .iter()
                    .map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite()))
                    .collect(),
            ));
        } else {
            users.categorical.push((
                name.clone(),
                values
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.trim_end_matches(".0").to_string()))
                    .collect(),
            ));
        }
    }
    Ok(users)
}
