//! The figures of the ranking stage (EVAL.md section 3): one trained model's test metrics,
//! and the table that sets them beside the unit-weight ablation and the reference orders.

use super::{PartSummary, SplitSummary, SOURCE_IMPRESSIONS};
use crate::eval::ranking::RankingMetrics;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One trained model's test figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFigures {
    /// Registry name of the ranker (figures written before rankers were configurable: youtube).
    #[serde(default = "youtube_kind")]
    pub model: String,
    /// Trained without watch-time weights (the ablation).
    pub unit_weights: bool,
    /// The training data had watch times (without, every watch weighs 1 either way; manifests
    /// older than the field were all trained on impressions with watch times).
    #[serde(default = "yes")]
    pub watch_times: bool,
    /// EVAL.md section 3 on the test days.
    pub metrics: RankingMetrics,
    /// The epoch kept.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Weighted log loss on the validation days of the kept epoch.
    pub best_valid_loss: Option<f64>,
    /// Training wall time.
    pub train_seconds: f64,
    /// Each task's test AUC (the multi-task ranker; empty for a ranker with one task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskFigures>,
}

/// One task of a multi-task ranker on the test days.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFigures {
    /// `watch` or the label column.
    pub task: String,
    /// AUC of the task's logit for its label over every test impression (`None` when the
    /// label is constant there).
    pub auc: Option<f64>,
    /// Share of test impressions whose label is 1.
    pub positive_rate: f64,
}

fn task_line(s: &mut String, f: &ModelFigures) {
    if f.tasks.is_empty() {
        return;
    }
    let cells: Vec<String> = f
        .tasks
        .iter()
        .map(|t| format!("{} {} (rate {:.4})", t.task, cell(t.auc), t.positive_rate))
        .collect();
    let _ = writeln!(s, "  per-task test AUC: {}", cells.join(", "));
}

fn yes() -> bool {
    true
}

/// EVAL.md section 3 for a ranker and its reference orders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankingFigures {
    /// The day split.
    pub split: SplitSummary,
    /// The model (watch-time weighted unless trained with `--unit-weights`).
    pub model: ModelFigures,
    /// The same model trained with unit weights, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_weights: Option<ModelFigures>,
    /// Items ordered by their watch rate on the training days.
    pub ctr_order: RankingMetrics,
    /// The retrieval-score order, when the candidates were retrieved (logged impressions carry
    /// no retrieval scores).
    pub retrieval_order: Option<RankingMetrics>,
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.4}"))
}

fn row(s: &mut String, name: &str, m: &RankingMetrics) {
    let _ = writeln!(
        s,
        "{name:<42} {:>8} {:>7} {:>7} {:>7}",
        cell(m.weighted_user_loss),
        cell(m.gauc),
        cell(m.xauc),
        cell(m.watch_time_at_10)
    );
}

fn days_label(p: &PartSummary) -> String {
    match p.days.as_slice() {
        [a, b] if a == b => format!("{a}"),
        [a, b] => format!("{a}..{b}"),
        _ => "-".into(),
    }
}

/// A part's example count, with what it was sampled from ([`PartSummary::sampled_from`]).
fn count_label(p: &PartSummary) -> String {
    match p.sampled_from {
        Some(all) => format!("{} sampled of {all}", p.impressions),
        None => p.impressions.to_string(),
    }
}

impl RankingFigures {
    /// The table printed by the commands.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let sp = &self.split;
        let m = &self.model.metrics;
        let _ = writeln!(
            s,
            "ranking (EVAL.md section 3 metrics; {}): fit {} ({} impressions), early stopping {} ({}), test {} ({} impressions, {} pages, {} pairs); {} items in the vocabulary",
            if sp.source.is_empty() { SOURCE_IMPRESSIONS } else { &sp.source }, days_label(&sp.fit), count_label(&sp.fit), days_label(&sp.valid), count_label(&sp.valid),
            days_label(&sp.test), count_label(&sp.test), m.pages, m.pairs, sp.items
        );
        let _ = writeln!(
            s,
            "{:<42} {:>8} {:>7} {:>7} {:>7}",
            "order", "w. loss", "GAUC", "XAUC", "WT@10"
        );
        let name = |f: &ModelFigures| {
            let what = if !f.watch_times {
                "no watch times, weights 1"
            } else if f.unit_weights {
                "unit weights"
            } else {
                "watch-time weighted"
            };
            format!(
                "{} ranker, {what} (epoch {}/{})",
                f.model, f.best_epoch, f.epochs
            )
        };
        row(&mut s, &name(&self.model), m);
        task_line(&mut s, &self.model);
        if let Some(u) = &self.unit_weights {
            row(&mut s, &name(u), &u.metrics);
            task_line(&mut s, u);
        }
        row(&mut s, "video-CTR order (training days)", &self.ctr_order);
        match &self.retrieval_order {
            Some(r) => row(&mut s, "retrieval-score order", r),
            None => {
                let _ = writeln!(
                    s,
                    "retrieval-score order: - (impressions carry no retrieval scores)"
                );
            }
        }
        s
    }
}

fn youtube_kind() -> String {
    ranking::KIND.to_string()
}
