//! Unit tests of the parent module.

use super::*;
use nn::rating::rmse;

/// Two user groups with opposite tastes over two item groups, ratings 1..5.
fn grouped(users: usize, items: usize) -> (Ratings, Ratings) {
    let mut rng = Rng::new(9);
    let (mut train, mut valid) = (Ratings::default(), Ratings::default());
    for u in 0..users {
        for i in 0..items {
            if rng.uniform() < 0.5 {
                let likes = (u % 2) == (i % 2);
                let r = if likes { 5.0 } else { 1.0 } - f32::from(rng.uniform() < 0.2);
                let part = if rng.uniform() < 0.8 {
                    &mut train
                } else {
                    &mut valid
                };
                part.users.push(u as u32);
                part.items.push(i as u32);
                part.values.push(r.max(1.0));
            }
        }
    }
    (train, valid)
}

#[test]
fn learns_group_tastes_far_below_the_mean() {
    let (train, valid) = grouped(60, 40);
    let cfg = RbmConfig {
        hidden: 8,
        batch_size: 10,
        epochs: 30,
        patience: 0,
        cd_stage_epochs: 10,
        ..RbmConfig::default()
    };
    let (model, report) = Rbm::train(&cfg, 60, 40, &train, &valid, |_| {}).unwrap();
    let mean = rmse(&vec![train.mean() as f32; valid.len()], &valid.values);
    let fitted = report.best_validation.unwrap();
    assert!(fitted < 0.5 * mean, "RBM {fitted} vs mean {mean}");
    // Predictions are expectations over the levels: inside [1, 5].
    let p = model.predict(&valid.users, &valid.items).unwrap();
    assert!(p.iter().all(|&r| (1.0..=5.0).contains(&r)));
    assert!(model.predict(&[60], &[0]).is_err());
}

#[test]
fn the_cd_schedule_grows_and_continuous_ratings_are_refused() {
    let cfg = RbmConfig::default();
    let t: Vec<usize> = [1, 10, 11, 25, 31, 100]
        .iter()
        .map(|&e| cfg.gibbs_steps(e))
        .collect();
    assert_eq!(t, vec![1, 1, 3, 5, 9, 9]);
    let r = Ratings {
        users: vec![0; 30],
        items: (0..30).collect(),
        values: (0..30).map(|v| v as f32 * 0.1).collect(),
    };
    let err = Rbm::train(&cfg, 1, 30, &r, &Ratings::default(), |_| {})
        .err()
        .expect("refused");
    assert!(err.to_string().contains("distinct values"), "{err}");
}

/// The GPU code path (candle ops, here on the CPU) trains the CPU loop's model from the same
/// seed: the same batches and Gibbs chains (the same draws, in the same order), through CD-1
/// and CD-3, the same momentum updates in another arithmetic order.
#[test]
fn candle_ops_train_the_cpu_loops_model() {
    let (train, valid) = grouped(40, 30);
    let cfg = RbmConfig {
        hidden: 8,
        batch_size: 10,
        epochs: 6,
        patience: 0,
        cd_steps: vec![1, 3],
        cd_stage_epochs: 2,
        learning_rate: 0.1,
        ..RbmConfig::default()
    };
    let fit =
        |compute: &Compute| Rbm::train_with(compute, &cfg, 40, 30, &train, &valid, |_| {}).unwrap();
    let (cpu, r1) = fit(&Compute::FusedCpu);
    let (candle, r2) = fit(&Compute::Candle(candle_core::Device::Cpu));
    let (untrained, _) = Rbm::train_with(
        &Compute::FusedCpu,
        &RbmConfig {
            epochs: 0,
            ..cfg.clone()
        },
        40,
        30,
        &train,
        &valid,
        |_| {},
    )
    .unwrap();
    let largest = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let moved = largest(&cpu.params.w, &untrained.params.w);
    assert!(moved > 0.05, "training moved W by {moved}");
    for (what, a, b) in [
        ("W", &cpu.params.w, &candle.params.w),
        ("b", &cpu.params.b, &candle.params.b),
        ("c", &cpu.params.c, &candle.params.c),
    ] {
        let d = largest(a, b);
        assert!(d < 1e-4, "{what} differs by {d}");
    }
    let (p1, p2) = (
        cpu.predict(&valid.users, &valid.items).unwrap(),
        candle.predict(&valid.users, &valid.items).unwrap(),
    );
    assert!(largest(&p1, &p2) < 1e-4);
    let losses = |r: &TrainReport| r.epochs.iter().map(|e| e.loss).collect::<Vec<_>>();
    for (a, b) in losses(&r1).iter().zip(losses(&r2)) {
        assert!((a - b).abs() < 1e-4 * a.max(1.0), "losses {a} vs {b}");
    }
}
