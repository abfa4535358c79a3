//! `recpipe import movielens`: the ml-100k, ml-1m and csv (ml-latest, ml-20m, ml-25m) layouts.

use super::text::{read_records, Encoding, Record, TextFormat};
use super::EventSink;
use crate::calendar::days_from_civil;
use crate::data::{Event, Items, Users};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// The MovieLens file layouts recpipe understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// ml-100k: `u.data`, `u.item`, `u.user`, `u.genre` (Latin-1, `|` and tab separated).
    Ml100k,
    /// ml-1m: `ratings.dat`, `movies.dat`, `users.dat` (Latin-1, `::` separated).
    Ml1m,
    /// ml-latest, ml-20m, ml-25m: `ratings.csv`, `movies.csv` (UTF-8 with a header).
    Csv,
}

/// Finds which layout `dir` holds.
pub fn detect(dir: &Path) -> Result<Layout> {
    if dir.join("u.data").is_file() {
        Ok(Layout::Ml100k)
    } else if dir.join("ratings.dat").is_file() {
        Ok(Layout::Ml1m)
    } else if dir.join("ratings.csv").is_file() {
        Ok(Layout::Csv)
    } else {
        Err(Error::Input(format!(
            "{}: no MovieLens layout found (expected u.data, ratings.dat or ratings.csv)",
            dir.display()
        )))
    }
}

/// Reads a MovieLens folder into events (every rating is a watched event with its rating and no
/// watch time), items (title, genres, release time where known) and users (demographics where
/// present). The events go into `sink`.
pub fn read(dir: &Path, sink: &mut EventSink) -> Result<(Items, Users)> {
    let layout = detect(dir)?;
    sink.start(&format!("movielens {layout:?}"), &[]);
    let rating_line =
        |r: &Record, ev: &mut EventSink, uid: usize, iid: usize, rt: usize, ts: usize| {
            ev.push(
                Event {
                    user_id: r.parse(uid, "user_id")?,
                    item_id: r.parse(iid, "item_id")?,
                    timestamp: r.parse(ts, "timestamp")?,
                    watched: true,
                    watch_time: None,
                    rating: Some(r.parse(rt, "rating")?),
                },
                &[],
            )
        };
    let (items, users) = match layout {
        Layout::Ml100k => {
            let tab = fmt("\t", false, Encoding::Latin1);
            read_records(&dir.join("u.data"), &tab, Some(4), |r| {
                rating_line(r, sink, 0, 1, 2, 3)
            })?;
            (read_100k_items(dir)?, read_100k_users(dir)?)
        }
        Layout::Ml1m => {
            let dat = fmt("::", false, Encoding::Latin1);
            read_records(&dir.join("ratings.dat"), &dat, Some(4), |r| {
                rating_line(r, sink, 0, 1, 2, 3)
            })?;
            (read_movies(dir, "movies.dat", &dat)?, read_1m_users(dir)?)
        }
        Layout::Csv => {
            let csv = TextFormat {
                header: true,
                ..fmt(",", true, Encoding::Utf8)
            };
            read_records(&dir.join("ratings.csv"), &csv, Some(4), |r| {
                rating_line(r, sink, 0, 1, 2, 3)
            })?;
            (read_movies(dir, "movies.csv", &csv)?, Users::default())
        }
    };
    Ok((items, users))
}

fn fmt(separator: &'static str, quoted: bool, encoding: Encoding) -> TextFormat {
    TextFormat {
        separator,
        quoted,
        header: false,
        encoding,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `01-Jan-1995` as Unix seconds.
fn parse_dd_mon_yyyy(s: &str) -> Option<i64> {
    let mut parts = s.trim().split('-');
    let day: u32 = parts.next()?.parse().ok()?;
    let mon = parts.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    Some(days_from_civil(year, month, day) * 86_400)
}

/// The release year in a title like `Toy Story (1995)`, as Unix seconds of its January 1st.
fn year_in_title(title: &str) -> Option<i64> {
    let t = title.trim_end();
    let open = t.rfind('(')?;
    let inner = t[open + 1..].strip_suffix(')')?;
    let year: i64 = inner.get(..4)?.parse().ok()?;
    (1870..2100)
        .contains(&year)
        .then(|| days_from_civil(year, 1, 1) * 86_400)
}

fn read_100k_items(dir: &Path) -> Result<Items> {
    let bar = fmt("|", false, Encoding::Latin1);
    let mut genres: Vec<(usize, String)> = Vec::new();
    let genre_path = dir.join("u.genre");
    if genre_path.is_file() {
        read_records(&genre_path, &bar, Some(2), |r| {
            genres.push((r.parse(1, "genre_index")?, r.text(0).to_string()));
            Ok(())
        })?;
    }
    let mut items = Items::default();
    let path = dir.join("u.item");
    if !path.is_file() {
        return Ok(items);
    }
    read_records(&path, &bar, Some(24), |r| {
        let flags = &r.fields[5..];
        let mut cats = Vec::new();
        for (i, f) in flags.iter().enumerate() {
            if f.trim() == "1" {
                let name = genres
                    .iter()
                    .find(|(k, _)| *k == i)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| format!("genre{i}"));
                cats.push(name);
            }
        }
        let title = r.text(1).trim();
        items.push(
            r.parse(0, "item_id")?,
            None,
            parse_dd_mon_yyyy(r.text(2)),
            cats,
            (!title.is_empty()).then(|| title.to_string()),
        );
        Ok(())
    })?;
    Ok(items)
}

fn read_movies(dir: &Path, name: &str, format: &TextFormat) -> Result<Items> {
    let mut items = Items::default();
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(items);
    }
    read_records(&path, format, Some(3), |r| {
        let title = r.text(1).trim().to_string();
        let cats = r
            .text(2)
            .split('|')
            .map(str::trim)
            .filter(|g| !g.is_empty() && *g != "(no genres listed)")
            .map(str::to_string)
            .collect();
        items.push(
            r.parse(0, "item_id")?,
            None,
            year_in_title(&title),
            cats,
            Some(title),
        );
        Ok(())
    })?;
    Ok(items)
}

fn read_100k_users(dir: &Path) -> Result<Users> {
    let path = dir.join("u.user");
    let mut users = Users {
        categorical: ["gender", "occupation", "zip"]
            .iter()
            .map(|n| (n.to_string(), Vec::new()))
            .collect(),
        numeric: vec![("age".to_string(), Vec::new())],
        ..Default::default()
    };
    if !path.is_file() {
        return Ok(Users::default());
    }
    read_records(&path, &fmt("|", false, Encoding::Latin1), Some(5), |r| {
        users.user_id.push(r.parse(0, "user_id")?);
        users.numeric[0].1.push(r.parse_opt::<f64>(1, "age")?);
        for (k, field) in [2usize, 3, 4].iter().enumerate() {
            let v = r.text(*field).trim();
            users.categorical[k]
                .1
                .push((!v.is_empty()).then(|| v.to_string()));
        }
        Ok(())
    })?;
    Ok(users)
}

fn read_1m_users(dir: &Path) -> Result<Users> {
    let path = dir.join("users.dat");
    if !path.is_file() {
        return Ok(Users::default());
    }
    // Age and occupation are codes of buckets in ml-1m: categorical.
    let names = ["gender", "age", "occupation", "zip"];
    let mut users = Users {
        categorical: names.iter().map(|n| (n.to_string(), Vec::new())).collect(),
        ..Default::default()
    };
    read_records(&path, &fmt("::", false, Encoding::Latin1), Some(5), |r| {
        users.user_id.push(r.parse(0, "user_id")?);
        for k in 0..names.len() {
            let v = r.text(k + 1).trim();
            users.categorical[k]
                .1
                .push((!v.is_empty()).then(|| v.to_string()));
        }
        Ok(())
    })?;
    Ok(users)
}

/// Distinct values of an id column.
pub fn distinct(ids: &[i64]) -> usize {
    ids.iter().collect::<BTreeSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_years() {
        assert_eq!(parse_dd_mon_yyyy("01-Jan-1995"), Some(788_918_400));
        assert_eq!(parse_dd_mon_yyyy(""), None);
        assert_eq!(year_in_title("Toy Story (1995)"), Some(788_918_400));
        assert_eq!(year_in_title("Babylon 5"), None);
    }
}
