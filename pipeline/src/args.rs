//! The `recpipe` command line's argument definitions (clap); what each command does is in
//! [`crate::cli`].

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
/// recpipe: a two-stage recommender (candidate generation + watch-time ranking) after Covington
/// et al., "Deep Neural Networks for YouTube Recommendations" (2016).
#[derive(Debug, Parser)]
#[command(name = "recpipe", version, about, long_about = None)]
pub struct Cli {
    /// Settings file (default: ./recpipe.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Device models train on (and `rerank` scores on): cpu, or cuda:N with a binary built
    /// with the `cuda` feature (overrides `[train] device`).
    #[arg(long, global = true)]
    pub device: Option<String>,
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
    /// The nightly job: train, index, evaluate and publish a new version.
    BuildIndex(BuildIndexArgs),
    /// Embed items published since the last build from their features and insert them into
    /// the live index, as a new version (models with an item tower: two_tower).
    AddItems(AddItemsArgs),
    /// Candidates for one user (or an ad-hoc history) from the live version.
    Query(QueryArgs),
    /// Candidates for many users into candidates.parquet (the offline batch path).
    Candidates(CandidatesArgs),
    /// Train the watch-time-weighted ranker on impressions into a ranker folder.
    TrainRanker(TrainRankerArgs),
    /// Re-rank candidates.parquet by expected watch time into ranked.parquet.
    Rerank(RerankArgs),
    /// Serve candidates over HTTP from the live version (swapped when a new one is published).
    Serve(ServeArgs),
    /// Measure quality as EVAL.md fixes it (retrieval: section 1, exact scores; ranking with
    /// --ranking: section 3).
    Evaluate(EvaluateArgs),
    /// Train several retrieval models on EVAL.md section 1 and compare them in one table
    /// (with most-popular and the next-id canary as reference rows) and an HR@K chart.
    Leaderboard(LeaderboardArgs),
    /// Speed benchmarks on real artifacts.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Validate a data folder (events.parquet, and items/users.parquet when present).
    Check(DataArgs),
}

/// `recpipe build-index`.
#[derive(Debug, Args)]
pub struct BuildIndexArgs {
    /// Data folder (events.parquet, items.parquet, users.parquet).
    #[arg(long)]
    pub data: PathBuf,
    /// Artifact folder (versions/ and CURRENT).
    #[arg(long)]
    pub artifacts: PathBuf,
    /// Publish even when the quality gate refuses.
    #[arg(long)]
    pub force: bool,
}

/// `recpipe add-items`.
#[derive(Debug, Args)]
pub struct AddItemsArgs {
    /// Artifact folder (versions/ and CURRENT).
    #[arg(long)]
    pub artifacts: PathBuf,
    /// The new items (items.parquet schema; rows the live version already has are skipped).
    #[arg(long)]
    pub items: PathBuf,
    /// Write what was added as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `recpipe query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Artifact folder.
    #[arg(long)]
    pub artifacts: PathBuf,
    /// The user, as the data spells user ids (a number, or a string id).
    #[arg(long, conflicts_with = "history", allow_hyphen_values = true)]
    pub user: Option<String>,
    /// An ad-hoc user's watched item ids, oldest first: `id,id,...`.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub history: Option<Vec<String>>,
    /// How many items.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Index beam width (default: the index's configured one).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Data folder for histories and titles (default: the one the version was built from).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Order by the version's ranker (expected watch time) instead of the retrieval score.
    #[arg(long)]
    pub rerank: bool,
}

/// `recpipe candidates`.
#[derive(Debug, Args)]
pub struct CandidatesArgs {
    /// Artifact folder.
    #[arg(long)]
    pub artifacts: PathBuf,
    /// Every user with a history.
    #[arg(long, conflicts_with = "users")]
    pub all: bool,
    /// A file of user ids, one per line.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Candidates per user.
    #[arg(short, long, default_value_t = 100)]
    pub k: usize,
    /// Index beam width (default: the index's configured one).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Data folder for histories (default: the one the version was built from).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `recpipe train-ranker`.
#[derive(Debug, Args)]
pub struct TrainRankerArgs {
    /// Data folder (events.parquet, items, users): impressions, or watches only (negatives are
    /// then retrieved by a retrieval model trained first with `[retrieval]`).
    #[arg(long)]
    pub data: PathBuf,
    /// Ranker folder to write (ranker.safetensors, ranker.json, ranking_features.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Train without watch-time weights (the paper's ablation).
    #[arg(long)]
    pub unit_weights: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `recpipe rerank`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["artifacts", "ranker"])))]
pub struct RerankArgs {
    /// candidates.parquet (user_id, item_id, retrieval_score, retrieval_rank).
    #[arg(long)]
    pub input: PathBuf,
    /// ranked.parquet to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Artifact folder: the live version's ranker.
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// A ranker folder written by train-ranker.
    #[arg(long)]
    pub ranker: Option<PathBuf>,
    /// Data folder the users' state is read from (default with --artifacts: the one the
    /// version was built from).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `recpipe serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Artifact folder.
    #[arg(long)]
    pub artifacts: PathBuf,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Data folder for histories (default: the one the version was built from).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `recpipe bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The index benchmark on item_vectors.parquet with user vectors as queries.
    Index(BenchIndexArgs),
    /// Query latency (one thread) on a published version.
    Query(BenchQueryArgs),
    /// The nightly job end to end on a generated world of a given size: build-index (every
    /// stage's time and memory), query latency, candidates throughput, a warm-started rebuild
    /// after one more day of events.
    Scale(BenchScaleArgs),
}

/// `recpipe bench scale`.
#[derive(Debug, Args)]
pub struct BenchScaleArgs {
    /// Working folder (its data, data-full and artifacts are replaced).
    #[arg(long)]
    pub dir: PathBuf,
    /// Users of the world.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Items of the world.
    #[arg(long, default_value_t = 50_000)]
    pub items: usize,
    /// Days before the appended one.
    #[arg(long, default_value_t = 14)]
    pub days: usize,
    /// Write the report as JSON here (it is also printed).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `recpipe bench index`.
#[derive(Debug, Args)]
pub struct BenchIndexArgs {
    /// item_vectors.parquet.
    #[arg(long)]
    pub vectors: PathBuf,
    /// user_vectors.parquet (queries).
    #[arg(long)]
    pub queries: PathBuf,
    /// At most this many queries.
    #[arg(long, default_value_t = 2_000)]
    pub max_queries: usize,
    /// Beam widths to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 128, 256, 512])]
    pub ef: Vec<usize>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `recpipe bench query`.
#[derive(Debug, Args)]
pub struct BenchQueryArgs {
    /// Artifact folder.
    #[arg(long)]
    pub artifacts: PathBuf,
    /// Data folder (default: the one the version was built from).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Users to time.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Candidates retrieved.
    #[arg(short, long, default_value_t = 100)]
    pub k: usize,
    /// Candidates re-ranked.
    #[arg(long, default_value_t = 500)]
    pub rerank_k: usize,
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
    /// EVAL.md section 3 instead: the ranker on the day split of the impressions, beside its
    /// unit-weight ablation and the video-CTR order.
    #[arg(long)]
    pub ranking: bool,
    /// What to measure: `retrieval` (EVAL.md section 1) or `rating` (section 4: a seeded
    /// 90/10 split of the ratings, RMSE beside the training mean).
    #[arg(long, value_enum, default_value_t = Task::Retrieval)]
    pub task: Task,
    /// Model to evaluate (overrides `[retrieval] model`, `[rating] model`, or with `--ranking`
    /// `[ranking] model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Also measure the retriever by the NCF protocol (EVAL.md section 5: the test item among
    /// 99 sampled unseen items, HR@10 and NDCG@10), for figures beside work that used it.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
}

/// An extra evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// EVAL.md section 5.
    Ncf,
}

/// What `evaluate` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Next-watch retrieval (EVAL.md section 1).
    Retrieval,
    /// Rating prediction (EVAL.md section 4).
    Rating,
}

/// `recpipe leaderboard`.
#[derive(Debug, Args)]
pub struct LeaderboardArgs {
    /// Data folder (events.parquet, items.parquet, users.parquet).
    #[arg(long)]
    pub data: PathBuf,
    /// What to compare: `retrieval` (EVAL.md section 1) or `rating` (section 4: RMSE, with
    /// the masked-loss ablation of each AutoRec beside it).
    #[arg(long, value_enum, default_value_t = Task::Retrieval)]
    pub task: Task,
    /// Comma-separated models (default: every model of the task this build knows).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Write the table as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of HR@K (K = 1..100) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
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
    /// Any event log with a header (CSV or TSV, plain or gzip; one file or a folder of parts)
    /// into events.parquet.
    Csv(CsvImportArgs),
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
    /// Memory for sorting the events, in MiB: a larger log is sorted in runs spilled beside
    /// the output and merged (an external sort), so the import's memory stays bounded.
    #[arg(long, default_value_t = crate::data::events::DEFAULT_SORT_MEMORY_MB)]
    pub memory_mb: usize,
}

/// `recpipe import csv`.
#[derive(Debug, Args)]
pub struct CsvImportArgs {
    /// A CSV/TSV file (plain or gzip), or a folder whose *.csv, *.csv.gz, *.tsv and *.tsv.gz
    /// files are read in name order as one log (all with the same header).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder for events.parquet.
    #[arg(long)]
    pub out: PathBuf,
    /// The user id column (integers, or any strings).
    #[arg(long)]
    pub user: String,
    /// The item id column (integers, or any strings).
    #[arg(long)]
    pub item: String,
    /// The time column.
    #[arg(long)]
    pub time: String,
    /// How the times are written: unix (seconds, decimals floored), unix_ms, rfc3339 (any
    /// offset), or a strftime pattern read as UTC such as '%Y-%m-%d %H:%M:%S' or '%Y-%m-%d'.
    #[arg(long, default_value = "unix")]
    pub time_format: String,
    /// A watched flag column (true/false, 1/0, yes/no); without it every row is a watch.
    #[arg(long)]
    pub watched: Option<String>,
    /// A watch time column (seconds; empty = unknown; only on watched rows).
    #[arg(long)]
    pub watch_time: Option<String>,
    /// A rating column (empty = none).
    #[arg(long)]
    pub rating: Option<String>,
    /// The field delimiter: one character, or 'tab' (default: tab for .tsv files, else ',').
    #[arg(long)]
    pub delimiter: Option<String>,
}
