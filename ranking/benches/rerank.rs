//! Scoring throughput of each ranker on the shared input (the YouTube ranker, DeepFM, DCN-v2,
//! the multi-task ranker with its watch head only, default settings): 1M candidates (2,500 users x 400 candidates), candidates per second,
//! latency of one 400-candidate request, and peak memory (VmHWM); for the YouTube ranker also
//! the tower's achieved FLOP/s beside a plain candle matmul's rate measured here.
//!
//! `cargo bench -p ranking --bench rerank [-- MODEL... device=cpu]` (default: youtube, deepfm,
//! dcn_v2, multitask; threads: RAYON_NUM_THREADS, default all cores). `device` is `cpu` (the CPU
//! scoring path), `cuda:N` (a `--features cuda` build: the heads score on the GPU) or
//! `candle-cpu` (the GPU's candle-op path run on the CPU, to compare).
//!
//! Each model (default config, one epoch on a few synthetic examples) is trained and saved by
//! this process; the scoring runs in a child process that loads it, so that the peak memory
//! reported is that of loading and scoring alone.

use std::time::Instant;

use candle_core::{Device, Tensor};
use nn::Compute;
use ranking::{DynRanker, FeatureSchema, RankerSettings, RankingExample, YoutubeRanker};

const USERS_PER_SLICE: usize = 100;
const CANDIDATES_PER_USER: usize = 400;
const SLICES: usize = 25;
const ROUNDS: usize = 3;
const N_ITEMS: u32 = 100_000;
const N_TOKENS: u32 = 1_000;

/// Deterministic pseudo-random numbers (an LCG; quality is irrelevant here).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

fn schema() -> FeatureSchema {
    FeatureSchema {
        n_users: 0,
        n_items: N_ITEMS as usize,
        n_tokens: N_TOKENS as usize,
        user_cardinalities: vec![10, 10, 50, 200, 1000],
        continuous: [
            "since_last_watch",
            "previous_impressions",
            "duration",
            "age",
            "popularity",
            "watch_rate",
            "retrieval_score",
            "retrieval_rank",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// `users` users with 20 recent watches (2 tokens each) and `per_user` candidates each.
fn examples(rng: &mut Lcg, users: usize, per_user: usize) -> Vec<RankingExample> {
    let schema = schema();
    let mut out = Vec::with_capacity(users * per_user);
    for _ in 0..users {
        let recent_watches: Vec<u32> = (0..20).map(|_| rng.below(N_ITEMS)).collect();
        let recent_tokens: Vec<u32> = (0..40).map(|_| rng.below(N_TOKENS)).collect();
        let user_categorical = schema
            .user_cardinalities
            .iter()
            .map(|&c| Some(rng.below(c as u32)))
            .collect();
        let since_last_watch = rng.below(100_000) as f32;
        let user = RankingExample {
            recent_watches,
            recent_tokens,
            user_categorical,
            ..Default::default()
        };
        for rank in 0..per_user {
            out.push(RankingExample {
                user: None,
                item: Some(rng.below(N_ITEMS)),
                item_tokens: (0..2).map(|_| rng.below(N_TOKENS)).collect(),
                continuous: vec![
                    since_last_watch,
                    rng.below(3) as f32,
                    rng.below(600) as f32,
                    rng.below(1_000_000) as f32,
                    rng.below(10_000) as f32,
                    rng.below(1000) as f32 / 1000.0,
                    rng.below(1000) as f32 / 100.0,
                    rank as f32,
                ],
                label: rng.below(3) == 0,
                watch_time: rng.below(300) as f32,
                ..user.clone()
            });
        }
    }
    out
}

/// GFLOP/s of `reps` products of an `m x k` by a `k x n` matrix.
fn matmul_rate(m: usize, k: usize, n: usize, reps: usize) -> Result<f64, candle_core::Error> {
    let device = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (m, k), &device)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), &device)?;
    a.matmul(&b)?;
    let start = Instant::now();
    for _ in 0..reps {
        a.matmul(&b)?;
    }
    Ok(2.0 * (m * k * n * reps) as f64 / start.elapsed().as_secs_f64() / 1e9)
}

fn peak_memory_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Environment variable naming the model folder in the child process.
const MODEL_DIR_VAR: &str = "RERANK_BENCH_MODEL_DIR";
/// Environment variable naming the scoring device in the child process.
const DEVICE_VAR: &str = "RERANK_BENCH_DEVICE";

/// `cpu` (the CPU scoring path), `candle-cpu` (the GPU's candle-op path run on the CPU) or
/// `cuda:N` (a `--features cuda` build).
fn compute(name: &str) -> Result<Compute, Box<dyn std::error::Error>> {
    Ok(match name {
        "candle-cpu" => Compute::Candle(Device::Cpu),
        other => Compute::parse(other)?,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = std::env::var_os(MODEL_DIR_VAR) {
        let dir = std::path::Path::new(&dir);
        let device = std::env::var(DEVICE_VAR).unwrap_or_else(|_| "cpu".into());
        let compute = compute(&device)?;
        println!("scoring on {}", compute.name());
        let mut ranker = ranking::load(dir)?;
        if ranker.kind() == ranking::KIND {
            drop(ranker);
            let mut youtube = YoutubeRanker::load(dir)?;
            youtube.score_with(&compute)?;
            return score(&youtube, Some(&youtube));
        }
        ranker.score_with(&compute)?;
        return score(ranker.as_ref(), None);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = args
        .iter()
        .find_map(|a| a.strip_prefix("device="))
        .unwrap_or("cpu")
        .to_string();
    compute(&device)?;
    let named: Vec<String> = args
        .into_iter()
        .filter(|a| !a.starts_with('-') && !a.contains('='))
        .collect();
    let models = if named.is_empty() {
        vec![
            ranking::KIND.to_string(),
            "deepfm".into(),
            "dcn_v2".into(),
            "multitask".into(),
        ]
    } else {
        named
    };
    let mut rng = Lcg(3);
    let train = examples(&mut rng, 20, 100);
    for model in models {
        let mut settings = RankerSettings {
            model: model.clone(),
            ..RankerSettings::default()
        };
        settings.youtube.epochs = 1;
        settings.deepfm.epochs = 1;
        settings.dcn_v2.epochs = 1;
        settings.multitask.epochs = 1;
        settings.validate()?;
        let (ranker, _) = settings.train(schema(), &train, &[], &mut |_| {})?;
        let dir = std::env::temp_dir().join(format!("rerank-bench-{}-{model}", std::process::id()));
        ranker.save(&dir)?;
        println!("{model}: {}", ranker.config_json());
        let status = std::process::Command::new(std::env::current_exe()?)
            .env(MODEL_DIR_VAR, &dir)
            .env(DEVICE_VAR, &device)
            .status();
        let _ = std::fs::remove_dir_all(&dir);
        if !status?.success() {
            return Err(format!("the scoring process of {model} failed").into());
        }
    }
    Ok(())
}

/// Scores with `ranker`; `youtube` (the same ranker) adds the tower's FLOP/s.
fn score(
    ranker: &DynRanker,
    youtube: Option<&YoutubeRanker>,
) -> Result<(), Box<dyn std::error::Error>> {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let mut rng = Lcg(7);
    let slice = examples(&mut rng, USERS_PER_SLICE, CANDIDATES_PER_USER);
    // The YouTube tower's FLOPs per candidate and the first layer's matmul shape.
    let tower = youtube.map(|y| {
        let hidden = &y.config().hidden;
        let first = hidden.first().copied().unwrap_or(1);
        let width = (y.tower_multiply_adds() - tower_tail(hidden)) / first;
        (2.0 * y.tower_multiply_adds() as f64, width, first)
    });
    match (youtube, tower) {
        (Some(y), Some((flops, ..))) => println!(
            "{}: tower {:?}, {:.0} kFLOP per candidate (matmuls), threads: {threads}",
            ranker.kind(),
            y.config().hidden,
            flops / 1e3
        ),
        _ => println!("{}: threads: {threads}", ranker.kind()),
    }
    let batch = ranking::SCORE_BATCH;
    ranker.score(&slice)?;
    // Rounds alternate the ranker and a plain matmul of the first layer's shape, so that both
    // rates see the same load (the machine may be shared).
    let mut peak_after_bulk = None;
    for round in 1..=ROUNDS {
        let start = Instant::now();
        let mut checksum = 0f64;
        for _ in 0..SLICES {
            checksum += ranker
                .score(&slice)?
                .iter()
                .map(|&s| f64::from(s))
                .sum::<f64>();
        }
        let seconds = start.elapsed().as_secs_f64();
        peak_after_bulk = peak_after_bulk.or_else(peak_memory_kb);
        let candidates = (SLICES * slice.len()) as f64;
        let rate = candidates / seconds;
        match tower {
            Some((flops, width, first)) => println!(
                "round {round}: {candidates:.0} candidates in {seconds:.2} s = {rate:.0} candidates/s, tower {:.1} GFLOP/s; plain matmul {batch}x{width}x{first}: {:.1} GFLOP/s (checksum {checksum:.3e})",
                candidates * flops / seconds / 1e9,
                matmul_rate(batch, width, first, 100)?
            ),
            None => println!(
                "round {round}: {candidates:.0} candidates in {seconds:.2} s = {rate:.0} candidates/s (checksum {checksum:.3e})"
            ),
        }
    }

    let mut latencies: Vec<f64> = Vec::new();
    for user in slice.chunks(CANDIDATES_PER_USER) {
        let start = Instant::now();
        ranker.score(user)?;
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "per request ({CANDIDATES_PER_USER} candidates, {} requests): p50 {:.3} ms, p99 {:.3} ms",
        latencies.len(),
        at(0.5),
        at(0.99)
    );

    println!(
        "plain candle matmul 1024^3: {:.1} GFLOP/s",
        matmul_rate(1024, 1024, 1024, 10)?
    );
    match (peak_after_bulk, peak_memory_kb()) {
        (Some(bulk), Some(end)) => println!(
            "peak memory (VmHWM): {:.1} MB after loading and bulk scoring (inputs: {} examples held), {:.1} MB at the end",
            bulk as f64 / 1024.0,
            slice.len(),
            end as f64 / 1024.0
        ),
        _ => println!("peak memory: /proc/self/status unavailable"),
    }
    Ok(())
}

/// Multiply-adds of the tower after its first layer.
fn tower_tail(hidden: &[usize]) -> usize {
    hidden.windows(2).map(|w| w[0] * w[1]).sum::<usize>() + hidden.last().copied().unwrap_or(0)
}
