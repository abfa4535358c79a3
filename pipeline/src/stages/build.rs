//! `recpipe build-index`, the nightly job: validate events -> examples -> train retrieval ->
//! item and user vectors -> index -> evaluate (exact and through the index) -> quality gate ->
//! publish a version atomically -> keep the last N versions.

use crate::artifacts::{
    current_name, files, prune, BuildLock, IdMaps, Manifest, Version, VersionBuilder,
};
use crate::config::Config;
use crate::data::{write_vectors, IdVectors};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::ids::IdSpelling;
use crate::progress::{bar, StageFigures, StageLog};
use crate::stages::retrieval::{
    model_err, train_retrieval, RetrievalMetrics, TrainedRetrieval, CUTOFFS,
};
use index::{Exclude, Index, ItemVectors};
use nn::ValidationCase;
use retrieval::UserQuery;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Served quality and index fidelity measured through the index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexFigures {
    /// "hnsw" or "exact".
    pub kind: String,
    /// EVAL.md §1 on the test target through the index.
    pub test_served: RetrievalMetrics,
    /// recall@100 of the index against exact top-100 over the test queries (EVAL.md §2).
    pub recall_at_100: f64,
    /// The search beam width the version serves with (`null` for an exact index).
    pub search_ef: Option<usize>,
    /// How it was chosen on validation queries (`null`: not chosen, see `[build]
    /// recall_target`).
    pub search_ef_choice: Option<index::EfChoice>,
    /// Whether the graph missed the recall target at every width and exact search serves
    /// instead (`[build] exact_fallback`).
    pub exact_fallback: bool,
    /// Build seconds.
    pub build_seconds: f64,
}

/// What a build measured; written into `manifest.json` as `metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildFigures {
    /// Exact-score metrics on the validation target.
    pub validation_exact: RetrievalMetrics,
    /// Exact-score metrics on the test target.
    pub test_exact: RetrievalMetrics,
    /// Through the index.
    pub index: IndexFigures,
    /// Registry name of the retrieval model (`youtube_dnn`, `mf`, ...).
    pub retrieval_model: String,
    /// Its settings.
    pub retrieval_config: serde_json::Value,
    /// Training summary.
    pub train_examples: usize,
    /// Epoch kept.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Whether retrieval training stopped on `[build] train_seconds`.
    pub stopped_by_time_budget: bool,
    /// Seconds per stage.
    pub seconds: serde_json::Value,
    /// Every stage's wall time and peak resident memory, in order.
    pub stages: Vec<StageFigures>,
    /// The ranker's EVAL.md section 3 figures (`{"skipped": reason}` when it cannot be trained).
    pub ranking: serde_json::Value,
}

/// User vectors of `cases` (row-major) and what each excludes: the history, never the target
/// (it may be a re-watch; EVAL.md §1).
fn case_queries(
    trained: &TrainedRetrieval,
    cases: &[ValidationCase],
) -> Result<(Vec<f32>, Vec<Vec<u32>>)> {
    let feats = trained.inputs.features.as_ref();
    let queries: Vec<UserQuery> = cases.iter().map(|c| c.query(feats)).collect();
    let uv = trained.model.user_vectors(&queries).map_err(model_err)?;
    let kept = cases
        .iter()
        .map(|c| {
            c.exclude
                .iter()
                .copied()
                .filter(|&i| i != c.target)
                .collect()
        })
        .collect();
    Ok((uv, kept))
}

/// Validation queries the search beam width is chosen on (evenly spread when there are more).
pub const TUNING_QUERIES: usize = 2_000;

/// Chooses the HNSW search beam width on (up to [`TUNING_QUERIES`]) validation users: the
/// smallest whose recall@100 against exact search reaches `target` (see
/// [`index::HnswIndex::choose_ef`]); it becomes the saved index's default, so serving uses it.
pub fn choose_search_ef(
    trained: &TrainedRetrieval,
    index: &mut Index,
    target: f64,
    max_ef: usize,
) -> Result<Option<index::EfChoice>> {
    let Index::Hnsw(h) = index else {
        return Ok(None);
    };
    let all = &trained.inputs.validation;
    let step = all.len().div_ceil(TUNING_QUERIES).max(1);
    let cases: Vec<ValidationCase> = all.iter().step_by(step).cloned().collect();
    if cases.is_empty() {
        return Ok(None);
    }
    let (uv, kept) = case_queries(trained, &cases)?;
    let excl: Vec<Exclude> = kept.iter().map(|e| Exclude::Indices(e)).collect();
    let k = *CUTOFFS.iter().max().unwrap_or(&100);
    let choice = h
        .choose_ef(&uv, &excl, k, target, max_ef)
        .map_err(Error::index("choosing the search ef"))?;
    if !choice.reached {
        tracing::warn!(
            "index: recall@{k} {:.4} at ef {} (the largest tried) is below the target {target}",
            choice.recall,
            choice.ef
        );
    }
    Ok(Some(choice))
}

/// Measures EVAL.md §1 through `index` on the test cases, and recall@100 against exact search.
pub fn served_metrics(
    trained: &TrainedRetrieval,
    index: &Index,
    ef: Option<usize>,
) -> Result<(RetrievalMetrics, f64)> {
    let cases = &trained.inputs.test;
    let (uv, kept) = case_queries(trained, cases)?;
    let k = *CUTOFFS.iter().max().unwrap_or(&100);
    let excl: Vec<Exclude> = kept.iter().map(|e| Exclude::Indices(e)).collect();
    let served = index
        .search_batch(&uv, k, ef.unwrap_or(0), &excl)
        .map_err(Error::index("index search"))?;
    let ranks: Vec<usize> = served
        .iter()
        .zip(cases)
        .map(|(hits, c)| {
            hits.iter()
                .position(|h| h.index == c.target)
                .unwrap_or(usize::MAX)
        })
        .collect();
    let recall = match index {
        Index::Exact(_) => 1.0,
        Index::Hnsw(h) => {
            let items = h.items();
            let exact = index::ExactIndex::new(items)
                .and_then(|e| e.search_batch(&uv, k, &excl))
                .map_err(Error::index("exact search"))?;
            let sum: f64 = served
                .iter()
                .zip(&exact)
                .map(|(a, b)| index::recall_at_k(a, b, k))
                .sum();
            sum / served.len().max(1) as f64
        }
    };
    Ok((RetrievalMetrics::from_ranks(&ranks), recall))
}

/// Runs the nightly job on `data_dir` and publishes into `root`; returns the new manifest.
/// A failure at any point leaves the live version untouched.
pub fn build_index(data_dir: &Path, root: &Path, config: &Config, force: bool) -> Result<Manifest> {
    let t0 = Instant::now();
    config.build.validate()?;
    // One build at a time per artifact folder, held until this function returns.
    let _lock = BuildLock::acquire(root)?;
    let mut log = StageLog::default();
    log.start("load");
    let data = Dataset::load(data_dir)?;
    let t_load = t0.elapsed().as_secs_f64();
    let live = match current_name(root)? {
        Some(name) => Some(Version::open(root, &name, false)?),
        None => None,
    };
    let builder = VersionBuilder::start(root)?;

    let t1 = Instant::now();
    log.start("train_retrieval");
    // Warm start from the live version when its model loads and has the same shape of network.
    let previous = match &live {
        Some(v) if config.build.warm_start => load_previous(v),
        _ => None,
    };
    let trained = nn::with_time_budget(config.build.train_budget(), || {
        train_retrieval(
            &data,
            &config.retrieval,
            &config.examples,
            previous.as_ref(),
        )
    })?;
    let t_train = t1.elapsed().as_secs_f64();

    // Quality gate, before anything heavy is written.
    let hr10 = trained.validation.hr[0];
    if let Some(v) = &live {
        let live_hr10 = v.manifest.metrics["validation_exact"]["hr"][0].as_f64();
        if let Some(prev) = live_hr10 {
            let floor = prev * (1.0 - config.build.max_hr10_drop);
            if hr10 < floor && !force {
                let msg = format!(
                    "quality gate: validation HR@10 {hr10:.4} is more than {:.0}% below the live version {} ({prev:.4}); not published (use --force to publish anyway)",
                    100.0 * config.build.max_hr10_drop,
                    v.manifest.version
                );
                tracing::warn!("{msg}");
                return Err(Error::Other(msg));
            }
        }
    }

    let dir = builder.dir().to_path_buf();
    log.start("write_model");
    trained.model.save(&dir).map_err(model_err)?;
    let ids = IdMaps {
        items: trained.inputs.items.clone(),
        tokens: trained.inputs.tokens.clone(),
        user_features: trained.inputs.encoder.clone(),
        item_tokens: trained.inputs.catalog.item_tokens.clone(),
        users: trained.inputs.users.clone(),
        item_keys: match &data.ids.items {
            IdSpelling::Integers => Vec::new(),
            spelling => trained
                .inputs
                .items
                .ids
                .iter()
                .map(|&id| spelling.external(id).to_string())
                .collect(),
        },
        reference_time: trained.inputs.reference_time,
    };
    crate::output::write_json(&dir.join(files::IDS), &ids)?;
    let (vecs, bias) = trained.model.item_vectors().map_err(model_err)?;
    let dim = trained.model.dim();
    let item_vectors = IdVectors {
        ids: ids.items.ids.clone(),
        dim,
        data: vecs,
        bias,
    };
    write_vectors(&dir.join(files::ITEM_VECTORS), "item_id", &item_vectors)?.commit()?;
    write_user_vectors(&trained, &dir.join(files::USER_VECTORS))?;

    let t2 = Instant::now();
    log.start("index");
    let pb = bar(item_vectors.ids.len() as u64, "index");
    let items = ItemVectors::new(item_vectors.ids, dim, item_vectors.data, item_vectors.bias)
        .map_err(Error::index("index input"))?;
    let mut index = Index::build(items, &config.index, &|done, _| {
        pb.set_position(done as u64)
    })
    .map_err(Error::index("index build"))?;
    pb.finish_and_clear();
    let ef_choice = if config.build.recall_target > 0.0 {
        log.start("choose_ef");
        choose_search_ef(
            &trained,
            &mut index,
            config.build.recall_target,
            config.build.max_search_ef,
        )?
    } else {
        None
    };
    // A graph that cannot reach the recall target is replaced by exact search.
    let exact_fallback = config.build.exact_fallback
        && ef_choice.as_ref().is_some_and(|c| !c.reached)
        && matches!(index, Index::Hnsw(_));
    if exact_fallback {
        if let Index::Hnsw(h) = &index {
            tracing::warn!(
                "index: the graph does not reach recall@100 {} at any ef up to {}; serving \
                 with exact search ([build] exact_fallback)",
                config.build.recall_target,
                config.build.max_search_ef
            );
            index = Index::Exact(
                index::ExactIndex::new(h.items()).map_err(Error::index("exact index"))?,
            );
        }
    }
    let t_index = t2.elapsed().as_secs_f64();
    index
        .save(dir.join(files::INDEX_DIR))
        .map_err(Error::index("index save"))?;
    log.start("evaluate_served");
    let (served, recall) = served_metrics(&trained, &index, config.build.eval_ef)?;
    // The index must serve what the model ranks: refuse a version that loses HR@10 to it.
    let (exact_hr10, served_hr10) = (trained.test.hr[0], served.hr[0]);
    if served_hr10 < config.build.min_served_ratio * exact_hr10 && !force {
        let msg = format!(
            "quality gate: served test HR@10 {served_hr10:.4} is below {} x the exact HR@10 \
             {exact_hr10:.4} (index recall@100 {recall:.4}); not published (raise [build] \
             recall_target or [index] ef_construction / m, or use --force)",
            config.build.min_served_ratio
        );
        tracing::warn!("{msg}");
        return Err(Error::Other(msg));
    }

    let t3 = Instant::now();
    log.start("train_ranker");
    let ranking = nn::with_time_budget(config.build.train_budget(), || {
        crate::stages::ranking::build_stage(&data, config, &dir)
    })?;
    let t_ranker = t3.elapsed().as_secs_f64();
    log.end();

    let figures = BuildFigures {
        validation_exact: trained.validation,
        test_exact: trained.test,
        index: IndexFigures {
            kind: match index {
                Index::Hnsw(_) => "hnsw".into(),
                Index::Exact(_) => "exact".into(),
            },
            test_served: served,
            recall_at_100: recall,
            build_seconds: t_index,
            search_ef: match &index {
                Index::Hnsw(h) => Some(h.config().ef_search_default),
                Index::Exact(_) => None,
            },
            search_ef_choice: ef_choice,
            exact_fallback,
        },
        retrieval_model: trained.model.kind().to_string(),
        retrieval_config: trained.model.config_json(),
        train_examples: trained.inputs.examples.len(),
        best_epoch: trained.report.best_epoch,
        epochs: trained.report.epochs.len(),
        stopped_by_time_budget: trained.report.stopped_by_time_budget,
        seconds: serde_json::json!({
            "load": t_load,
            "train_retrieval": t_train,
            "index": t_index,
            "train_ranker": t_ranker,
            "total": t0.elapsed().as_secs_f64(),
        }),
        stages: log.stages().to_vec(),
        ranking,
    };
    let inputs = serde_json::json!({
        "data": std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
        "events": data.events.len(),
        "items": data.items.len(),
        "users": data.users.len(),
        "evaluation": {
            "users": trained.inputs.test.len(),
            "evaluable_users": trained.inputs.evaluable_users,
            "sampled": trained.inputs.test.len() < trained.inputs.evaluable_users,
        },
        "user_ids": if data.ids.users.is_strings() { "strings" } else { "integers" },
        "item_ids": if data.ids.items.is_strings() { "strings" } else { "integers" },
        "warm_start_from": previous.as_ref().and(live.as_ref()).map(|v| v.manifest.version.clone()),
    });
    let config_json =
        serde_json::to_value(config).map_err(|e| Error::Other(format!("config: {e}")))?;
    let metrics =
        serde_json::to_value(&figures).map_err(|e| Error::Other(format!("metrics: {e}")))?;
    crate::progress::stage("publish");
    let manifest = builder.publish(inputs, config_json, metrics)?;
    crate::progress::stage("published");
    prune(root, config.build.keep_versions)?;
    Ok(manifest)
}

fn write_user_vectors(trained: &TrainedRetrieval, dest: &Path) -> Result<()> {
    // Each user's vector from the full training history (what serving starts from).
    let h = &trained.inputs.histories;
    let feats = trained.inputs.features.as_ref();
    let n = trained.inputs.users.len();
    let queries: Vec<UserQuery> = (0..n)
        .map(|u| UserQuery::of_user(h.user_items(u), u as u32, feats))
        .collect();
    let data = trained.model.user_vectors(&queries).map_err(model_err)?;
    let v = IdVectors {
        ids: trained.inputs.users.ids.clone(),
        dim: trained.model.dim(),
        data,
        bias: Vec::new(),
    };
    write_vectors(dest, "user_id", &v)?.commit()
}

/// The live version's retrieval model and ids, or `None` (logged) when they cannot be loaded:
/// a cold start is then the safe choice.
fn load_previous(v: &Version) -> Option<crate::stages::retrieval::Previous> {
    let model = match retrieval::load(&v.dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(version = %v.manifest.version, error = %e, "no warm start");
            return None;
        }
    };
    let ids = IdMaps::load(&v.file(files::IDS)).ok()?;
    Some(crate::stages::retrieval::Previous { model, ids })
}
