//! `recpipe generate`: a synthetic world good enough to test every stage. Items have hidden taste
//! vectors grouped in clusters, heavy-tailed popularity and publication times (some published
//! during the simulated days: fresh items); users have tastes over a few favourite clusters and
//! heavy-tailed activity. Each session shows pages of 10-20 items; a watch depends on taste,
//! position and popularity, and the watch time (never above the duration) on taste and duration.
//! Events stream to Parquet user block by user block, so memory stays bounded; the same seed
//! gives the same bytes whatever the number of threads.

use crate::data::{write_items, write_users};
use crate::data::{Event, EventsWriter, Items, Users};
use crate::error::{Error, Result};
use crate::output::{commit_all, OutputDir};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// 2024-01-01T00:00:00Z: the first simulated day.
pub const WORLD_START: i64 = 1_704_067_200;
const DAY: i64 = 86_400;
const TASTE_DIM: usize = 16;
const GENRES: usize = 24;
const COUNTRIES: usize = 12;

/// The shape of a synthetic world.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldConfig {
    /// Number of users.
    pub users: usize,
    /// Number of items.
    pub items: usize,
    /// Simulated days.
    pub days: usize,
    /// Seed: the same seed gives the same files.
    pub seed: u64,
    /// Mean sessions per user per day (each user's rate varies around it, heavy-tailed).
    pub sessions_per_day: f64,
    /// Share of items published during the simulated days (the rest in the 180 days before).
    pub fresh_share: f64,
    /// Zipf exponent of item popularity.
    pub zipf: f64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            users: 2_000,
            items: 3_000,
            days: 14,
            seed: 42,
            sessions_per_day: 0.5,
            fresh_share: 0.2,
            zipf: 0.9,
        }
    }
}

/// What a generation produced.
#[derive(Debug, Clone, Serialize)]
pub struct WorldSummary {
    /// Impressions written.
    pub events: usize,
    /// Watched impressions among them.
    pub watched: usize,
    /// Users.
    pub users: usize,
    /// Items.
    pub items: usize,
    /// Items published during the simulated days.
    pub fresh_items: usize,
}

struct Catalogue {
    cluster_of: Vec<u32>,
    taste: Vec<f32>,
    duration: Vec<f32>,
    published: Vec<i64>,
    popularity: Vec<f64>,
    /// Per cluster: its items by descending popularity and their cumulative popularity.
    cluster_items: Vec<Vec<u32>>,
    cluster_cum_items: Vec<Vec<f64>>,
    /// All items' cumulative popularity (item order).
    global_cum: Vec<f64>,
    /// Items ordered by publication time, and those times.
    by_time: Vec<u32>,
    by_time_t: Vec<i64>,
    centroids: Vec<f32>,
    cluster_pop: Vec<f64>,
    /// Cumulative cluster popularity, and its square root (how favourites are drawn).
    cluster_cum: Vec<f64>,
    cluster_cum_sqrt: Vec<f64>,
}

fn num_clusters(items: usize) -> usize {
    (items / 60).clamp(8, 4_000)
}

fn cumulative(w: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    w.map(|x| {
        acc += x;
        acc
    })
    .collect()
}

fn pick(cum: &[f64], rng: &mut Rng) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.f64() * total;
    cum.partition_point(|&c| c <= x)
        .min(cum.len().saturating_sub(1))
}

fn build_catalogue(cfg: &WorldConfig) -> Catalogue {
    let m = cfg.items;
    let k = num_clusters(m);
    let mut rng = Rng::stream(cfg.seed, u64::MAX);
    let centroids: Vec<f32> = (0..k * TASTE_DIM).map(|_| rng.normal() as f32).collect();
    // Popularity: Zipf over a random permutation of ranks.
    let mut rank: Vec<u32> = (0..m as u32).collect();
    for i in (1..m).rev() {
        rank.swap(i, rng.below(i + 1));
    }
    let popularity: Vec<f64> = rank
        .iter()
        .map(|&r| 1.0 / (r as f64 + 10.0).powf(cfg.zipf))
        .collect();
    let days = cfg.days as i64;
    let per_item: Vec<(u32, Vec<f32>, f32, i64)> = (0..m)
        .into_par_iter()
        .map(|i| {
            let mut r = Rng::stream(cfg.seed, (1 << 40) + i as u64);
            let c = r.below(k);
            let taste = (0..TASTE_DIM)
                .map(|d| centroids[c * TASTE_DIM + d] + 0.45 * r.normal() as f32)
                .collect();
            let duration = (240.0 * (0.8 * r.normal()).exp()).clamp(15.0, 3_600.0) as f32;
            let published = if r.f64() < cfg.fresh_share {
                WORLD_START + (r.f64() * (days * DAY) as f64) as i64
            } else {
                WORLD_START - 1 - (r.f64() * (180 * DAY) as f64) as i64
            };
            (c as u32, taste, duration, published)
        })
        .collect();
    let mut cat = Catalogue {
        cluster_of: Vec::with_capacity(m),
        taste: Vec::with_capacity(m * TASTE_DIM),
        duration: Vec::with_capacity(m),
        published: Vec::with_capacity(m),
        global_cum: cumulative(popularity.iter().copied()),
        popularity,
        cluster_items: vec![Vec::new(); k],
        cluster_cum_items: Vec::new(),
        cluster_cum: Vec::new(),
        cluster_cum_sqrt: Vec::new(),
        by_time: (0..m as u32).collect(),
        by_time_t: Vec::new(),
        centroids,
        cluster_pop: vec![0.0; k],
    };
    for (i, (c, taste, d, p)) in per_item.into_iter().enumerate() {
        cat.cluster_of.push(c);
        cat.taste.extend(taste);
        cat.duration.push(d);
        cat.published.push(p);
        cat.cluster_items[c as usize].push(i as u32);
        cat.cluster_pop[c as usize] += cat.popularity[i];
    }
    for items in cat.cluster_items.iter_mut() {
        items.sort_by(|&a, &b| {
            cat.popularity[b as usize]
                .total_cmp(&cat.popularity[a as usize])
                .then(a.cmp(&b))
        });
    }
    cat.cluster_cum_sqrt = cumulative(cat.cluster_pop.iter().map(|p| p.sqrt()));
    cat.cluster_cum = cumulative(cat.cluster_pop.iter().copied());
    cat.cluster_cum_items = cat
        .cluster_items
        .iter()
        .map(|items| cumulative(items.iter().map(|&i| cat.popularity[i as usize])))
        .collect();
    cat.by_time.sort_by_key(|&i| (cat.published[i as usize], i));
    cat.by_time_t = cat
        .by_time
        .iter()
        .map(|&i| cat.published[i as usize])
        .collect();
    cat
}

struct User {
    favourites: Vec<(u32, f64)>,
    taste: Vec<f32>,
    rate: f64,
    country: usize,
    age: f64,
}

fn make_user(cfg: &WorldConfig, cat: &Catalogue, u: usize) -> User {
    let mut r = Rng::stream(cfg.seed, (2 << 40) + u as u64);
    let n_fav = 1 + r.below(4);
    let mut favourites = Vec::with_capacity(n_fav);
    let mut taste = vec![0f32; TASTE_DIM];
    for f in 0..n_fav {
        let c = pick(&cat.cluster_cum_sqrt, &mut r) as u32;
        let w = 1.0 / (f as f64 + 1.0);
        favourites.push((c, w));
        for (d, t) in taste.iter_mut().enumerate() {
            *t += w as f32 * cat.centroids[c as usize * TASTE_DIM + d];
        }
    }
    for t in taste.iter_mut() {
        *t += 0.3 * r.normal() as f32;
    }
    User {
        country: (favourites[0].0 as usize * 7 + r.below(3)) % COUNTRIES,
        age: (18.0 + 12.0 * r.f64() + 8.0 * (favourites[0].0 % 5) as f64).round(),
        rate: cfg.sessions_per_day * (0.9 * r.normal() - 0.4).exp(),
        favourites,
        taste,
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One user's impressions (with their page position), in time order.
fn simulate_user(cfg: &WorldConfig, cat: &Catalogue, u: usize) -> (User, Vec<(Event, i64)>) {
    let user = make_user(cfg, cat, u);
    let mut r = Rng::stream(cfg.seed, (3 << 40) + u as u64);
    let fav_cum = cumulative(user.favourites.iter().map(|f| f.1));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut last_cluster = user.favourites[0].0;
    for day in 0..cfg.days as i64 {
        let mut starts: Vec<i64> = (0..r.poisson(user.rate))
            .map(|_| WORLD_START + day * DAY + r.below(DAY as usize - 3_600) as i64)
            .collect();
        starts.sort_unstable();
        for t0 in starts {
            let x = r.f64();
            let cluster = if x < 0.65 {
                user.favourites[pick(&fav_cum, &mut r)].0
            } else if x < 0.8 {
                last_cluster
            } else {
                pick(&cat.cluster_cum, &mut r) as u32
            };
            last_cluster = cluster;
            let page = 10 + r.below(11);
            let mut t = t0;
            for pos in 0..page {
                let Some(item) = choose_item(cat, cluster, t, &mut r, &seen) else {
                    continue;
                };
                let i = item as usize;
                let aff: f64 = (0..TASTE_DIM)
                    .map(|d| (user.taste[d] * cat.taste[i * TASTE_DIM + d]) as f64)
                    .sum::<f64>()
                    / TASTE_DIM as f64;
                let fresh = ((t - cat.published[i]) as f64 / DAY as f64).max(0.0);
                let logit = 1.6 * aff - 1.0 - 0.06 * pos as f64
                    + 0.25 * (-fresh / 3.0).exp()
                    + 0.1 * r.normal();
                let watched = r.f64() < sigmoid(logit);
                let watch_time = watched.then(|| {
                    let dur = cat.duration[i] as f64;
                    let share =
                        sigmoid(1.2 * aff + 0.5 - 0.4 * (dur / 240.0).ln() + 0.5 * r.normal());
                    ((dur * share * 10.0).round() / 10.0).min(dur) as f32
                });
                if watched {
                    seen.insert(item);
                }
                out.push((
                    Event {
                        user_id: u as i64,
                        item_id: item as i64,
                        timestamp: t,
                        watched,
                        watch_time,
                        rating: None,
                    },
                    pos as i64,
                ));
                t += 8 + watch_time.unwrap_or(0.0) as i64;
            }
        }
    }
    (user, out)
}

/// An item for one slot of a page at time `t`: mostly from the session's cluster by popularity,
/// else globally popular, else fresh (published in the last 7 days). Never one not yet published;
/// a watched item is shown again only rarely.
fn choose_item(
    cat: &Catalogue,
    cluster: u32,
    t: i64,
    r: &mut Rng,
    seen: &std::collections::HashSet<u32>,
) -> Option<u32> {
    for _ in 0..6 {
        let x = r.f64();
        let item = if x < 0.6 {
            let c = cluster as usize;
            if cat.cluster_items[c].is_empty() {
                continue;
            }
            cat.cluster_items[c][pick(&cat.cluster_cum_items[c], r)]
        } else if x < 0.88 {
            pick(&cat.global_cum, r) as u32
        } else {
            let hi = cat.by_time_t.partition_point(|&p| p <= t);
            let lo = cat.by_time_t.partition_point(|&p| p < t - 7 * DAY);
            if hi <= lo {
                continue;
            }
            cat.by_time[lo + r.below(hi - lo)]
        };
        if cat.published[item as usize] <= t && (!seen.contains(&item) || r.f64() < 0.05) {
            return Some(item);
        }
    }
    None
}

/// Generates the world into `out` (`events.parquet`, `items.parquet`, `users.parquet`); all
/// three files appear together or none does. `progress` is told (users done, users).
pub fn generate(
    cfg: &WorldConfig,
    out: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<WorldSummary> {
    if cfg.users == 0 || cfg.items == 0 || cfg.days == 0 {
        return Err(Error::Input(
            "generate: --users, --items and --days must be at least 1".into(),
        ));
    }
    let dir = OutputDir::open(out)?;
    let cat = build_catalogue(cfg);
    let mut items = Items::default();
    for i in 0..cfg.items {
        let c = cat.cluster_of[i] as usize;
        let cats = vec![
            format!("genre{:02}", c % GENRES),
            format!("genre{:02}", (c * 7 + 3) % GENRES),
        ];
        items.push(
            i as i64,
            Some(cat.duration[i]),
            Some(cat.published[i]),
            cats,
            Some(format!("Item {i} (cluster {c})")),
        );
    }
    let items_file = write_items(&dir.join("items.parquet"), &items)?;
    let fresh_items = cat.published.iter().filter(|&&p| p >= WORLD_START).count();
    drop(items);

    let mut users = Users {
        categorical: vec![
            ("country".into(), Vec::new()),
            ("device".into(), Vec::new()),
        ],
        numeric: vec![("age".into(), Vec::new())],
        ..Default::default()
    };
    let mut writer = EventsWriter::create(&dir.join("events.parquet"), &["position"])?;
    let mut watched = 0usize;
    const BLOCK: usize = 4_096;
    let mut start = 0;
    while start < cfg.users {
        let end = (start + BLOCK * rayon::current_num_threads().max(1)).min(cfg.users);
        let block: Vec<(User, Vec<(Event, i64)>)> = (start..end)
            .into_par_iter()
            .map(|u| simulate_user(cfg, &cat, u))
            .collect();
        for (k, (profile, events)) in block.into_iter().enumerate() {
            let u = start + k;
            users.user_id.push(u as i64);
            users.categorical[0]
                .1
                .push(Some(format!("c{:02}", profile.country)));
            users.categorical[1]
                .1
                .push(Some(["phone", "tv", "web"][u % 3].to_string()));
            users.numeric[0].1.push(Some(profile.age));
            for (e, pos) in events {
                watched += e.watched as usize;
                writer.push(&e, &[pos])?;
            }
        }
        start = end;
        progress(start, cfg.users);
    }
    let events = writer.rows;
    if events == 0 {
        return Err(Error::Input(
            "generate: the world has no events; raise --users or --days".into(),
        ));
    }
    let events_file = writer.finish()?;
    let users_file = write_users(&dir.join("users.parquet"), &users)?;
    commit_all(vec![events_file, items_file, users_file])?;
    dir.keep();
    Ok(WorldSummary {
        events,
        watched,
        users: cfg.users,
        items: cfg.items,
        fresh_items,
    })
}
