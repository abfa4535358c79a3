//! Candidate generation: examples from the data, training, and EVAL.md section 1 with exact
//! scores.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::examples::{ExamplesConfig, RetrievalInputs};
use crate::progress::bar;
use crate::split::{LeaveLastOut, WatchSequences};
use retrieval::{RankMetrics, RetrievalConfig, RetrievalModel, TrainReport};
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
    pub model: RetrievalModel,
    /// Training history.
    pub report: TrainReport,
    /// Exact-score metrics on the validation target.
    pub validation: RetrievalMetrics,
    /// Exact-score metrics on the test target (validation watch in the history).
    pub test: RetrievalMetrics,
}

fn model_err(e: retrieval::RetrievalError) -> Error {
    Error::Other(format!("retrieval model: {e}"))
}

/// The live version's model and ids, to warm-start from.
pub struct Previous {
    /// The model.
    pub model: RetrievalModel,
    /// Its ids and vocabularies.
    pub ids: crate::stages::build::IdMaps,
}

/// Builds examples from `data` (leave-last-out: each evaluated user's last two watches held out),
/// trains, and measures EVAL.md §1 with exact scores on validation and test targets.
pub fn train_retrieval(
    data: &Dataset,
    cfg: &RetrievalConfig,
    examples: &ExamplesConfig,
    previous: Option<&Previous>,
) -> Result<TrainedRetrieval> {
    let all = WatchSequences::from_events(&data.events);
    if all.items.is_empty() {
        return Err(Error::input(
            &data.dir.join("events.parquet"),
            "no watched events: retrieval needs watches",
        ));
    }
    let split = LeaveLastOut::from_sequences(&all);
    let inputs = RetrievalInputs::build(&all, &split, &data.items, &data.users, examples)?;
    tracing::info!(
        examples = inputs.examples.len(),
        items = inputs.catalog.num_items,
        users = inputs.users.len(),
        "retrieval inputs"
    );
    let warm = previous.map(|p| retrieval::WarmStart {
        model: &p.model,
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
            .map(|t| {
                p.ids
                    .tokens
                    .tokens
                    .iter()
                    .position(|o| o == t)
                    .map(|i| i as u32)
            })
            .collect(),
    });
    if let Some(w) = &warm {
        tracing::info!(
            known_items = w.items.iter().filter(|m| m.is_some()).count(),
            items = w.items.len(),
            "warm start"
        );
    }
    let pb = bar(cfg.epochs as u64, "retrieval");
    let (model, report) = RetrievalModel::train_warm(
        cfg,
        &inputs.catalog,
        &inputs.histories,
        &inputs.examples,
        inputs.features.as_ref(),
        &inputs.validation,
        warm.as_ref(),
        |e| {
            pb.set_position(e.epoch as u64);
            pb.set_message(format!(
                "loss {:.4} val HR@10 {:.4} ({:.0} ex/s)",
                e.loss,
                e.validation_hr10.unwrap_or(f64::NAN),
                e.examples_per_second
            ));
        },
    )
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
