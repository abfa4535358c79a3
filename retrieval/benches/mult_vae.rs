//! Mult-VAE training throughput (users/s) against catalogue size, and the process's peak
//! memory: the decoder is dense over the catalogue (a `batch x items` logit matrix and its
//! gradient every step), so its cost grows linearly with the number of items.
//!
//! ```text
//! cargo bench -p retrieval --bench mult_vae -- [items=10000,100000] [users=5000] [key=value ...]
//! ```
//! `key=value` sets a `MultVaeConfig` field (value as JSON); the paper's shape and batch of 500
//! by default. Random 50-watch histories: throughput does not depend on what is learnt.

use nn::rng::Rng;
use retrieval::autoencoder::AutoencoderSettings;
use retrieval::mult_vae::MultVaeConfig;
use retrieval::{Catalog, Example, TrainingSet, WatchHistories};

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
    let mut sizes = vec![10_000usize, 100_000];
    let mut users = 5_000usize;
    let mut cfg = serde_json::to_value(MultVaeConfig {
        epochs: 1,
        patience: 0,
        batch_size: 500,
        ..MultVaeConfig::default()
    })?;
    for arg in std::env::args().skip(1).filter(|a| a.contains('=')) {
        let (k, v) = arg.split_once('=').ok_or("expected key=value")?;
        match k {
            "items" => sizes = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "users" => users = v.parse()?,
            _ => cfg[k] = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.into())),
        }
    }
    let cfg: MultVaeConfig = serde_json::from_value(cfg)?;
    println!(
        "items     users/s   s/epoch  peak MiB  (Mult-VAE {}-{}, batch {})",
        cfg.hidden, cfg.latent, cfg.batch_size
    );
    for items in sizes {
        let mut rng = Rng::new(1);
        let sequences: Vec<Vec<(u32, i64)>> = (0..users)
            .map(|_| (0..50).map(|t| (rng.below(items) as u32, t)).collect())
            .collect();
        let histories = WatchHistories::from_sequences(&sequences);
        let examples: Vec<Example> = (0..users as u32)
            .map(|user| Example { user, pos: 0 })
            .collect();
        let catalog = Catalog::without_tokens(items);
        let data = TrainingSet {
            catalog: &catalog,
            histories: &histories,
            examples: &examples,
            user_features: None,
            validation: &[],
        };
        let (_, report) = cfg.train(&data, None, |_| {})?;
        let epoch = report.epochs.first().ok_or("no epoch ran")?;
        println!(
            "{items:<9} {:>8.0} {:>9.2} {:>9}",
            epoch.examples_per_second,
            epoch.seconds,
            peak_memory_mib().map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
    Ok(())
}
