//! Candidate generation: examples from the data, training, and EVAL.md section 1 with exact
//! scores.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::examples::{ExamplesConfig, RetrievalInputs};
use crate::progress::bar;
use crate::split::{LeaveLastOut, WatchSequences};
use retrieval::{DynRetriever, RankMetrics, RetrievalSettings, TrainReport, TrainingSet};
use serde::Serialize;

/// The cut-offs K of EVAL.md section 1.
pub const CUTOFFS: [usize; 3] = [10, 50, 100];

/// HR@K and NDCG@K for K = 10, 50, 100 over a set of users.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RetrievalMetrics {
    /// Users evaluated.
    pub users: usize,
    /// HR@10, HR@50, HR@100.
    pub hr: [f64; 3],
    /// NDCG@10, NDCG@50, NDCG@100.
    pub ndcg: [f64; 3],
}

impl RetrievalMetrics {
    /// From the retrieval crate's accumulators (built with [`CUTOFFS`]).
    pub fn from_rank_metrics(m: &RankMetrics) -> Self {
        RetrievalMetrics {
            users: m.users,
            hr: [0, 1, 2].map(|i| m.hit_rate(i)),
            ndcg: [0, 1, 2].map(|i| m.ndcg_at(i)),
        }
    }

    /// From target ranks (EVAL.md §1: rank = items scoring strictly higher; `usize::MAX` when
    /// the target was not retrieved at all).
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let mut m = RankMetrics::new(&CUTOFFS);
        ranks.iter().for_each(|&r| m.add(r));
        Self::from_rank_metrics(&m)
    }

    /// A table row: label then the six figures.
    pub fn row(&self, label: &str) -> String {
        format!(
            "{label:<28} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>8.4}",
            self.users,
            self.hr[0],
            self.hr[1],
            self.hr[2],
            self.ndcg[0],
            self.ndcg[1],
            self.ndcg[2]
        )
    }

    /// The table header matching [`RetrievalMetrics::row`].
    pub fn header() -> String {
        format!(
            "{:<28} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8}",
            "", "users", "HR@10", "HR@50", "HR@100", "NDCG@10", "NDCG@50", "NDCG@100"
        )
    }
}

/// A trained retrieval model with everything needed to evaluate and serve it.
pub struct TrainedRetrieval {
    /// Ids, vocabularies, examples and evaluation cases.
    pub inputs: RetrievalInputs,
    /// The model.
    pub model: Box<DynRetriever>,
    /// Training history.
    pub report: TrainReport,
    /// Exact-score metrics on the validation target.
    pub validation: RetrievalMetrics,
    /// Exact-score metrics on the test target (validation watch in the history).
    pub test: RetrievalMetrics,
}

/// A retrieval crate error: a bad model name or setting is the user's input (exit code 2).
pub fn model_err(e: retrieval::RetrievalError) -> Error {
    use retrieval::RetrievalError as E;
    let setting = matches!(e, E::UnknownModel { .. } | E::InvalidConfig(_));
    Error::model("retrieval", setting, e)
}

/// The live version's model and ids, to warm-start from.
pub struct Previous {
    /// The model.
    pub model: Box<DynRetriever>,
    /// Its ids and vocabularies.
    pub ids: crate::artifacts::IdMaps,
}

/// Builds examples from `data` (leave-last-out: each evaluated user's last two watches held out),
/// trains, and measures EVAL.md §1 with exact scores on validation and test targets.
pub fn train_retrieval(
    data: &Dataset,
    cfg: &RetrievalSettings,
    examples: &ExamplesConfig,
    previous: Option<&Previous>,
) -> Result<TrainedRetrieval> {
    train_on(retrieval_inputs(data, examples)?, cfg, previous)
}

/// [`train_retrieval`] on inputs already built (several models can share one set; the
/// inputs come back in the result).
pub fn train_on(
    inputs: RetrievalInputs,
    cfg: &RetrievalSettings,
    previous: Option<&Previous>,
) -> Result<TrainedRetrieval> {
    tracing::info!(
        examples = inputs.examples.len(),
        items = inputs.catalog.num_items,
        users = inputs.users.len(),
        "retrieval inputs"
    );
    cfg.validate().map_err(model_err)?;
    // A warm start needs the same kind of model: another kind's weights mean something else.
    let warm = match previous.filter(|p| p.model.kind() == cfg.model) {
        Some(p) => Some(warm_start(p, &inputs)?),
        None => None,
    };
    if let Some(w) = &warm {
        tracing::info!(
            known_items = w.items_kept(),
            items = w.items.len(),
            "warm start"
        );
    }
    let pb = bar(cfg.epochs() as u64, "retrieval");
    let data = TrainingSet {
        catalog: &inputs.catalog,
        histories: &inputs.histories,
        examples: &inputs.examples,
        user_features: inputs.features.as_ref(),
        validation: &inputs.validation,
    };
    let (model, report) = cfg
        .train(&data, warm.as_ref(), |e| {
            pb.set_position(e.epoch as u64);
            pb.set_message(format!(
                "loss {:.4} val HR@10 {:.4} ({:.0} ex/s)",
                e.loss,
                e.validation.unwrap_or(f64::NAN),
                e.examples_per_second
            ));
        })
        .map_err(model_err)?;
    pb.finish_and_clear();
    let eval = |cases| {
        model
            .evaluate(cases, inputs.features.as_ref(), &CUTOFFS)
            .map(|m| RetrievalMetrics::from_rank_metrics(&m))
            .map_err(model_err)
    };
    let validation = eval(&inputs.validation)?;
    let test = eval(&inputs.test)?;
    Ok(TrainedRetrieval {
        inputs,
        model,
        report,
        validation,
        test,
    })
}

/// Examples, vocabularies and the evaluation cases of EVAL.md section 1 for `data`.
pub fn retrieval_inputs(data: &Dataset, examples: &ExamplesConfig) -> Result<RetrievalInputs> {
    let all = WatchSequences::from_events(&data.events);
    if all.items.is_empty() {
        return Err(Error::input(
            &data.dir.join("events.parquet"),
            "no watched events: retrieval needs watches",
        ));
    }
    let split = LeaveLastOut::from_sequences(&all);
    RetrievalInputs::build(&all, &split, &data.items, &data.users, examples)
}

/// How the new vocabularies map onto the previous model's rows.
fn warm_start(p: &Previous, inputs: &RetrievalInputs) -> Result<retrieval::WarmStart> {
    let old_tokens: std::collections::HashMap<&String, u32> = p
        .ids
        .tokens
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    Ok(retrieval::WarmStart {
        weights: p.model.weights().map_err(model_err)?,
        items: inputs
            .items
            .ids
            .iter()
            .map(|&id| p.ids.items.get(id))
            .collect(),
        tokens: inputs
            .tokens
            .tokens
            .iter()
            .map(|t| old_tokens.get(t).copied())
            .collect(),
        users: inputs
            .users
            .ids
            .iter()
            .map(|&id| p.ids.users.get(id))
            .collect(),
    })
}
