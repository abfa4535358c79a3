//! The ranking stage (EVAL.md section 3): impressions split by day, causal features
//! ([`crate::ranking_features`]), the watch-time-weighted ranker trained with early stopping on
//! the day(s) before the test days, and its figures beside the unit-weight ablation and the
//! video-CTR order.

pub mod figures;
pub mod rerank;
pub mod retrieved;
mod sample;
pub mod store;

use crate::config::RankingConfig;
use crate::data::Events;
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::ranking::{auc, ranking_metrics, RankingMetrics, ScoredImpression};
use crate::progress::bar;
use crate::ranking_features::{build_examples_where, Impressions, RankingVocab, SideInfo};
use crate::stages::retrieval::train_retrieval;
use ranking::{DynRanker, FeatureSchema, RankerSettings, RankingExample, TrainReport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

pub use figures::{ModelFigures, RankingFigures, TaskFigures};
pub use rerank::{rerank_file, RerankSummary};
use sample::ExampleSample;
pub use store::{has_ranker, load_vocab, publish_ranker_dir, save_ranker, VOCAB_FILE};

/// Whether the events hold impressions (some shown but not watched): what the ranker needs.
pub fn has_impressions(events: &Events) -> bool {
    events.watched.iter().any(|&w| !w)
}

/// The day of each event: the `date` extra column (YYYYMMDD) when present, else the UTC day
/// of the timestamp as YYYYMMDD.
pub fn event_days(events: &Events) -> Vec<i64> {
    match events.extra("date") {
        Some(date) => date.to_vec(),
        None => events
            .timestamp
            .iter()
            .map(|t| {
                let (y, m, d) = crate::calendar::civil_from_days(t.div_euclid(86_400));
                y * 10_000 + i64::from(m) * 100 + i64::from(d)
            })
            .collect(),
    }
}

/// Which part of the day split an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Training (gradient steps).
    Fit,
    /// Early stopping.
    Valid,
    /// Test.
    Test,
}

/// Days and impression counts of one part of the split.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartSummary {
    /// First and last day (YYYYMMDD); empty when the part is.
    pub days: Vec<i64>,
    /// Impressions (examples) in the part: after sampling when it was sampled.
    pub impressions: usize,
    /// When the part was sampled down to `[ranking] max_fit_examples` or `max_eval_examples`:
    /// how many impressions it had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_from: Option<usize>,
}

/// Where the examples come from: an impression log split by day.
pub const SOURCE_IMPRESSIONS: &str = "impressions, split by day";

/// The examples of one log with what sorts them: part, page and what the reference orders need.
struct Labelled<'a> {
    /// The part of each example (`None`: only feeds the features).
    parts: &'a [Option<Part>],
    /// (user, page key) of each example.
    pages: &'a [(i64, i64)],
    /// Item of each example.
    item_id: &'a [i64],
    /// Label of each example.
    watched: &'a [bool],
    /// Retrieval score of each example, when the candidates were retrieved.
    retrieval_score: Option<&'a [f32]>,
}

/// The split of the examples into fit, validation and test parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Where the examples come from and how they are split (empty in manifests older than
    /// the field).
    #[serde(default)]
    pub source: String,
    /// Training days.
    pub fit: PartSummary,
    /// Early-stopping days.
    pub valid: PartSummary,
    /// Test days.
    pub test: PartSummary,
    /// Item vocabulary size.
    pub items: usize,
}

/// The examples of the day split and what the test metrics need.
pub struct RankingData {
    /// The vocabularies the examples were built with.
    pub vocab: RankingVocab,
    /// Their schema.
    pub schema: FeatureSchema,
    /// Training examples.
    pub fit: Vec<RankingExample>,
    /// Early-stopping examples.
    pub valid: Vec<RankingExample>,
    /// Test examples.
    pub test: Vec<RankingExample>,
    /// The label columns the examples carry ([`RankingExample::labels`], in order): those of
    /// [`crate::dataset::LABEL_COLUMNS`] the events have (none in watches-only data).
    pub labels: Vec<String>,
    /// (user, day) of each test example.
    test_pages: Vec<(i64, i64)>,
    /// Watch rate of each test impression's item on the fit and validation days (0 if unseen).
    pub ctr_scores: Vec<f32>,
    /// The retrieval score of each test impression, when the impressions were retrieved.
    pub retrieval_scores: Option<Vec<f32>>,
    /// Days and counts.
    pub split: SplitSummary,
}

impl RankingData {
    /// The examples of `data`: its impressions split by day when it has any; otherwise
    /// (watches only) the watches with retrieved-but-unwatched candidates as negatives
    /// ([`retrieved`]), retrieved by a model trained here with `config`'s `[retrieval]` and
    /// `[examples]` on the data without the pages' watches.
    pub fn prepare(data: &Dataset, config: &crate::config::Config) -> Result<Self> {
        if has_impressions(&data.events) {
            return Self::build(data, &config.ranking);
        }
        tracing::info!("watches only: training the retrieval model for the candidates");
        let model_data = retrieved::candidate_model_data(data, config.ranking.pages_per_user);
        let trained = train_retrieval(&model_data, &config.retrieval, &config.examples, None)?;
        retrieved::build_retrieved(data, &config.ranking, &trained)
    }

    /// Splits `data`'s impressions by day and builds every example.
    pub fn build(data: &Dataset, cfg: &RankingConfig) -> Result<Self> {
        if !has_impressions(&data.events) {
            return Err(Error::input(
                &data.dir.join("events.parquet"),
                "no unwatched impressions: the day split needs impressions (shown and not watched)",
            ));
        }
        let events = &data.events;
        let day = event_days(events);
        let days: Vec<i64> = day
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let need = cfg.test_days.max(1) + cfg.valid_days + 1;
        if days.len() < need {
            return Err(Error::input(
                &data.dir.join("events.parquet"),
                format!(
                    "{} day(s) of impressions; the ranking split needs at least {need} (test_days {}, valid_days {}, and one to train on; see [ranking])",
                    days.len(),
                    cfg.test_days.max(1),
                    cfg.valid_days
                ),
            ));
        }
        let first_test = days[days.len() - cfg.test_days.max(1)];
        let first_valid = days[days.len() - cfg.test_days.max(1) - cfg.valid_days];
        let part_of = |d: i64| match d {
            d if d >= first_test => Part::Test,
            d if d >= first_valid => Part::Valid,
            _ => Part::Fit,
        };
        let parts: Vec<Part> = day.iter().map(|&d| part_of(d)).collect();
        let vocab = RankingVocab::fit(
            events,
            |i| parts[i] == Part::Fit,
            &data.items,
            &data.users,
            cfg.max_items,
            cfg.features(),
        );
        let side = SideInfo::new(&vocab, &data.items, &data.users);
        let sample = ExampleSample::new(&parts, cfg);
        let parts: Vec<Option<Part>> = parts
            .iter()
            .enumerate()
            .map(|(i, &part)| {
                sample
                    .keeps(part, events.user_id[i], day[i])
                    .then_some(part)
            })
            .collect();
        let mut examples = build_examples_where(
            &Impressions::new(events, &day),
            &side,
            &vocab.features,
            &|i| parts[i].is_some(),
        );
        let labels = attach_labels(events, &mut examples);
        let part_days = [Part::Fit, Part::Valid, Part::Test].map(|part| {
            let in_part: Vec<i64> = days
                .iter()
                .copied()
                .filter(|&d| part_of(d) == part)
                .collect();
            match (in_part.first(), in_part.last()) {
                (Some(&a), Some(&b)) => vec![a, b],
                _ => Vec::new(),
            }
        });
        let pages: Vec<(i64, i64)> = events.user_id.iter().copied().zip(day).collect();
        let mut assembled = Self::assemble(
            vocab,
            examples,
            Labelled {
                parts: &parts,
                pages: &pages,
                item_id: &events.item_id,
                watched: &events.watched,
                retrieval_score: None,
            },
            part_days,
            SOURCE_IMPRESSIONS.into(),
        );
        assembled.split.fit.sampled_from = sample.sampled_from(Part::Fit);
        assembled.split.valid.sampled_from = sample.sampled_from(Part::Valid);
        assembled.split.test.sampled_from = sample.sampled_from(Part::Test);
        Ok(Self {
            labels,
            ..assembled
        })
    }

    /// Sorts `examples` ((impression index, example), in index order) into their parts (an
    /// example without a part is dropped) and computes the video-CTR order from the fit and
    /// validation impressions.
    fn assemble(
        vocab: RankingVocab,
        examples: Vec<(usize, RankingExample)>,
        log: Labelled,
        part_days: [Vec<i64>; 3],
        source: String,
    ) -> Self {
        let mut ctr: HashMap<i64, (u32, u32)> = HashMap::new();
        for i in 0..log.parts.len() {
            if matches!(log.parts[i], Some(Part::Fit | Part::Valid)) {
                let c = ctr.entry(log.item_id[i]).or_default();
                c.0 += u32::from(log.watched[i]);
                c.1 += 1;
            }
        }
        let (mut fit, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
        let (mut test_pages, mut ctr_scores) = (Vec::new(), Vec::new());
        let mut retrieval_scores = log.retrieval_score.map(|_| Vec::new());
        for (i, example) in examples {
            match log.parts[i] {
                None => {}
                Some(Part::Fit) => fit.push(example),
                Some(Part::Valid) => valid.push(example),
                Some(Part::Test) => {
                    test.push(example);
                    test_pages.push(log.pages[i]);
                    let (w, n) = ctr.get(&log.item_id[i]).copied().unwrap_or((0, 0));
                    ctr_scores.push(if n > 0 { w as f32 / n as f32 } else { 0.0 });
                    if let (Some(out), Some(all)) = (&mut retrieval_scores, log.retrieval_score) {
                        out.push(all[i]);
                    }
                }
            }
        }
        let [fit_days, valid_days, test_days] = part_days;
        let split = SplitSummary {
            source,
            fit: PartSummary {
                days: fit_days,
                impressions: fit.len(),
                sampled_from: None,
            },
            valid: PartSummary {
                days: valid_days,
                impressions: valid.len(),
                sampled_from: None,
            },
            test: PartSummary {
                days: test_days,
                impressions: test.len(),
                sampled_from: None,
            },
            items: vocab.items.len(),
        };
        RankingData {
            schema: vocab.schema(),
            vocab,
            fit,
            valid,
            test,
            labels: Vec::new(),
            test_pages,
            ctr_scores,
            retrieval_scores,
            split,
        }
    }

    /// EVAL.md section 3 metrics of `scores` (one per test example).
    pub fn metrics(&self, scores: &[f32]) -> RankingMetrics {
        let rows: Vec<ScoredImpression> = self
            .test_pages
            .iter()
            .zip(&self.test)
            .zip(scores)
            .map(|((&(user, day), example), &score)| ScoredImpression {
                user,
                day,
                score,
                clicked: example.label,
                watch_time: example.watch_time,
            })
            .collect();
        ranking_metrics(&rows)
    }

    /// Test AUC of each task's logit for its label (the watch task: the watch), for a ranker
    /// with several tasks (the multi-task ranker); empty for the others.
    pub fn task_figures(&self, ranker: &DynRanker) -> Result<Vec<TaskFigures>> {
        let names = ranker.task_names();
        if names.len() < 2 {
            return Ok(Vec::new());
        }
        let logits = ranker.task_logits(&self.test).map_err(ranker_err)?;
        Ok(names
            .into_iter()
            .zip(logits)
            .enumerate()
            .map(|(t, (task, logits))| {
                let labels: Vec<bool> = self
                    .test
                    .iter()
                    .map(|e| {
                        if t == 0 {
                            e.label
                        } else {
                            e.labels[t - 1] == 1.0
                        }
                    })
                    .collect();
                let positives = labels.iter().filter(|&&y| y).count();
                TaskFigures {
                    task,
                    auc: auc(&labels, &logits),
                    positive_rate: positives as f64 / labels.len().max(1) as f64,
                }
            })
            .collect())
    }

    /// Trains a ranker with `settings` (early stopping on the validation days), showing
    /// progress.
    pub fn train(&self, settings: &RankerSettings) -> Result<(Box<DynRanker>, TrainReport)> {
        let what = if settings.unit_weights() {
            "ranker (unit)"
        } else {
            "ranker"
        };
        let pb = bar(settings.epochs() as u64, what);
        let settings = RankerSettings {
            labels: self.labels.clone(),
            ..settings.clone()
        };
        let trained = settings
            .train(self.schema.clone(), &self.fit, &self.valid, &mut |e| {
                pb.set_position(e.epoch as u64);
                pb.set_message(format!(
                    "train {:.4} valid {:.4}",
                    e.loss,
                    e.validation.unwrap_or(f64::NAN)
                ));
                tracing::info!(
                    epoch = e.epoch,
                    train = e.loss,
                    valid = e.validation,
                    seconds = e.seconds,
                    "ranker epoch"
                );
            })
            .map_err(ranker_err)?;
        pb.finish_and_clear();
        Ok(trained)
    }

    /// Whether the training examples carry watch times (else every watch weighs 1).
    pub fn has_watch_times(&self) -> bool {
        self.fit.iter().any(|e| e.label && e.watch_time != 1.0)
    }

    /// Trains with `config` and measures the model on the test days.
    pub fn train_and_measure(
        &self,
        settings: &RankerSettings,
    ) -> Result<(Box<DynRanker>, ModelFigures)> {
        let t = Instant::now();
        let (ranker, report) = self.train(settings)?;
        let train_seconds = t.elapsed().as_secs_f64();
        let scores = ranker.score(&self.test).map_err(ranker_err)?;
        let figures = ModelFigures {
            model: ranker.kind().to_string(),
            unit_weights: settings.unit_weights(),
            watch_times: self.has_watch_times(),
            metrics: self.metrics(&scores),
            best_epoch: report.best_epoch,
            epochs: report.epochs.len(),
            best_valid_loss: report.best_validation,
            train_seconds,
            tasks: self.task_figures(ranker.as_ref())?,
        };
        Ok((ranker, figures))
    }
}

/// Sets every example's [`RankingExample::labels`] from the label columns `events` has (one
/// example per event, in order); returns their names.
fn attach_labels(events: &Events, examples: &mut [(usize, RankingExample)]) -> Vec<String> {
    let columns: Vec<(&str, &[i64])> = crate::dataset::LABEL_COLUMNS
        .iter()
        .filter_map(|&name| events.extra(name).map(|col| (name, col)))
        .collect();
    if !columns.is_empty() {
        for (i, example) in examples.iter_mut() {
            example.labels = columns.iter().map(|(_, col)| col[*i] as f32).collect();
        }
    }
    columns.iter().map(|(name, _)| name.to_string()).collect()
}

/// A ranking crate error: a bad model name or setting is the user's input (exit code 2).
pub fn ranker_err(e: ranking::RankingError) -> Error {
    ranking_crate_err("ranking", e)
}

/// A ranking crate error from `stage` (`ranking` or `rating`), see [`Error::model`].
pub fn ranking_crate_err(stage: &'static str, e: ranking::RankingError) -> Error {
    let setting = matches!(e, ranking::RankingError::InvalidConfig(_));
    Error::model(stage, setting, e)
}

/// Trains the ranker on `data` (weighted, or unit weights per its settings) and, with
/// `ablation`, the unit-weight model too; returns the model and its figures (see
/// [`RankingData::prepare`] for data with watches only).
pub fn train_and_evaluate(
    data: &Dataset,
    config: &crate::config::Config,
    ablation: bool,
) -> Result<(Box<DynRanker>, RankingVocab, RankingFigures)> {
    let cfg = &config.ranking;
    let t = Instant::now();
    let prepared = RankingData::prepare(data, config)?;
    tracing::info!(seconds = t.elapsed().as_secs_f64(), "ranking examples");
    let settings = cfg.ranker_settings();
    settings.validate().map_err(ranker_err)?;
    let (ranker, model) = prepared.train_and_measure(&settings)?;
    // Without watch times (every watch weighs 1) the ablation is the same model.
    let unit_weights = if ablation && prepared.has_watch_times() && !settings.unit_weights() {
        Some(prepared.train_and_measure(&settings.with_unit_weights())?.1)
    } else {
        None
    };
    let figures = RankingFigures {
        split: prepared.split.clone(),
        model,
        unit_weights,
        ctr_order: prepared.metrics(&prepared.ctr_scores),
        retrieval_order: prepared
            .retrieval_scores
            .as_ref()
            .map(|r| prepared.metrics(r)),
    };
    Ok((ranker, prepared.vocab, figures))
}

/// The ranking part of `build-index`: trains the ranker (see [`RankingData::prepare`]), saves it
/// into the version folder `dir` and returns its figures for `metrics.ranking`; when the data
/// cannot train one (e.g. too few days) returns `{"skipped": reason}` and saves nothing.
pub fn build_stage(
    data: &Dataset,
    config: &crate::config::Config,
    dir: &Path,
) -> Result<serde_json::Value> {
    let (ranker, vocab, figures) = match train_and_evaluate(data, config, false) {
        Ok(trained) => trained,
        Err(Error::Input(reason)) => return Ok(serde_json::json!({ "skipped": reason })),
        Err(e) => return Err(e),
    };
    save_ranker(dir, ranker.as_ref(), &vocab)?;
    serde_json::to_value(&figures).map_err(|e| Error::Other(format!("ranking figures: {e}")))
}
