//! Re-ranking with a saved ranker: features of (user, candidate) pairs as of the end of the
//! data (each user's state after all their events, time = the latest event), scored in
//! batches; `recpipe rerank` streams `candidates.parquet` to `ranked.parquet` user by user.

use super::{event_days, load_vocab};
use crate::data::{Candidate, CandidatesReader, CandidatesWriter};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::progress::bar;
use crate::ranking_features::{FeatureState, Impressions, RankingVocab, SideInfo};
use ranking::{DynRanker, RankingExample};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

/// Candidates scored together: complete users are gathered until this many rows.
const CHUNK_ROWS: usize = 64 * 1024;

/// A saved ranker with its vocabularies and the feature state at the end of a data folder.
pub struct LoadedRanker {
    ranker: Box<DynRanker>,
    vocab: RankingVocab,
    side: SideInfo,
    state: FeatureState,
}

impl LoadedRanker {
    /// Loads the ranker saved in `dir` and replays `data`'s events into the feature state.
    pub fn load(dir: &Path, data: &Dataset) -> Result<Self> {
        let vocab = load_vocab(dir)?;
        let ranker = ranking::load(dir).map_err(|e| {
            Error::input(
                &dir.join(ranking::WEIGHTS_FILE),
                format!("cannot load the ranker: {e}"),
            )
        })?;
        if ranker.schema() != &vocab.schema() {
            return Err(Error::input(
                &dir.join(super::VOCAB_FILE),
                "the vocabularies do not match ranker.json's schema",
            ));
        }
        let side = SideInfo::new(&vocab, &data.items, &data.users);
        let days = event_days(&data.events);
        let state = FeatureState::after(&Impressions::new(&data.events, &days), &vocab.features);
        Ok(LoadedRanker {
            ranker,
            vocab,
            side,
            state,
        })
    }

    /// The ranker.
    pub fn ranker(&self) -> &DynRanker {
        self.ranker.as_ref()
    }

    /// The vocabularies.
    pub fn vocab(&self) -> &RankingVocab {
        &self.vocab
    }

    /// Whether `user_id` has events in the data (others get cold user features).
    pub fn knows_user(&self, user_id: i64) -> bool {
        self.state.knows_user(user_id)
    }

    /// Whether `item_id` is in the ranker's item vocabulary (others get the zero embedding).
    pub fn knows_item(&self, item_id: i64) -> bool {
        self.side.knows_item(item_id)
    }

    /// The examples of `items` for `user` (`None`: a user without any state) on a page starting
    /// at the end of the data. `retrieved` holds each item's retrieval score and rank (1-based),
    /// which a ranker trained on retrieved candidates also reads; empty when unknown.
    pub fn examples(
        &self,
        user: Option<i64>,
        items: &[i64],
        retrieved: &[(f32, u32)],
    ) -> Vec<RankingExample> {
        let t = self.state.end();
        // i64::MIN is never a real user of the state: an anonymous user gets cold features.
        let user = user.unwrap_or(i64::MIN);
        items
            .iter()
            .enumerate()
            .map(|(i, &item)| {
                let mut example = self.state.example(&self.side, user, item, t);
                if self.vocab.features.retrieval {
                    let (score, rank) = retrieved
                        .get(i)
                        .map_or((f32::NAN, f32::NAN), |&(s, r)| (s, r as f32));
                    example.continuous.extend([score, rank]);
                }
                example
            })
            .collect()
    }

    /// Expected watch time (e^logit) of each example, batched.
    pub fn score_examples(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        let scores = self.ranker.score(examples).map_err(super::ranker_err)?;
        Ok(scores.into_iter().map(|s| s.min(f32::MAX)).collect())
    }

    /// Expected watch time of each of `items` for `user` (`retrieved` as in
    /// [`LoadedRanker::examples`]).
    pub fn score(
        &self,
        user: Option<i64>,
        items: &[i64],
        retrieved: &[(f32, u32)],
    ) -> Result<Vec<f32>> {
        self.score_examples(&self.examples(user, items, retrieved))
    }
}

/// What a re-ranking run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RerankSummary {
    /// Rows read and written.
    pub rows: usize,
    /// Users.
    pub users: usize,
    /// Users without any event in the data (scored with cold user features).
    pub unknown_users: usize,
    /// Rows of those users.
    pub unknown_user_rows: usize,
    /// Rows whose item is outside the ranker's item vocabulary (zero item embedding).
    pub unknown_item_rows: usize,
    /// Wall time.
    pub seconds: f64,
}

impl std::fmt::Display for RerankSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ranked {} candidates of {} users in {:.1} s ({:.0} candidates/s); cold: {} users without events ({} rows), {} rows with an item outside the ranker's vocabulary",
            self.rows,
            self.users,
            self.seconds,
            self.rows as f64 / self.seconds.max(1e-9),
            self.unknown_users,
            self.unknown_user_rows,
            self.unknown_item_rows
        )
    }
}

/// Scores the complete users of `groups` and writes them, each sorted by expected watch time
/// (ties: retrieval rank, then item id), ranks from 1.
fn flush(
    ranker: &LoadedRanker,
    groups: &mut Vec<Vec<Candidate>>,
    writer: &mut CandidatesWriter,
    summary: &mut RerankSummary,
) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let per_user: Vec<Vec<RankingExample>> = groups
        .par_iter()
        .map(|g| {
            let items: Vec<i64> = g.iter().map(|c| c.item_id).collect();
            let retrieved: Vec<(f32, u32)> = g
                .iter()
                .map(|c| (c.retrieval_score, c.retrieval_rank))
                .collect();
            ranker.examples(g.first().map(|c| c.user_id), &items, &retrieved)
        })
        .collect();
    let examples: Vec<RankingExample> = per_user.into_iter().flatten().collect();
    let scores = ranker.score_examples(&examples)?;
    let mut rows = Vec::with_capacity(examples.len());
    let mut ranking = Vec::with_capacity(examples.len());
    let mut offset = 0;
    for group in groups.drain(..) {
        let scores = &scores[offset..offset + group.len()];
        offset += group.len();
        let mut order: Vec<usize> = (0..group.len()).collect();
        order.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then(group[a].retrieval_rank.cmp(&group[b].retrieval_rank))
                .then(group[a].item_id.cmp(&group[b].item_id))
        });
        if let Some(first) = group.first() {
            summary.users += 1;
            if !ranker.knows_user(first.user_id) {
                summary.unknown_users += 1;
                summary.unknown_user_rows += group.len();
            }
        }
        summary.unknown_item_rows += group
            .iter()
            .filter(|c| !ranker.knows_item(c.item_id))
            .count();
        for (rank, &i) in order.iter().enumerate() {
            rows.push(group[i]);
            ranking.push((scores[i], rank as u32 + 1));
        }
    }
    summary.rows += rows.len();
    writer.write(&rows, &ranking)
}

/// Re-ranks `input` (`candidates.parquet`) into `out` (`ranked.parquet`): each user's
/// candidates ordered by expected watch time, users in the input's order. A user's rows must
/// be contiguous (as `recpipe candidates` writes them); otherwise the run fails and writes
/// nothing. Memory holds one chunk of users at a time.
pub fn rerank_file(ranker: &LoadedRanker, input: &Path, out: &Path) -> Result<RerankSummary> {
    let t = Instant::now();
    let mut reader = CandidatesReader::open(input)?;
    let mut writer = CandidatesWriter::create(out, true)?;
    let pb = bar(reader.num_rows() as u64, "rerank");
    let mut summary = RerankSummary::default();
    let mut finished: HashSet<i64> = HashSet::new();
    let mut groups: Vec<Vec<Candidate>> = Vec::new();
    let mut current: Vec<Candidate> = Vec::new();
    let (mut gathered, mut row) = (0usize, 0usize);
    while let Some(batch) = reader.next_batch()? {
        pb.inc(batch.len() as u64);
        for c in batch {
            row += 1;
            if current.last().is_some_and(|p| p.user_id != c.user_id) {
                let group = std::mem::take(&mut current);
                finished.insert(group[0].user_id);
                gathered += group.len();
                groups.push(group);
            }
            if current.is_empty() && finished.contains(&c.user_id) {
                return Err(Error::input(
                    input,
                    format!(
                        "row {row}: the candidates of user {} are not contiguous (sort the file by user_id, as `recpipe candidates` writes it)",
                        c.user_id
                    ),
                ));
            }
            current.push(c);
        }
        if gathered >= CHUNK_ROWS {
            flush(ranker, &mut groups, &mut writer, &mut summary)?;
            gathered = 0;
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    flush(ranker, &mut groups, &mut writer, &mut summary)?;
    pb.finish_and_clear();
    writer.finish()?.commit()?;
    summary.seconds = t.elapsed().as_secs_f64();
    Ok(summary)
}
