//! Training throughput on a synthetic catalogue (default: 1M items, batch 512, dim 64,
//! 50-watch histories, sampled softmax) and the process's peak memory.
//!
//! ```text
//! cargo bench -p retrieval --bench train -- [model=youtube_dnn] [items=1000000] [steps=100]
//!     [positions=all] [device=cpu] [key=value ...]
//! ```
//! `device` is `cpu` (the fused CPU kernels), `cuda:N` (a `--features cuda` build), or
//! `candle-cpu`: the GPU code path (candle ops only) run on the CPU, to compare with the fused
//! kernels.
//! `model` is any registry name (`sasrec`, `gru4rec`, ...); `key=value` sets a field of that
//! model's section (value as JSON). Every user has 60 watches and the examples are positions
//! 50..59 (a 50-watch history each), `steps x 512` of them: the YouTube network takes 512
//! examples a step; a sequence model reads each user's window of 50 and trains its 10
//! targets, 512 windows a step. `positions=all` makes every position 1..59 an example (how the
//! sequence models train on real data). Examples/s counts targets either way. Random
//! histories: throughput does not depend on what is learnt. `CANDLE_NUM_THREADS` defaults to 1 here (candle's
//! spinning element-wise pool only slows small ops down on 2 shared cores); matmuls and this
//! crate's kernels still use every core through rayon.

use std::time::Instant;

use candle_core::Device;
use nn::rng::Rng;
use nn::Compute;
use retrieval::{
    Catalog, Example, RetrievalSettings, TrainingSet, WatchHistories, YoutubeDnnConfig,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> AnyResult<()> {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let mut items = 1_000_000usize;
    let mut steps = 100usize;
    let mut model = "youtube_dnn".to_string();
    let mut all_positions = false;
    let mut compute = Compute::FusedCpu;
    // The benchmark's own shape (batch 512, 64-dim vectors and embeddings, 50-watch histories,
    // for the YouTube network one 256-wide layer), fixed whatever the product's defaults are;
    // key=value overrides it.
    let youtube = serde_json::to_value(YoutubeDnnConfig {
        epochs: 1,
        batch_size: 512,
        dim: 64,
        item_embedding_dim: 64,
        hidden: vec![256],
        max_history: 50,
        ..YoutubeDnnConfig::default()
    })?;
    let mut overrides = Vec::new();
    for arg in std::env::args().skip(1).filter(|a| a.contains('=')) {
        let (k, v) = arg.split_once('=').ok_or("expected key=value")?;
        match k {
            "items" => items = v.parse()?,
            "steps" => steps = v.parse()?,
            "model" => model = v.to_string(),
            "positions" => all_positions = v == "all",
            "device" if v == "candle-cpu" => compute = Compute::Candle(Device::Cpu),
            "device" => compute = Compute::parse(v)?,
            _ => overrides.push((k.to_string(), v.to_string())),
        }
    }
    let history = 50usize;
    let mut settings = serde_json::to_value(RetrievalSettings::default().with_model(&model))?;
    let section = settings
        .get_mut(&model)
        .ok_or_else(|| format!("no section [retrieval.{model}]"))?;
    if model == "youtube_dnn" {
        *section = youtube;
    } else {
        for (k, v) in [
            ("epochs", 1),
            ("batch_size", 512),
            ("dim", 64),
            ("max_len", history),
        ] {
            if section.get(k).is_some() {
                section[k] = v.into();
            }
        }
    }
    for (k, v) in overrides {
        section[&k] = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
    }
    let settings: RetrievalSettings = serde_json::from_value(settings)?;
    settings.validate()?;
    let chosen = settings.chosen_config();
    let batch_size = chosen["batch_size"].as_u64().unwrap_or(512) as usize;
    let full_max = chosen["full_softmax_max_items"].as_u64().unwrap_or(0) as usize;
    let users = (steps * batch_size).div_ceil(10);
    let mut rng = Rng::new(1);
    let sequences: Vec<Vec<(u32, i64)>> = (0..users)
        .map(|_| {
            (0..history + 10)
                .map(|k| {
                    // Skewed popularity: density falls like 1/sqrt(item).
                    let item = (items as f64 * rng.uniform().powi(2)) as u32;
                    (item.min(items as u32 - 1), 1_600_000_000 + 3600 * k as i64)
                })
                .collect()
        })
        .collect();
    let train = WatchHistories::from_sequences(&sequences);
    let first = if all_positions { 1 } else { history as u32 };
    let examples: Vec<Example> = (0..users as u32)
        .flat_map(|u| (first..history as u32 + 10).map(move |p| Example { user: u, pos: p }))
        .take(if all_positions {
            usize::MAX
        } else {
            steps * batch_size
        })
        .collect();
    let catalog = Catalog {
        num_items: items,
        item_tokens: (0..items)
            .map(|i| vec![(i % 50) as u32, 50 + (i % 7) as u32])
            .collect(),
        num_tokens: 57,

        ..Default::default()
    };
    println!(
        "{model} on {}: {items} items, {} examples ({}), {history}-watch histories, {} threads, \
         config {chosen}",
        compute.name(),
        examples.len(),
        if all_positions {
            "every position"
        } else {
            "positions 50..59"
        },
        rayon::current_num_threads()
    );
    let start = Instant::now();
    let data = TrainingSet {
        catalog: &catalog,
        histories: &train,
        examples: &examples,
        user_features: None,
        validation: &[],
    };
    let (_, report) = settings.train_on(&compute, &data, None, |r| {
        println!(
            "epoch {}: loss {:.3}, {:.0} examples/s",
            r.epoch, r.loss, r.examples_per_second
        )
    })?;
    println!(
        "full softmax: {}; train() took {:.1}s (including {:.1}s of set-up)",
        catalog.num_items <= full_max,
        start.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
            - examples.len() as f64 / report.epochs[0].examples_per_second
    );
    match peak_memory_mib() {
        Some(m) => println!("peak memory (VmHWM): {m:.0} MiB"),
        None => println!("peak memory: /proc/self/status unavailable"),
    }
    Ok(())
}
