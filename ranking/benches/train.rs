//! Training throughput (examples/s) of the default ranker for one epoch over 20,480 synthetic
//! examples, at item vocabularies of 5k, 100k and 1M rows: the sparse embedding updates keep a
//! step's cost nearly independent of the vocabulary size (the 1M figure includes allocating and
//! copying the 32M-value table, a fixed cost that 20k examples do not amortise).
//!
//! `cargo bench -p ranking --bench train` (threads: RAYON_NUM_THREADS, default all cores).

use std::time::Instant;

use ranking::{FeatureSchema, RankerConfig, RankingExample, YoutubeRanker};

const EXAMPLES: usize = 20_480;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for n_items in [5_000u32, 100_000, 1_000_000] {
        let mut state = 1u64;
        let mut next = |m: u32| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % u64::from(m)) as u32
        };
        let schema = FeatureSchema {
            n_users: 0,
            n_items: n_items as usize,
            n_tokens: 100,
            user_cardinalities: vec![10],
            continuous: vec!["a".into(), "b".into()],
        };
        let examples: Vec<RankingExample> = (0..EXAMPLES)
            .map(|_| RankingExample {
                user: None,
                item: Some(next(n_items)),
                recent_watches: (0..20).map(|_| next(n_items)).collect(),
                item_tokens: vec![next(100)],
                recent_tokens: (0..20).map(|_| next(100)).collect(),
                user_categorical: vec![Some(next(10))],
                continuous: vec![next(100) as f32, next(7) as f32],
                label: next(3) == 0,
                watch_time: next(100) as f32,
                labels: Vec::new(),
            })
            .collect();
        let config = RankerConfig {
            epochs: 1,
            ..Default::default()
        };
        let start = Instant::now();
        let mut epoch_seconds = 0.0;
        YoutubeRanker::train(schema, config, &examples, &[], &mut |e| {
            epoch_seconds = e.seconds
        })?;
        println!(
            "{n_items:>9} items: {:>6.0} examples/s in the epoch, {:>6.0} examples/s including setup",
            EXAMPLES as f64 / epoch_seconds,
            EXAMPLES as f64 / start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
