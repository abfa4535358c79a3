//! The GPU code path of training (candle ops, what `device = "cuda:N"` runs, here on the CPU)
//! against the fused CPU kernels.

use candle_core::Device;
use nn::{Retriever, TrainingSet, UserQuery};

use super::tests::{small, World};
use super::*;

/// The GPU code path (candle ops, here on the CPU) trains the fused kernels' model from the
/// same seed: same batches, negatives, DropoutNet and dropout masks, the same update in another
/// arithmetic order. Exercises every input: tokens, durations, the age bias with masked
/// not-yet-published candidates, the recent window and categorical and numeric user features.
/// The item tables are compared with each column's mean over the items taken off: the item
/// tower's output bias adds the same `[c, c_b]` to every item, which the softmax ignores (no
/// gradient in exact arithmetic), so AdamW moves it on rounding noise, differently on each
/// path; every user's scores then differ by the constant `u . c + c_b`, and their order not at
/// all. (With dropout off, hidden units nearly constant across items give further directions
/// of nearly zero gradient, where the tables differed by 0.005 after 2 epochs. The defaults
/// train with dropout.)
#[test]
fn candle_ops_train_the_fused_kernels_model() {
    let mut w = World::new(60, 80, 12, 4, 31);
    w.catalog.reference_time = Some(1_000 + 60 * 12);
    let users = nn::UserFeatures {
        cardinalities: vec![3, 4],
        categorical: (0..80)
            .map(|u| match u % 9 {
                0 => Vec::new(),
                _ => vec![(u % 3) as u32, (u % 4) as u32],
            })
            .collect(),
        num_numeric: 1,
        numeric: (0..80).map(|u| vec![(u % 10) as f32 / 10.0]).collect(),
    };
    let data = TrainingSet {
        user_features: Some(&users),
        ..w.data()
    };
    let cfg = TwoTowerConfig {
        epochs: 2,
        id_dropout: 0.2,
        dropout: 0.1,
        temperature: 0.5,
        ..small()
    };
    let train = |compute: &nn::Compute| TwoTower::train_with(compute, &cfg, &data, None, |_| {});
    let (fused, r1) = train(&nn::Compute::FusedCpu).unwrap();
    let (candle, r2) = train(&nn::Compute::Candle(Device::Cpu)).unwrap();
    let untrained = TwoTower::warm_started(&cfg, &data, None, &Device::Cpu).unwrap();
    let flat = |m: &TwoTower| {
        m.item_table()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (t0, t1, t2) = (flat(&untrained), flat(&fused), flat(&candle));
    let largest_difference = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let moved = largest_difference(&t0, &t1);
    assert!(moved > 0.05, "training moved the item table by {moved}");
    let centred = |t: &[f32]| {
        let width = cfg.dim + 1;
        let items = (t.len() / width) as f32;
        let mean: Vec<f32> = (0..width)
            .map(|c| t.iter().skip(c).step_by(width).sum::<f32>() / items)
            .collect();
        let off = |(k, x): (usize, &f32)| x - mean[k % width];
        t.iter().enumerate().map(off).collect::<Vec<f32>>()
    };
    let scale = 1.0 + t1.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = largest_difference(&centred(&t1), &centred(&t2));
    assert!(worst < 1e-4 * scale, "item tables differ by {worst}");
    let loss = |r: &nn::trainer::TrainReport| r.epochs.last().map(|e| e.loss).unwrap();
    assert!((loss(&r1) - loss(&r2)).abs() < 1e-4 * loss(&r1).abs().max(1.0));
    let queries: Vec<UserQuery> = w
        .validation
        .iter()
        .take(20)
        .map(|c| c.query(Some(&users)))
        .collect();
    let (u1, u2) = (
        fused.user_vectors(&queries).unwrap(),
        candle.user_vectors(&queries).unwrap(),
    );
    let worst = largest_difference(&u1, &u2);
    assert!(worst < 1e-4 * scale, "user vectors differ by {worst}");
    assert!(candle.item_table().device().is_cpu());
}
