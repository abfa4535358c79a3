//! Unit tests of the parent module.

use super::*;
use nn::rating::rmse;
use nn::rng::Rng;

/// Ratings from hidden rank-2 tastes: r = 3 + x_u . y_i, half observed, 80/20 split.
fn synthetic(users: usize, items: usize) -> (Ratings, Ratings) {
    let mut rng = Rng::new(11);
    let x: Vec<[f32; 2]> = (0..users)
        .map(|_| [rng.normal() as f32, rng.normal() as f32])
        .collect();
    let y: Vec<[f32; 2]> = (0..items)
        .map(|_| [rng.normal() as f32, rng.normal() as f32])
        .collect();
    let (mut train, mut valid) = (Ratings::default(), Ratings::default());
    for (u, xu) in x.iter().enumerate() {
        for (i, yi) in y.iter().enumerate() {
            if rng.uniform() < 0.5 {
                let part = if rng.uniform() < 0.8 {
                    &mut train
                } else {
                    &mut valid
                };
                part.users.push(u as u32);
                part.items.push(i as u32);
                part.values.push(3.0 + xu[0] * yi[0] + xu[1] * yi[1]);
            }
        }
    }
    (train, valid)
}

fn small() -> NcfConfig {
    NcfConfig {
        dim: 4,
        mlp_layers: vec![8, 4],
        l2: 0.001,
        batch_size: 32,
        epochs: 30,
        patience: 0,
        learning_rate: 0.02,
        ..NcfConfig::default()
    }
}

#[test]
fn gmf_with_unit_output_weights_is_biased_mf() {
    let model = Ncf::new(NcfKind::Gmf, &small(), 5, 6, 3.5).unwrap();
    model.set_gmf_output(&[1.0; 4]).unwrap();
    let (users, items): (Vec<u32>, Vec<u32>) =
        (0..5).flat_map(|u| (0..6).map(move |i| (u, i))).unzip();
    let got = model.predict(&users, &items).unwrap();
    let p: Vec<Vec<f32>> = model.users.var().as_tensor().to_vec2().unwrap();
    let q: Vec<Vec<f32>> = model.items.var().as_tensor().to_vec2().unwrap();
    for ((&u, &i), g) in users.iter().zip(&items).zip(&got) {
        let (p, q) = (&p[u as usize], &q[i as usize]);
        // Biased MF, Koren et al. 2009 eq. 4: mu + b_u + b_i + p_u . q_i.
        let dot: f32 = p[..4].iter().zip(&q[..4]).map(|(a, b)| a * b).sum();
        let mf = 3.5 + p[4] + q[4] + dot;
        assert!((g - mf).abs() < 1e-5, "({u}, {i}): GMF {g} vs MF {mf}");
    }
    // Other output weights are another model.
    model.set_gmf_output(&[2.0; 4]).unwrap();
    let other = model.predict(&users, &items).unwrap();
    assert!(other.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-4));
}

#[test]
fn neumf_with_alpha_one_scores_as_its_gmf_part() {
    let (train, valid) = synthetic(40, 30);
    let cfg = NcfConfig {
        epochs: 3,
        ..small()
    };
    let (gmf, _) = Ncf::train(NcfKind::Gmf, &cfg, 40, 30, &train, &valid, |_| {}).unwrap();
    let (mlp, _) = Ncf::train(NcfKind::Mlp, &cfg, 40, 30, &train, &valid, |_| {}).unwrap();
    let fused = Ncf::fuse(&gmf, &mlp, 1.0).unwrap();
    let a = gmf.predict(&valid.users, &valid.items).unwrap();
    let b = fused.predict(&valid.users, &valid.items).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    // With alpha = 0.5 the MLP part contributes.
    let half = Ncf::fuse(&gmf, &mlp, 0.5).unwrap();
    let c = half.predict(&valid.users, &valid.items).unwrap();
    assert!(a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 1e-4));
}

#[test]
fn every_variant_learns_low_rank_ratings_below_the_mean() {
    let (train, valid) = synthetic(60, 50);
    let mean = rmse(&vec![train.mean() as f32; valid.len()], &valid.values);
    for kind in [NcfKind::Gmf, NcfKind::Mlp, NcfKind::NeuMf] {
        let cfg = NcfConfig {
            mlp_layers: vec![32, 16, 8],
            epochs: 60,
            ..small()
        };
        let (_, report) = Ncf::train(kind, &cfg, 60, 50, &train, &valid, |_| {}).unwrap();
        let fitted = report.best_validation.unwrap();
        eprintln!("{}: {fitted} vs mean {mean}", kind.name());
        assert!(
            fitted < 0.7 * mean,
            "{}: {fitted} vs mean {mean}",
            kind.name()
        );
    }
}
