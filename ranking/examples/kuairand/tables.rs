//! Plain-std readers of the three KuaiRand-Pure CSV files.

use std::collections::HashMap;
use std::error::Error;
use std::path::Path;

type Res<T> = Result<T, Box<dyn Error>>;

/// The impression log (columns used by the experiment).
pub struct Log {
    pub user_id: Vec<i64>,
    pub item_id: Vec<i64>,
    /// YYYYMMDD.
    pub date: Vec<i64>,
    pub time_ms: Vec<i64>,
    pub clicked: Vec<bool>,
    /// `play_time_ms` / 1000 (seconds).
    pub watch_time: Vec<f32>,
}

/// Video side information.
pub struct Videos {
    /// Video id -> token ids ("tag:<t>" for each tag, "upload:<type>").
    pub tokens: HashMap<i64, Vec<u32>>,
    /// Video id -> duration in seconds.
    pub duration: HashMap<i64, f32>,
    /// Video id -> upload day as Unix seconds (midnight UTC).
    pub published: HashMap<i64, i64>,
    pub n_tokens: usize,
}

/// User categorical fields, each with its own vocabulary.
pub struct Users {
    pub values: HashMap<i64, Vec<Option<u32>>>,
    pub cardinalities: Vec<usize>,
}

fn read(path: &Path) -> Res<String> {
    std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (KuaiRand-Pure expected there, see --data)",
            path.display()
        )
        .into()
    })
}

/// Splits one CSV line, honouring double quotes ("" inside quotes is a quote).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Column positions of `names` in the header line.
fn columns(header: &str, names: &[&str]) -> Res<Vec<usize>> {
    let header = fields(header);
    names
        .iter()
        .map(|name| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("no column {name}").into())
        })
        .collect()
}

pub fn read_log(path: &Path) -> Res<Log> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty log")?;
    let names = [
        "user_id",
        "video_id",
        "date",
        "time_ms",
        "is_click",
        "play_time_ms",
    ];
    let col = columns(header, &names)?;
    let mut log = Log {
        user_id: vec![],
        item_id: vec![],
        date: vec![],
        time_ms: vec![],
        clicked: vec![],
        watch_time: vec![],
    };
    for (number, line) in lines.enumerate() {
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != 19 {
            return Err(format!(
                "{}: line {}: {} columns, expected 19",
                path.display(),
                number + 2,
                values.len()
            )
            .into());
        }
        let int = |k: usize| -> Res<i64> {
            values[col[k]]
                .trim()
                .parse::<i64>()
                .map_err(|e| format!("line {}: {}: {e}", number + 2, names[k]).into())
        };
        log.user_id.push(int(0)?);
        log.item_id.push(int(1)?);
        log.date.push(int(2)?);
        log.time_ms.push(int(3)?);
        log.clicked.push(int(4)? == 1);
        log.watch_time.push(int(5)? as f32 / 1000.0);
    }
    Ok(log)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    Some(days_from_civil(y, m, d) * 86_400)
}

pub fn read_videos(path: &Path) -> Res<Videos> {
    let text = read(path)?;
    let mut lines = text.lines();
    let col = columns(
        lines.next().ok_or("empty video file")?,
        &[
            "video_id",
            "upload_dt",
            "upload_type",
            "video_duration",
            "tag",
        ],
    )?;
    let mut vocabulary: HashMap<String, u32> = HashMap::new();
    let mut videos = Videos {
        tokens: HashMap::new(),
        duration: HashMap::new(),
        published: HashMap::new(),
        n_tokens: 0,
    };
    for line in lines {
        let f = fields(line);
        let get = |k: usize| f.get(col[k]).map(String::as_str).unwrap_or("");
        let id: i64 = get(0).parse()?;
        if let Some(p) = parse_day(get(1)) {
            videos.published.insert(id, p);
        }
        if let Ok(ms) = get(3).parse::<f32>() {
            videos.duration.insert(id, ms / 1000.0);
        }
        let names = get(4)
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| format!("tag:{t}"));
        let names = names.chain((!get(2).is_empty()).then(|| format!("upload:{}", get(2))));
        let tokens = names
            .map(|name| {
                let next = vocabulary.len() as u32;
                *vocabulary.entry(name).or_insert(next)
            })
            .collect();
        videos.tokens.insert(id, tokens);
    }
    videos.n_tokens = vocabulary.len();
    Ok(videos)
}

/// Categorical user columns used as features.
const USER_FIELDS: [&str; 7] = [
    "user_active_degree",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
];

pub fn read_users(path: &Path) -> Res<Users> {
    let text = read(path)?;
    let mut lines = text.lines();
    let onehot: Vec<String> = (0..18).map(|k| format!("onehot_feat{k}")).collect();
    let mut names: Vec<&str> = vec!["user_id"];
    names.extend(USER_FIELDS);
    names.extend(onehot.iter().map(String::as_str));
    let col = columns(lines.next().ok_or("empty user file")?, &names)?;
    let mut vocabularies: Vec<HashMap<String, u32>> = vec![HashMap::new(); names.len() - 1];
    let mut users = Users {
        values: HashMap::new(),
        cardinalities: vec![],
    };
    for line in lines {
        let f = fields(line);
        let id: i64 = f.get(col[0]).ok_or("short line")?.parse()?;
        let values = vocabularies
            .iter_mut()
            .zip(&col[1..])
            .map(|(vocabulary, &c)| {
                let value = f.get(c).cloned().unwrap_or_default();
                let next = vocabulary.len() as u32;
                Some(*vocabulary.entry(value).or_insert(next))
            })
            .collect();
        users.values.insert(id, values);
    }
    users.cardinalities = vocabularies.iter().map(HashMap::len).collect();
    Ok(users)
}
