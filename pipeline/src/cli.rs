//! The `recpipe` command line: argument definitions and dispatch to the stages.

use crate::config::Config;
use crate::error::Result;
use crate::generate::{generate, WorldConfig};
use crate::import::{kuairand, movielens, write_dataset};
use crate::progress::bar;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

/// recpipe: a two-stage recommender (candidate generation + watch-time ranking) after Covington
/// et al., "Deep Neural Networks for YouTube Recommendations" (2016).
#[derive(Debug, Parser)]
#[command(name = "recpipe", version, about, long_about = None)]
pub struct Cli {
    /// Settings file (default: ./recpipe.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a small synthetic world and run the pipeline on it.
    Quickstart(QuickstartArgs),
    /// Generate a synthetic world (events, items, users) as Parquet.
    Generate(GenerateArgs),
    /// Import a public data set as Parquet.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Measure quality as EVAL.md fixes it (retrieval: section 1, exact scores).
    Evaluate(EvaluateArgs),
    /// Validate a data folder (events.parquet, and items/users.parquet when present).
    Check(DataArgs),
}

/// `recpipe evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Data folder (events.parquet, items.parquet, users.parquet).
    #[arg(long)]
    pub data: PathBuf,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A data folder argument.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Folder holding events.parquet (and optionally items.parquet, users.parquet).
    #[arg(long)]
    pub data: PathBuf,
}

/// `recpipe quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Working folder for the generated data and artifacts.
    #[arg(long, default_value = "quickstart")]
    pub dir: PathBuf,
}

/// `recpipe generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output folder (created when missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of users.
    #[arg(long)]
    pub users: Option<usize>,
    /// Number of items.
    #[arg(long)]
    pub items: Option<usize>,
    /// Simulated days.
    #[arg(long)]
    pub days: Option<usize>,
    /// Seed (same seed, same files).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `recpipe import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// MovieLens: ml-100k, ml-1m or the csv layout (ml-latest, ml-20m, ml-25m).
    Movielens(ImportArgs),
    /// KuaiRand: log_*.csv impressions, video and user features.
    Kuairand(ImportArgs),
}

/// Input and output folders of an import.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The data set's folder.
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder for events.parquet, items.parquet, users.parquet.
    #[arg(long)]
    pub out: PathBuf,
}

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
        Command::Evaluate(a) => run_evaluate(&a, &config),
        Command::Quickstart(a) => {
            let world = WorldConfig {
                users: 1_000,
                items: 2_000,
                days: 14,
                ..config.generate.clone()
            };
            run_generate(&world, &a.dir.join("data"))
        }
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
    let t = Instant::now();
    let trained = train_retrieval(&data, &config.retrieval, &config.examples)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "retrieval: {} examples, {} items, best epoch {} of {}, {:.1} s",
        trained.inputs.examples.len(),
        trained.inputs.catalog.num_items,
        trained.report.best_epoch,
        trained.report.epochs.len(),
        secs
    );
    println!("{}", RetrievalMetrics::header());
    println!("{}", trained.validation.row("validation (exact)"));
    println!("{}", trained.test.row("test (exact)"));
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "data": a.data,
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
