//! The `recpipe` command line: dispatch of each command (argument definitions in
//! [`crate::args`]) to the stages.

use crate::args::*;
use crate::config::Config;
use crate::error::Result;
use crate::generate::{generate, WorldConfig};
use crate::import::{kuairand, movielens, write_dataset};
use crate::progress::bar;
use std::path::PathBuf;
use std::time::Instant;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Generate(a) => {
            let mut world = config.generate.clone();
            world.users = a.users.unwrap_or(world.users);
            world.items = a.items.unwrap_or(world.items);
            world.days = a.days.unwrap_or(world.days);
            world.seed = a.seed.unwrap_or(world.seed);
            run_generate(&world, &a.out)
        }
        Command::Import(ImportCommand::Movielens(a)) => run_import(&a, movielens::read),
        Command::Import(ImportCommand::Kuairand(a)) => run_import(&a, kuairand::read),
        Command::Check(a) => run_check(&a.data),
        Command::Bench(BenchCommand::Index(a)) => {
            let cfg = index::bench::BenchConfig {
                ef_sweep: a.ef.clone(),
                hnsw: config.index.clone(),
                ..Default::default()
            };
            let r = crate::bench::bench_index(&a.vectors, &a.queries, a.max_queries, &cfg)?;
            println!("{r}");
            if let Some(p) = &a.json {
                crate::output::write_json(p, &r)?;
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Query(a)) => {
            let live = crate::serving::LiveModel::load(&a.artifacts, a.data.as_deref())?;
            let r = crate::bench::bench_query(&live, a.users, a.k, a.rerank_k)?;
            let s =
                serde_json::to_string_pretty(&r).map_err(|e| crate::Error::Other(e.to_string()))?;
            println!("{s}");
            Ok(())
        }
        Command::BuildIndex(a) => run_build(&a, &config),
        Command::Query(a) => run_query(&a),
        Command::Serve(a) => crate::server::serve(
            &a.artifacts,
            a.data.as_deref(),
            &a.addr,
            config.serve.clone(),
        ),
        Command::Candidates(a) => run_candidates(&a),
        Command::TrainRanker(a) => run_train_ranker(&a, &config),
        Command::Rerank(a) => run_rerank(&a),
        Command::Evaluate(a) => run_evaluate(&a, &config),
        Command::Leaderboard(a) => run_leaderboard(&a, &config),
        Command::Quickstart(a) => run_quickstart(&a, &config),
    }
}

fn run_generate(world: &WorldConfig, out: &std::path::Path) -> Result<()> {
    let t = Instant::now();
    let pb = bar(world.users as u64, "generate");
    let s = generate(world, out, &|done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "generated {} events ({} watched), {} users, {} items ({} fresh) into {} in {:.1} s ({:.0} events/s)",
        s.events,
        s.watched,
        s.users,
        s.items,
        s.fresh_items,
        out.display(),
        secs,
        s.events as f64 / secs
    );
    Ok(())
}

type Reader = fn(
    &std::path::Path,
) -> Result<(
    crate::data::Events,
    crate::data::Items,
    crate::data::Users,
    crate::import::ImportSummary,
)>;

fn run_import(a: &ImportArgs, read: Reader) -> Result<()> {
    let t = Instant::now();
    let (events, items, users, summary) = read(&a.input)?;
    write_dataset(&a.out, &events, &items, &users)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{summary}\nwrote {} in {:.2} s ({:.0} rows/s)",
        a.out.display(),
        secs,
        summary.events as f64 / secs
    );
    Ok(())
}

fn run_check(data: &std::path::Path) -> Result<()> {
    let events = crate::data::read_events(&data.join("events.parquet"), &[])?;
    let seq = crate::split::WatchSequences::from_events(&events);
    let split = crate::split::LeaveLastOut::from_sequences(&seq);
    println!(
        "events.parquet: {} events, {} watched, {} users with watches ({} with >= 3, evaluated)",
        events.len(),
        seq.items.len(),
        seq.num_users(),
        split.num_users()
    );
    let items_path = data.join("items.parquet");
    if items_path.is_file() {
        let items = crate::data::read_items(&items_path)?;
        println!("items.parquet: {} items", items.len());
    }
    let users_path = data.join("users.parquet");
    if users_path.is_file() {
        let users = crate::data::read_users(&users_path)?;
        println!(
            "users.parquet: {} users, {} categorical and {} numeric features",
            users.len(),
            users.categorical.len(),
            users.numeric.len()
        );
    }
    Ok(())
}

fn run_evaluate(a: &EvaluateArgs, config: &Config) -> Result<()> {
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

fn run_leaderboard(a: &LeaderboardArgs, config: &Config) -> Result<()> {
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

fn run_build(a: &BuildIndexArgs, config: &Config) -> Result<()> {
    let t = Instant::now();
    let m = crate::stages::build::build_index(&a.data, &a.artifacts, config, a.force)?;
    print!(
        "{}",
        crate::report::build_summary(&m, t.elapsed().as_secs_f64())
    );
    Ok(())
}

fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > 10_000 {
        return Err(crate::Error::Input(format!("-k {k}: must be 1..=10000")));
    }
    Ok(())
}

fn run_query(a: &QueryArgs) -> Result<()> {
    check_k(a.k)?;
    if a.user.is_none() && a.history.is_none() {
        return Err(crate::Error::Input(
            "query: give --user ID or --history id,id,...".into(),
        ));
    }
    let live = crate::serving::LiveModel::load(&a.artifacts, a.data.as_deref())?;
    let extra = a.history.clone().unwrap_or_default();
    let rec = live.recommend_ranked(a.user, &extra, a.k, a.ef, a.rerank)?;
    if a.json {
        let s =
            serde_json::to_string_pretty(&rec).map_err(|e| crate::Error::Other(e.to_string()))?;
        println!("{s}");
    } else {
        print!("{}", crate::report::recommendation_table(&rec, a.user));
    }
    Ok(())
}

fn run_candidates(a: &CandidatesArgs) -> Result<()> {
    check_k(a.k)?;
    let live = crate::serving::LiveModel::load(&a.artifacts, a.data.as_deref())?;
    let users: Vec<i64> = match (&a.users, a.all) {
        (Some(path), _) => crate::batch::read_user_list(path)?,
        (None, true) => live.users(),
        (None, false) => {
            return Err(crate::Error::Input(
                "candidates: give --all or --users FILE".into(),
            ))
        }
    };
    let t = Instant::now();
    let rows = crate::batch::write_candidates(&live, &users, a.k, a.ef, &a.out)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} candidates for {} users into {} in {:.1} s ({:.0} users/s)",
        rows,
        users.len(),
        a.out.display(),
        secs,
        users.len() as f64 / secs
    );
    Ok(())
}

fn run_train_ranker(a: &TrainRankerArgs, config: &Config) -> Result<()> {
    use crate::stages::ranking::{publish_ranker_dir, train_and_evaluate};
    let t = Instant::now();
    let data = crate::dataset::Dataset::load(&a.data)?;
    let mut cfg = config.clone();
    cfg.ranking.youtube.unit_weights |= a.unit_weights;
    let (ranker, vocab, figures) = train_and_evaluate(&data, &cfg, false)?;
    publish_ranker_dir(&a.out, ranker.as_ref(), &vocab)?;
    print!("{}", figures.table());
    println!(
        "wrote the ranker into {} in {:.1} s",
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.json {
        let json = serde_json::json!({ "data": a.data, "ranking": figures });
        crate::output::write_json(path, &json)?;
    }
    Ok(())
}

fn run_rerank(a: &RerankArgs) -> Result<()> {
    use crate::serving::LoadedRanker;
    use crate::stages::ranking::{has_ranker, rerank_file};
    let (dir, data_dir) = match (&a.ranker, &a.artifacts) {
        (Some(dir), _) => {
            let data = a.data.clone().ok_or_else(|| {
                crate::Error::Input(
                    "rerank --ranker DIR needs --data DATA (the users' events)".into(),
                )
            })?;
            (dir.clone(), data)
        }
        (None, Some(root)) => {
            let v = crate::artifacts::Version::open_current(root, true)?;
            let data = match &a.data {
                Some(d) => d.clone(),
                None => v.manifest.inputs["data"]
                    .as_str()
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        crate::Error::Input("the manifest names no data folder; pass --data".into())
                    })?,
            };
            (v.dir, data)
        }
        (None, None) => {
            return Err(crate::Error::Input(
                "rerank: give --artifacts ART or --ranker DIR".into(),
            ))
        }
    };
    if !has_ranker(&dir) {
        return Err(crate::Error::Input(format!(
            "{}: no ranker there (ranker.json and ranking_features.json); run train-ranker, or build-index on data with impressions",
            dir.display()
        )));
    }
    // Open the input first: a bad file fails before any work.
    drop(crate::data::CandidatesReader::open(&a.input)?);
    let data = crate::dataset::Dataset::load(&data_dir)?;
    let ranker = LoadedRanker::load(&dir, &data)?;
    let summary = rerank_file(&ranker, &a.input, &a.out)?;
    println!("{summary}; wrote {}", a.out.display());
    Ok(())
}

fn run_quickstart(a: &QuickstartArgs, config: &Config) -> Result<()> {
    let t = Instant::now();
    let world = WorldConfig {
        users: 1_500,
        items: 3_000,
        days: 14,
        ..config.generate.clone()
    };
    let data = a.dir.join("data");
    let art = a.dir.join("artifacts");
    if data.join("events.parquet").is_file() {
        println!("using the world already in {}", data.display());
    } else {
        run_generate(&world, &data)?;
    }
    let m = crate::stages::build::build_index(&data, &art, config, true)?;
    print!(
        "{}",
        crate::report::build_summary(&m, t.elapsed().as_secs_f64())
    );
    let live = crate::serving::LiveModel::load(&art, Some(&data))?;
    for user in [1i64, 2, 3] {
        let rerank = live.has_ranker();
        let rec = live.recommend_ranked(Some(user), &[], 5, None, rerank)?;
        println!();
        print!("{}", crate::report::recommendation_table(&rec, Some(user)));
    }
    println!(
        "\nquickstart done in {:.1} s; artifacts in {}; try: recpipe query --artifacts {} --user 4",
        t.elapsed().as_secs_f64(),
        art.display(),
        art.display()
    );
    Ok(())
}
