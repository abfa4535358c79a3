//! The `recpipe` command line: dispatch of each command (argument definitions in
//! [`crate::args`]) to the stages.

use crate::args::*;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generate::{generate, WorldConfig};
use crate::import::{finish_import, kuairand, movielens, EventSink};
use crate::output::OutputDir;
use crate::progress::bar;
use std::path::PathBuf;
use std::time::Instant;

mod evaluate;

use evaluate::{run_evaluate, run_leaderboard};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(d) = cli.device.as_deref() {
        crate::config::check_device_name(d)
            .map_err(|e| Error::Input(format!("--device {d}: {e}")))?;
    }
    let config = Config::load(cli.config.as_deref())?.with_device(cli.device.as_deref());
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
        Command::Import(ImportCommand::Csv(a)) => run_import_csv(&a),
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
        Command::Bench(BenchCommand::Scale(a)) => {
            let world = WorldConfig {
                users: a.users,
                items: a.items,
                days: a.days,
                ..config.generate.clone()
            };
            let r = crate::bench_scale::bench_scale(&world, &a.dir, &config)?;
            let s =
                serde_json::to_string_pretty(&r).map_err(|e| crate::Error::Other(e.to_string()))?;
            if let Some(p) = &a.json {
                crate::output::write_json(p, &r)?;
            }
            println!("{s}");
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
        Command::AddItems(a) => run_add_items(&a, &config),
        Command::Query(a) => run_query(&a),
        Command::Serve(a) => crate::server::serve(
            &a.artifacts,
            a.data.as_deref(),
            &a.addr,
            config.serve.clone(),
        ),
        Command::Candidates(a) => run_candidates(&a),
        Command::TrainRanker(a) => run_train_ranker(&a, &config),
        Command::Rerank(a) => run_rerank(&a, &config),
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
    &mut crate::import::EventSink,
) -> Result<(crate::data::Items, crate::data::Users)>;

fn run_import(a: &ImportArgs, read: Reader) -> Result<()> {
    let t = Instant::now();
    if a.memory_mb == 0 {
        return Err(Error::Input(
            "--memory-mb 0: the import's sort needs a budget of at least 1 MiB".into(),
        ));
    }
    let dir = OutputDir::open(&a.out)?;
    let mut sink = EventSink::new(&dir.join("events.parquet"), a.memory_mb << 20);
    let (items, users) = read(&a.input, &mut sink)?;
    let runs = sink.spilled_runs();
    let summary = finish_import(sink, items, users, &dir)?;
    dir.keep();
    let secs = t.elapsed().as_secs_f64();
    let sorted = match runs {
        0 => "sorted in memory".to_string(),
        n => format!(
            "sorted in {n} spilled run(s) within --memory-mb {}",
            a.memory_mb
        ),
    };
    println!(
        "{summary}\nwrote {} in {:.2} s ({:.0} rows/s; {sorted})",
        a.out.display(),
        secs,
        summary.events as f64 / secs
    );
    Ok(())
}

fn run_import_csv(a: &CsvImportArgs) -> Result<()> {
    let t = Instant::now();
    let opts = crate::import::csv::CsvImport::from_args(a)?;
    let summary = crate::import::csv::import_csv(&opts, &a.out)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{summary}\nwrote {} in {:.2} s ({:.0} rows/s)",
        a.out.join("events.parquet").display(),
        secs,
        summary.summary.events as f64 / secs
    );
    Ok(())
}

fn run_check(data: &std::path::Path) -> Result<()> {
    let d = crate::dataset::Dataset::load(data)?;
    let seq = crate::split::WatchSequences::from_events(&d.events);
    let split = crate::split::LeaveLastOut::from_sequences(&seq);
    let spelt = |s: &crate::ids::IdSpelling| {
        if s.is_strings() {
            "strings"
        } else {
            "integers"
        }
    };
    println!(
        "events: {} events, {} watched, {} users with watches ({} with >= 3, evaluated); user ids \
         are {}, item ids {}",
        d.events.len(),
        seq.items.len(),
        seq.num_users(),
        split.num_users(),
        spelt(&d.ids.users),
        spelt(&d.ids.items)
    );
    if !d.items.is_empty() {
        println!("items: {} items", d.items.len());
    }
    if !d.users.is_empty() {
        println!(
            "users: {} users, {} categorical and {} numeric features",
            d.users.len(),
            d.users.categorical.len(),
            d.users.numeric.len()
        );
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

fn run_add_items(a: &AddItemsArgs, config: &Config) -> Result<()> {
    let r = crate::stages::add_items::add_items(&a.artifacts, &a.items, config)?;
    if let Some(p) = &a.json {
        crate::output::write_json(p, &r)?;
    }
    match &r.version {
        Some(v) => println!(
            "published version {v}: added {} items to {} ({} items in the index; {} already \
             known, {} unknown category tokens ignored) in {:.2} s",
            r.added,
            r.from_version,
            r.items,
            r.already_known,
            r.unknown_tokens,
            r.seconds["total"].as_f64().unwrap_or(0.0)
        ),
        None => println!(
            "nothing to add: version {} already has all {} items of {}; nothing published",
            r.from_version,
            r.already_known,
            a.items.display()
        ),
    }
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
    let extra = live.item_ids(a.history.as_deref().unwrap_or_default())?;
    let user = a.user.as_deref().map(|u| live.user_id(u)).transpose()?;
    let rec = live.recommend_ranked(user, &extra, a.k, a.ef, a.rerank)?;
    if a.json {
        let s =
            serde_json::to_string_pretty(&rec).map_err(|e| crate::Error::Other(e.to_string()))?;
        println!("{s}");
    } else {
        let who = user.map(|u| live.external_user(u));
        print!(
            "{}",
            crate::report::recommendation_table(&rec, who.as_ref())
        );
    }
    Ok(())
}

fn run_candidates(a: &CandidatesArgs) -> Result<()> {
    check_k(a.k)?;
    let live = crate::serving::LiveModel::load(&a.artifacts, a.data.as_deref())?;
    let users: Vec<i64> = match (&a.users, a.all) {
        (Some(path), _) => crate::batch::read_user_list(path, &live)?,
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

fn run_rerank(a: &RerankArgs, config: &Config) -> Result<()> {
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
    // `--device` / `[train] device`: a GPU scores the batches there.
    let compute = nn::Compute::parse(&config.train.device)
        .map_err(|e| Error::Input(format!("rerank: {e}")))?;
    let data = crate::dataset::Dataset::load(&data_dir)?;
    let mut ranker = LoadedRanker::load(&dir, &data)?;
    ranker.score_with(&compute)?;
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
    if crate::dataset::table_path(&data, "events").is_some() {
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
        let who = live.external_user(user);
        print!("{}", crate::report::recommendation_table(&rec, Some(&who)));
    }
    println!(
        "\nquickstart done in {:.1} s; artifacts in {}; try: recpipe query --artifacts {} --user 4",
        t.elapsed().as_secs_f64(),
        art.display(),
        art.display()
    );
    Ok(())
}
