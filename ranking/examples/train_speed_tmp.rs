use ranking::{FeatureSchema, Ranker, RankerConfig, RankingExample};
fn main() {
    let n_items: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut s = 1u64;
    let mut next = |m: u32| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 33) % m as u64) as u32 };
    let schema = FeatureSchema { n_items: n_items as usize, n_tokens: 100, user_cardinalities: vec![10], continuous: vec!["a".into(), "b".into()] };
    let ex: Vec<RankingExample> = (0..20480).map(|_| RankingExample {
        item: Some(next(n_items)), recent_watches: (0..20).map(|_| next(n_items)).collect(), item_tokens: vec![next(100)], recent_tokens: (0..20).map(|_| next(100)).collect(),
        user_categorical: vec![Some(next(10))], continuous: vec![next(100) as f32, next(7) as f32], label: next(3) == 0, watch_time: next(100) as f32 }).collect();
    let config = RankerConfig { epochs: 1, ..Default::default() };
    let t = std::time::Instant::now();
    Ranker::train(schema, config, &ex, &[], &mut |e| eprintln!("epoch {:.2}s", e.seconds)).unwrap();
    println!("{n_items} items: {:.0} examples/s", 20480.0 / t.elapsed().as_secs_f64());
}
