//! Ranking examples for data with watches only (MovieLens): nothing records what a user was
//! shown and did not watch, so the retrieval model's best candidates that the user did not
//! watch stand in for the unwatched impressions.
//!
//! Every watch is a page of its own. Each user's last `[ranking] pages_per_user` watches before
//! the validation target (never the first, whose history is empty) are training pages; the
//! validation and test targets of EVAL.md section 1 (the second-to-last and last watch) are the
//! early-stopping and test pages. On a page at position p the retrieval model scores the whole
//! catalogue from the user's watches before p, and its `[ranking] candidates_per_page` best
//! items the user had not watched before p are what the page shows, as the serving path would:
//! the watch at p is the page's clicked impression when it is among them, every other candidate
//! a shown-but-not-watched one. A watch that retrieval missed is not an example (the ranker
//! only ever sees retrieved candidates; such a page holds negatives only).
//!
//! The retrieval model that retrieves the candidates is trained without any page's watch (the
//! training pages' watches are left out of its data, its own split holds out the validation
//! and test targets): every page lies in its future, as the watches after a nightly build lie
//! in the served model's. A model that had learnt a page's watch as a target would score it
//! higher than on a new page, and the ranker would learn to trust the score too much.
//!
//! The negatives are only examples: the feature counters (popularity, recent watches) count the
//! real watches alone, exactly as at serving time, where the same watch log is all the ranker's
//! features are computed from. The candidate's retrieval score and rank are two more features
//! (serving and `rerank` know them too). A watch without a watch time weighs 1, so that e^logit
//! estimates the odds of a watch instead of the watch time.

use super::{Labelled, Part, RankingData};
use crate::config::RankingConfig;
use crate::data::Events;
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::ranking_features::{
    build_examples_where, FeatureConfig, Impressions, RankingVocab, SideInfo,
};
use crate::split::{WatchSequences, MIN_WATCHES};
use crate::stages::retrieval::TrainedRetrieval;
use index::{ExactIndex, Exclude, ItemVectors};
use retrieval::UserQuery;

/// Where the examples come from for data with watches only.
pub const SOURCE_RETRIEVED: &str = "watches only: retrieved-but-unwatched candidates as negatives, early stopping on the validation targets, test on the test targets";

/// Pages scored per batch (bounds the memory of the user vectors).
const PAGES_PER_BATCH: usize = 4096;

/// One page: a user's watch at `pos` of their sequence, and the part it belongs to.
#[derive(Debug, Clone, Copy)]
struct Page {
    user: usize,
    pos: usize,
    part: Part,
}

/// The pages of every user with at least [`MIN_WATCHES`] watches: the last `per_user` watches
/// before the validation target (never the first watch, whose history is empty), then the
/// validation and test targets.
fn pages(all: &WatchSequences, per_user: usize) -> Vec<Page> {
    let mut out = Vec::new();
    for u in 0..all.num_users() {
        let n = all.user(u).0.len();
        if n < MIN_WATCHES {
            continue;
        }
        let first_fit = (n - 2).saturating_sub(per_user).max(1);
        out.extend((first_fit..n - 2).map(|pos| Page {
            user: u,
            pos,
            part: Part::Fit,
        }));
        out.push(Page {
            user: u,
            pos: n - 2,
            part: Part::Valid,
        });
        out.push(Page {
            user: u,
            pos: n - 1,
            part: Part::Test,
        });
    }
    out
}

/// `data` without the watches of the training pages: the retrieval model that retrieves the
/// candidates trains on it (its own split holds out the validation and test targets), so no
/// page's watch was ever its target, as for a served model and the watches after it.
pub fn candidate_model_data(data: &Dataset, per_user: usize) -> Dataset {
    let all = WatchSequences::from_events(&data.events);
    let mut drop = vec![false; data.events.len()];
    for page in pages(&all, per_user).iter().filter(|p| p.part == Part::Fit) {
        drop[all.rows_of(page.user)[page.pos] as usize] = true;
    }
    let e = &data.events;
    fn kept<T: Copy>(v: &[T], drop: &[bool]) -> Vec<T> {
        v.iter()
            .zip(drop)
            .filter(|(_, &d)| !d)
            .map(|(&x, _)| x)
            .collect()
    }
    let events = Events {
        user_id: kept(&e.user_id, &drop),
        item_id: kept(&e.item_id, &drop),
        timestamp: kept(&e.timestamp, &drop),
        watched: kept(&e.watched, &drop),
        watch_time: kept(&e.watch_time, &drop),
        rating: kept(&e.rating, &drop),
        extra: e
            .extra
            .iter()
            .map(|(name, v)| (name.clone(), kept(v, &drop)))
            .collect(),
        ids: e.ids.clone(),
    };
    Dataset {
        events,
        ..data.clone()
    }
}

/// The retrieval model's exact top-k over the catalogue.
struct Retriever<'a> {
    trained: &'a TrainedRetrieval,
    exact: ExactIndex,
}

impl<'a> Retriever<'a> {
    fn new(trained: &'a TrainedRetrieval) -> Result<Self> {
        let (vectors, bias) = trained
            .model
            .item_vectors()
            .map_err(crate::stages::retrieval::model_err)?;
        let exact = ItemVectors::new(
            trained.inputs.items.ids.clone(),
            trained.model.dim(),
            vectors,
            bias,
        )
        .and_then(ExactIndex::new)
        .map_err(Error::index("exact index"))?;
        Ok(Retriever { trained, exact })
    }

    /// For each (user id, history of item indices): the best `k` items outside the history,
    /// as (item index, item id, score), best first.
    fn candidates(
        &self,
        queries: &[(i64, Vec<u32>)],
        k: usize,
    ) -> Result<Vec<Vec<(u32, i64, f32)>>> {
        let inputs = &self.trained.inputs;
        let features = inputs.features.as_ref();
        let user_queries: Vec<UserQuery> = queries
            .iter()
            .map(|(user, history)| match inputs.users.get(*user) {
                Some(u) => UserQuery::of_user(history, u, features),
                None => UserQuery::from_history(history),
            })
            .collect();
        let users = self
            .trained
            .model
            .user_vectors(&user_queries)
            .map_err(crate::stages::retrieval::model_err)?;
        let exclude: Vec<Exclude> = queries
            .iter()
            .map(|(_, history)| Exclude::Indices(history))
            .collect();
        let hits = self
            .exact
            .search_batch(&users, k, &exclude)
            .map_err(Error::index("retrieving candidates"))?;
        Ok(hits
            .into_iter()
            .map(|h| {
                h.into_iter()
                    .map(|h| (h.index, h.item_id, h.score))
                    .collect()
            })
            .collect())
    }
}

/// An impression log being assembled: the real watches and the retrieved candidates.
#[derive(Default)]
struct Log {
    events: Events,
    day: Vec<i64>,
    probe: Vec<bool>,
    part: Vec<Option<Part>>,
    score: Vec<f32>,
    rank: Vec<f32>,
}

impl Log {
    fn push(
        &mut self,
        user: i64,
        item: i64,
        t: i64,
        day: i64,
        watch: Option<f32>,
        part: Option<Part>,
    ) {
        self.events.user_id.push(user);
        self.events.item_id.push(item);
        self.events.timestamp.push(t);
        self.events.watched.push(watch.is_some());
        self.events.watch_time.push(watch);
        self.events.rating.push(None);
        self.day.push(day);
        self.probe.push(watch.is_none());
        self.part.push(part);
        self.score.push(f32::NAN);
        self.rank.push(f32::NAN);
    }

    /// Sets the retrieval score and rank (1-based) of event `i`.
    fn retrieved(&mut self, i: usize, score: f32, rank: usize) {
        self.score[i] = score;
        self.rank[i] = rank as f32;
    }
}

/// Builds the ranking examples of `data` (watches only) with candidates retrieved by
/// `trained`, which must have been trained on [`candidate_model_data`] of `data`.
pub fn build_retrieved(
    data: &Dataset,
    cfg: &RankingConfig,
    trained: &TrainedRetrieval,
) -> Result<RankingData> {
    let all = WatchSequences::from_events(&data.events);
    let pages = pages(&all, cfg.pages_per_user);
    if pages.is_empty() {
        return Err(Error::input(
            &data.dir.join("events.parquet"),
            format!("no user has {MIN_WATCHES} watches: the ranker needs pages to learn from"),
        ));
    }
    let ids = &trained.inputs.items;
    let index_of = |id: i64| ids.get(id).unwrap_or(0);

    // The real watches, each its own page (day = position in the user's sequence).
    let mut log = Log::default();
    let mut first = Vec::with_capacity(all.num_users());
    for u in 0..all.num_users() {
        first.push(log.day.len());
        let (items, times) = all.user(u);
        for (p, ((&item, &t), &row)) in items.iter().zip(times).zip(all.rows_of(u)).enumerate() {
            let seconds = data.events.watch_time[row as usize].unwrap_or(1.0).max(0.0);
            log.push(all.users[u], item, t, p as i64, Some(seconds), None);
        }
    }

    // Each page's candidates.
    let pb = crate::progress::bar(pages.len() as u64, "ranking candidates");
    let retriever = Retriever::new(trained)?;
    for chunk in pages.chunks(PAGES_PER_BATCH) {
        let queries: Vec<(i64, Vec<u32>)> = chunk
            .iter()
            .map(|p| {
                let items = all.user(p.user).0;
                let history = items[..p.pos].iter().map(|&i| index_of(i)).collect();
                (all.users[p.user], history)
            })
            .collect();
        let found = retriever.candidates(&queries, cfg.candidates_per_page)?;
        for (page, shown) in chunk.iter().zip(found) {
            let watch = first[page.user] + page.pos;
            let target = index_of(log.events.item_id[watch]);
            let (user, t) = (log.events.user_id[watch], log.events.timestamp[watch]);
            for (rank, (index, item, score)) in shown.into_iter().enumerate() {
                if index == target {
                    // Retrieved and watched: the page's clicked impression is the watch itself.
                    log.part[watch] = Some(page.part);
                    log.retrieved(watch, score, rank + 1);
                } else {
                    log.push(user, item, t, page.pos as i64, None, Some(page.part));
                    log.retrieved(log.day.len() - 1, score, rank + 1);
                }
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();

    let held_out = |i: usize| matches!(log.part[i], Some(Part::Valid | Part::Test));
    let features = FeatureConfig {
        retrieval: true,
        ..cfg.features()
    };
    let vocab = RankingVocab::fit(
        &log.events,
        |i| !log.probe[i] && !held_out(i),
        &data.items,
        &data.users,
        cfg.max_items,
        features,
    );
    let side = SideInfo::new(&vocab, &data.items, &data.users);
    let impressions = Impressions {
        probe: Some(&log.probe),
        ..Impressions::new(&log.events, &log.day)
    };
    let mut examples = build_examples_where(&impressions, &side, &vocab.features, &|i| {
        log.part[i].is_some()
    });
    for (i, example) in examples.iter_mut() {
        example.continuous.extend([log.score[*i], log.rank[*i]]);
    }
    let page_keys: Vec<(i64, i64)> = log
        .events
        .user_id
        .iter()
        .copied()
        .zip(log.day.iter().copied())
        .collect();
    Ok(RankingData::assemble(
        vocab,
        examples,
        Labelled {
            parts: &log.part,
            pages: &page_keys,
            item_id: &log.events.item_id,
            watched: &log.events.watched,
            retrieval_score: Some(&log.score),
        },
        [Vec::new(), Vec::new(), Vec::new()],
        SOURCE_RETRIEVED.into(),
    ))
}
