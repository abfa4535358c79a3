//! A saved ranker loaded for scoring: the model, its vocabularies and the feature state at the
//! end of a data folder (each user's state after all their events, time = the latest event).
//! Serving (`query --rerank`, `?rerank=true`) and `recpipe rerank` both score through it.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::ranking_features::{FeatureState, Impressions, RankingVocab, SideInfo};
use crate::stages::ranking::{event_days, load_vocab, ranker_err, VOCAB_FILE};
use ranking::{DynRanker, RankingExample};
use std::path::Path;

/// A saved ranker with its vocabularies and the feature state at the end of a data folder.
pub struct LoadedRanker {
    ranker: Box<DynRanker>,
    vocab: RankingVocab,
    side: SideInfo,
    state: FeatureState,
}

impl LoadedRanker {
    /// Scores with `compute` from now on (see [`ranking::RankingModel::score_with`]).
    pub fn score_with(&mut self, compute: &nn::Compute) -> Result<()> {
        self.ranker
            .score_with(compute)
            .map_err(|e| Error::model("ranking", false, e))
    }

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
                &dir.join(VOCAB_FILE),
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
        let scores = self.ranker.score(examples).map_err(ranker_err)?;
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
