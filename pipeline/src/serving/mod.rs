//! A published version loaded for answering "candidates for this user": the retrieval model,
//! the index, the id maps, and the users' current watch histories (including events newer than
//! the model), and the version's ranker ([`LoadedRanker`]).

mod ranker;

pub use ranker::LoadedRanker;

use crate::artifacts::{files, IdMaps, Version};
use crate::data::{Events, Items};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::ids::{ExternalId, IdKeys, IdSpelling, IdSpellings};
use crate::stages::add_items::added_items;
use crate::stages::ranking::has_ranker;
use index::{Exclude, Index, LoadOptions};
use retrieval::{DynRetriever, UserQuery};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a recommendation list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The user's vector through the index.
    Personal,
    /// An unknown user with no history: the most watched items of the last week, freshest first
    /// among equals.
    PopularFresh,
}

/// One recommended item.
#[derive(Debug, Clone, Serialize)]
pub struct Recommended {
    /// The item as the data spells it (a number, or the user's string id).
    pub item_id: ExternalId,
    /// The item's internal id (the surrogate of a string id).
    #[serde(skip)]
    pub item: i64,
    /// Its title, when the catalogue has one.
    pub title: Option<String>,
    /// u.v + b (NaN-free; 0 for popularity lists).
    pub retrieval_score: f32,
    /// 1-based position in the retrieved list.
    pub retrieval_rank: u32,
    /// The ranker's expected watch time in seconds, when the list was re-ranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_watch_time: Option<f32>,
}

/// A recommendation answer.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// The version that answered.
    pub version: String,
    /// How the list was made.
    pub source: Source,
    /// The items, best first.
    pub items: Vec<Recommended>,
}

/// Candidates retrieved for re-ranking when fewer are asked for.
pub const RERANK_CANDIDATES: usize = 100;

/// A loaded version, ready to answer queries.
pub struct LiveModel {
    /// The version's name.
    pub version: String,
    /// The data folder histories were read from.
    pub data_dir: PathBuf,
    model: Box<DynRetriever>,
    ids: IdMaps,
    index: Index,
    histories: HashMap<i64, Vec<u32>>,
    titles: Vec<Option<String>>,
    popular: Vec<u32>,
    ranker: Option<LoadedRanker>,
    spellings: IdSpellings,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("{what}: {e}"))
}

impl LiveModel {
    /// Loads the live version of `root` (checksums verified), and histories from `data` or, when
    /// `None`, from the data folder the version was built from.
    pub fn load(root: &Path, data: Option<&Path>) -> Result<Self> {
        let v = Version::open_current(root, true)?;
        Self::from_version(&v, data)
    }

    /// Loads `v`.
    pub fn from_version(v: &Version, data: Option<&Path>) -> Result<Self> {
        let model = retrieval::load(&v.dir).map_err(|e| {
            Error::input(
                &v.file(retrieval::WEIGHTS_FILE),
                format!("cannot load: {e}"),
            )
        })?;
        let mut ids = IdMaps::load(&v.file(files::IDS))?;
        let index = Index::load(v.file(files::INDEX_DIR), &LoadOptions::default())
            .map_err(|e| Error::Input(format!("{}: {e}", v.file(files::INDEX_DIR).display())))?;
        let data_dir = match data {
            Some(d) => d.to_path_buf(),
            None => v.manifest.inputs["data"]
                .as_str()
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Input("the manifest names no data folder; pass --data".into())
                })?,
        };
        let mut dataset = Dataset::load(&data_dir)?;
        // Items added since the nightly build: their titles and features until the data has them.
        crate::stages::add_items::append(&mut dataset.items, &added_items(v)?);
        ids.user_features.attach(dataset.users.clone());
        let histories = histories(&dataset.events, &ids);
        let titles = titles(&dataset.items, &ids);
        let popular = popular_fresh(&dataset.events, &dataset.items, &ids);
        let ranker = if has_ranker(&v.dir) {
            Some(LoadedRanker::load(&v.dir, &dataset)?)
        } else {
            None
        };
        let mut spellings = dataset.ids.clone();
        if !ids.item_keys.is_empty() {
            // The version's items keep their strings even when the data no longer has them.
            let mut keys = IdKeys::default();
            for k in &ids.item_keys {
                keys.insert(k)
                    .map_err(|e| Error::input(&v.file(files::IDS), e))?;
            }
            spellings.items = spellings
                .items
                .combine(
                    IdSpelling::Strings(keys),
                    &data_dir.display().to_string(),
                    &v.dir.display().to_string(),
                )
                .map_err(|e| Error::Input(format!("item ids: {e}")))?;
        } else if spellings.items.is_strings() {
            return Err(Error::Input(format!(
                "{} has string item ids but version {} was built from integer ids; rebuild it \
                 with build-index",
                data_dir.display(),
                v.manifest.version
            )));
        }
        Ok(LiveModel {
            version: v.manifest.version.clone(),
            data_dir,
            model,
            ids,
            index,
            histories,
            titles,
            popular,
            ranker,
            spellings,
        })
    }

    /// How the data spells user and item ids.
    pub fn spellings(&self) -> &IdSpellings {
        &self.spellings
    }

    /// The internal id of a user id as the user typed it (a number, or a string id).
    pub fn user_id(&self, text: &str) -> Result<i64> {
        self.spellings
            .users
            .parse(text, "user id")
            .map_err(Error::Input)
    }

    /// The internal ids of item ids as the user typed them.
    pub fn item_ids(&self, texts: &[String]) -> Result<Vec<i64>> {
        texts
            .iter()
            .map(|t| {
                self.spellings
                    .items
                    .parse(t, "item id")
                    .map_err(Error::Input)
            })
            .collect()
    }

    /// A user's internal id as the data spells it.
    pub fn external_user(&self, user: i64) -> ExternalId {
        self.spellings.users.external(user)
    }

    /// Whether the version has a ranker.
    pub fn has_ranker(&self) -> bool {
        self.ranker.is_some()
    }

    /// Number of items in the index.
    pub fn num_items(&self) -> usize {
        self.index.len()
    }

    /// Users with a history.
    pub fn users(&self) -> Vec<i64> {
        let mut u: Vec<i64> = self.histories.keys().copied().collect();
        u.sort_unstable();
        u
    }

    /// The user's watched item indices (model order), oldest first.
    pub fn history_of(&self, user: i64) -> &[u32] {
        self.histories.get(&user).map_or(&[], |h| h.as_slice())
    }

    /// Maps item ids to model indices (unknown items are skipped).
    pub fn item_indices(&self, ids: &[i64]) -> Vec<u32> {
        ids.iter().filter_map(|&i| self.ids.items.get(i)).collect()
    }

    /// Top `k` for a known user (their stored history plus `extra` watches), or for an ad-hoc
    /// history when `user` is `None`. Seen items are never returned.
    pub fn recommend(
        &self,
        user: Option<i64>,
        extra: &[i64],
        k: usize,
        ef: Option<usize>,
    ) -> Result<Recommendation> {
        let mut history: Vec<u32> = user
            .map(|u| self.history_of(u).to_vec())
            .unwrap_or_default();
        history.extend(self.item_indices(extra));
        // Models that do not use user features ignore them.
        let uses_features = !self.ids.user_features.is_empty();
        let (cat, num) = match user {
            Some(u) if uses_features => self.ids.user_features.encode(u),
            _ => (Vec::new(), Vec::new()),
        };
        let known_features = user.is_some_and(|u| self.ids.user_features.knows(u));
        if history.is_empty() && !known_features {
            return Ok(self.popular_list(k));
        }
        let q = UserQuery {
            history: &history,
            categorical: if cat.is_empty() { &[] } else { &cat },
            numeric: if num.is_empty() { &[] } else { &num },
            // A training user's own row (models with per-user embeddings), unless the request
            // adds watches the row has not seen: then the history speaks for the user.
            user: user
                .filter(|_| extra.is_empty())
                .and_then(|u| self.ids.users.get(u)),
        };
        let uv = self
            .model
            .user_vectors(&[q])
            .map_err(|e| err("user vector", e))?;
        let hits = self
            .index
            .search(&uv, k, ef.unwrap_or(0), Exclude::Indices(&history))
            .map_err(|e| err("index search", e))?;
        Ok(Recommendation {
            version: self.version.clone(),
            source: Source::Personal,
            items: hits
                .iter()
                .enumerate()
                .map(|(r, h)| Recommended {
                    item_id: self.spellings.items.external(h.item_id),
                    item: h.item_id,
                    title: self.titles.get(h.index as usize).cloned().flatten(),
                    retrieval_score: h.score,
                    retrieval_rank: r as u32 + 1,
                    expected_watch_time: None,
                })
                .collect(),
        })
    }

    /// [`LiveModel::recommend`], then, with `rerank`, the ranker's order by expected watch time:
    /// max(k, 100) candidates are retrieved, scored as of the end of the data (the ad-hoc
    /// `extra` watches are not part of the ranker's features) and the best `k` returned, each
    /// with its `expected_watch_time`.
    pub fn recommend_ranked(
        &self,
        user: Option<i64>,
        extra: &[i64],
        k: usize,
        ef: Option<usize>,
        rerank: bool,
    ) -> Result<Recommendation> {
        if !rerank {
            return self.recommend(user, extra, k, ef);
        }
        let Some(ranker) = &self.ranker else {
            return Err(Error::Input("rerank: this version has no ranker".into()));
        };
        let mut rec = self.recommend(user, extra, k.max(RERANK_CANDIDATES), ef)?;
        let ids: Vec<i64> = rec.items.iter().map(|it| it.item).collect();
        let retrieved: Vec<(f32, u32)> = match rec.source {
            Source::PopularFresh => Vec::new(),
            _ => rec
                .items
                .iter()
                .map(|it| (it.retrieval_score, it.retrieval_rank))
                .collect(),
        };
        let scores = ranker.score(user, &ids, &retrieved)?;
        for (it, s) in rec.items.iter_mut().zip(scores) {
            it.expected_watch_time = Some(s);
        }
        rec.items.sort_by(|a, b| {
            let key = |r: &Recommended| r.expected_watch_time.unwrap_or(0.0);
            key(b)
                .total_cmp(&key(a))
                .then(a.retrieval_rank.cmp(&b.retrieval_rank))
        });
        rec.items.truncate(k);
        Ok(rec)
    }

    fn popular_list(&self, k: usize) -> Recommendation {
        Recommendation {
            version: self.version.clone(),
            source: Source::PopularFresh,
            items: self
                .popular
                .iter()
                .take(k)
                .enumerate()
                .map(|(r, &i)| Recommended {
                    item_id: self
                        .spellings
                        .items
                        .external(self.ids.items.ids[i as usize]),
                    item: self.ids.items.ids[i as usize],
                    title: self.titles.get(i as usize).cloned().flatten(),
                    retrieval_score: 0.0,
                    retrieval_rank: r as u32 + 1,
                    expected_watch_time: None,
                })
                .collect(),
        }
    }
}

fn histories(events: &Events, ids: &IdMaps) -> HashMap<i64, Vec<u32>> {
    let mut order: Vec<usize> = (0..events.len()).filter(|&i| events.watched[i]).collect();
    order.sort_unstable_by_key(|&i| {
        let (u, item) = (events.user_id[i], events.item_id[i]);
        (
            u,
            events.timestamp[i],
            crate::split::tie_order(u, item),
            item,
        )
    });
    let mut out: HashMap<i64, Vec<u32>> = HashMap::new();
    for i in order {
        if let Some(ix) = ids.items.get(events.item_id[i]) {
            out.entry(events.user_id[i]).or_default().push(ix);
        }
    }
    out
}

fn titles(items: &Items, ids: &IdMaps) -> Vec<Option<String>> {
    let mut t = vec![None; ids.items.len()];
    for (row, &id) in items.item_id.iter().enumerate() {
        if let Some(ix) = ids.items.get(id) {
            t[ix as usize] = items.title[row].clone();
        }
    }
    t
}

/// Items by watches in the last 7 days of the data, then by publication time (newest first).
fn popular_fresh(events: &Events, items: &Items, ids: &IdMaps) -> Vec<u32> {
    let end = events.timestamp.iter().copied().max().unwrap_or(0);
    let mut count = vec![0u64; ids.items.len()];
    for i in 0..events.len() {
        if events.watched[i] && events.timestamp[i] >= end - 7 * 86_400 {
            if let Some(ix) = ids.items.get(events.item_id[i]) {
                count[ix as usize] += 1;
            }
        }
    }
    let mut published = vec![i64::MIN; ids.items.len()];
    for (row, &id) in items.item_id.iter().enumerate() {
        if let (Some(ix), Some(p)) = (ids.items.get(id), items.published[row]) {
            published[ix as usize] = p;
        }
    }
    let mut order: Vec<u32> = (0..ids.items.len() as u32)
        .filter(|&i| count[i as usize] > 0)
        .collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(count[i as usize]),
            std::cmp::Reverse(published[i as usize]),
            i,
        )
    });
    order
}
