//! `evaluate` and `leaderboard`: the EVAL.md measurements from the command line.

use crate::args::*;
use crate::config::Config;
use crate::error::Result;
use std::time::Instant;

pub(super) fn run_evaluate(a: &EvaluateArgs, config: &Config) -> Result<()> {
    use crate::stages::retrieval::{train_retrieval, RetrievalMetrics};
    let data = crate::dataset::Dataset::load(&a.data)?;
    if a.ranking {
        let mut config = config.clone();
        if let Some(m) = &a.model {
            config.ranking.model = m.clone();
        }
        let (_, _, figures) = crate::stages::ranking::train_and_evaluate(&data, &config, true)?;
        print!("{}", figures.table());
        if let Some(path) = &a.json {
            let json = serde_json::json!({ "data": a.data, "ranking": figures });
            crate::output::write_json(path, &json)?;
        }
        return Ok(());
    }
    if a.task == Task::Rating {
        let settings = match &a.model {
            Some(m) => config.rating.with_model(m),
            None => config.rating.clone(),
        };
        let figures = crate::eval::rating::evaluate_rating(&data, &settings)?;
        print!("{}", figures.table());
        if let Some(path) = &a.json {
            let json = serde_json::json!({
                "data": a.data,
                "model": figures.model,
                "config": settings.chosen_config(),
                "rating": figures,
            });
            crate::output::write_json(path, &json)?;
        }
        return Ok(());
    }
    let settings = match &a.model {
        Some(m) => config.retrieval.with_model(m),
        None => config.retrieval.clone(),
    };
    if retrieval::PAIR_MODELS.contains(&settings.model.as_str()) {
        return run_evaluate_pair(a, config, &data, &settings);
    }
    let t = Instant::now();
    let trained = train_retrieval(&data, &settings, &config.examples, None)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "retrieval {}: {} examples, {} items, best epoch {} of {}, {:.1} s",
        settings.model,
        trained.inputs.examples.len(),
        trained.inputs.catalog.num_items,
        trained.report.best_epoch,
        trained.report.epochs.len(),
        secs
    );
    println!("{}", RetrievalMetrics::header());
    println!("{}", trained.validation.row("validation (exact)"));
    println!("{}", trained.test.row("test (exact)"));
    let ncf = match a.protocol {
        Some(Protocol::Ncf) => {
            let inputs = &trained.inputs;
            let scores = crate::eval::ncf::retriever_scores(
                trained.model.as_ref(),
                inputs.features.as_ref(),
            );
            let n = inputs.catalog.num_items;
            let f = crate::eval::ncf::evaluate_ncf(&scores, n, &inputs.test)?;
            let popular = crate::eval::ncf::popularity_scores(&inputs.histories, n);
            let p = crate::eval::ncf::evaluate_ncf(&popular, n, &inputs.test)?;
            print_ncf(&f, &p);
            Some((f, p))
        }
        None => None,
    };
    let (ncf, ncf_popular) = ncf.unzip();
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "ncf_protocol": ncf,
            "ncf_protocol_most_popular": ncf_popular,
            "data": a.data,
            "model": settings.model,
            "retrieval": {
                "validation_exact": trained.validation,
                "test_exact": trained.test,
                "best_epoch": trained.report.best_epoch,
                "epochs": trained.report.epochs.len(),
                "train_seconds": secs,
            },
        });
        crate::output::write_json(path, &json)?;
    }
    Ok(())
}

fn print_ncf(f: &crate::eval::ncf::NcfFigures, popular: &crate::eval::ncf::NcfFigures) {
    println!(
        "NCF protocol (EVAL.md section 5, test item among 99 sampled unseen): {} users, HR@10 {:.4}, NDCG@10 {:.4} (most popular: HR@10 {:.4}, NDCG@10 {:.4})",
        f.users, f.hr10, f.ndcg10, popular.hr10, popular.ndcg10
    );
}

/// `evaluate --model mlp|neumf`: NCF's pair models, trained on the retrieval inputs and
/// measured on the full catalogue (their scores are not dot products, so no index serves them).
fn run_evaluate_pair(
    a: &EvaluateArgs,
    config: &Config,
    data: &crate::dataset::Dataset,
    settings: &retrieval::RetrievalSettings,
) -> Result<()> {
    use crate::stages::retrieval::RetrievalMetrics;
    let protocol = matches!(a.protocol, Some(Protocol::Ncf));
    let f = crate::eval::ncf::evaluate_pair_model(
        data,
        settings,
        &config.examples,
        &settings.model,
        protocol,
    )?;
    println!(
        "{} (pair model, scored over the whole catalogue): best epoch {} of {}, {:.1} s",
        f.model, f.best_epoch, f.epochs, f.train_seconds
    );
    println!("{}", RetrievalMetrics::header());
    println!("{}", f.validation.row("validation (exact)"));
    println!("{}", f.test.row("test (exact)"));
    if let (Some(n), Some(p)) = (&f.ncf_protocol, &f.ncf_protocol_most_popular) {
        print_ncf(n, p);
    }
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "ncf_protocol": f.ncf_protocol,
            "ncf_protocol_most_popular": f.ncf_protocol_most_popular,
            "data": a.data,
            "model": f.model,
            "config": settings.chosen_config(),
            "retrieval": {
                "validation_exact": f.validation,
                "test_exact": f.test,
                "best_epoch": f.best_epoch,
                "epochs": f.epochs,
                "train_seconds": f.train_seconds,
            },
        });
        crate::output::write_json(path, &json)?;
    }
    Ok(())
}

/// `leaderboard --task rating`: every rating model on one EVAL.md section 4 split, each
/// AutoRec followed by its ablation (missing ratings = 0 in the loss).
fn run_rating_leaderboard(a: &LeaderboardArgs, config: &Config) -> Result<()> {
    use crate::eval::rating::RatingSplit;
    if a.plot.is_some() {
        return Err(crate::error::Error::Other(
            "--plot draws HR@K: it applies to --task retrieval only".into(),
        ));
    }
    let models: Vec<String> = if a.models.is_empty() {
        ranking::RATING_MODELS
            .iter()
            .map(|m| m.to_string())
            .collect()
    } else {
        a.models.clone()
    };
    let model_err = |e| crate::stages::ranking::ranking_crate_err("rating", e);
    for m in &models {
        config.rating.with_model(m).validate().map_err(model_err)?;
    }
    let data = crate::dataset::Dataset::load(&a.data)?;
    let split = RatingSplit::new(&data)?;
    let mut rows = Vec::new();
    for m in &models {
        let settings = config.rating.with_model(m);
        rows.push(split.evaluate(&settings, m)?);
        let mut ablation = settings.clone();
        let variant = match m.as_str() {
            ranking::autorec::KIND_ITEM => &mut ablation.autorec_i,
            ranking::autorec::KIND_USER => &mut ablation.autorec_u,
            _ => continue,
        };
        if !variant.unobserved_in_loss {
            variant.unobserved_in_loss = true;
            rows.push(split.evaluate(&ablation, &format!("{m} (missing = 0 in loss)"))?);
        }
    }
    let figures = split.figures(rows);
    print!("{}", figures.table());
    if let Some(path) = &a.json {
        let json = serde_json::json!({ "data": a.data, "rating": figures });
        crate::output::write_json(path, &json)?;
    }
    Ok(())
}

pub(super) fn run_leaderboard(a: &LeaderboardArgs, config: &Config) -> Result<()> {
    use crate::eval::leaderboard;
    if a.task == Task::Rating {
        return run_rating_leaderboard(a, config);
    }
    let models: Vec<String> = if a.models.is_empty() {
        retrieval::MODELS.iter().map(|m| m.to_string()).collect()
    } else {
        a.models.clone()
    };
    // Every name is checked before hours of training start.
    for m in &models {
        config
            .retrieval
            .with_model(m)
            .validate()
            .map_err(crate::stages::retrieval::model_err)?;
    }
    let data = crate::dataset::Dataset::load(&a.data)?;
    // One set of examples and evaluation cases for every model.
    let mut inputs = crate::stages::retrieval::retrieval_inputs(&data, &config.examples)?;
    let mut entries = Vec::new();
    for m in &models {
        let (e, back) = leaderboard::model_entry(inputs, &config.retrieval, m)?;
        inputs = back;
        eprintln!(
            "{m}: test HR@10 {:.4} ({:.1} s)",
            e.test.hr[0],
            e.train_seconds.unwrap_or(0.0)
        );
        entries.push(e);
    }
    entries.extend(leaderboard::reference_entries(&inputs));
    print!("{}", leaderboard::table(&entries));
    if let Some(path) = &a.json {
        let json = serde_json::json!({ "data": a.data, "leaderboard": entries });
        crate::output::write_json(path, &json)?;
    }
    if let Some(path) = &a.plot {
        let title = format!("EVAL.md section 1 on {}", a.data.display());
        leaderboard::write_text(path, &leaderboard::svg(&entries, &title))?;
    }
    Ok(())
}
