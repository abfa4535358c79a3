//! Unit tests of the parent module.

use super::*;
use nn::data::ValidationCase;
use nn::rating::rmse;
use nn::rng::Rng;

fn small() -> NcfConfig {
    NcfConfig {
        dim: 4,
        mlp_layers: vec![8, 4],
        l2: Some(0.001),
        batch_size: 32,
        epochs: 30,
        patience: 0,
        learning_rate: Some(0.02),
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
    let (train, valid) = crate::testdata::low_rank_ratings(40, 30, 0.0, 11);
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
    let (train, valid) = crate::testdata::low_rank_ratings(60, 50, 0.0, 11);
    let mean = rmse(&vec![train.mean() as f32; valid.len()], &valid.values);
    for kind in [NcfKind::Mf, NcfKind::Gmf, NcfKind::Mlp, NcfKind::NeuMf] {
        let cfg = NcfConfig {
            mlp_layers: vec![32, 16, 8],
            epochs: 60,
            ..small()
        };
        let (_, report) = Ncf::train(kind, &cfg, 60, 50, &train, &valid, |_| {}).unwrap();
        let fitted = report.best_validation.unwrap();
        eprintln!("{}: {fitted} vs mean {mean}", kind.name());
        // The ratings are a dot product: every model with a product term fits them almost
        // exactly (measured 0.02-0.03 of the mean's 1.06), the MLP alone only approximates it
        // (0.81), the finding of Rendle et al. (RecSys 2020) in miniature.
        let ceiling = if kind == NcfKind::Mlp { 0.85 } else { 0.1 };
        assert!(
            fitted < ceiling * mean,
            "{}: {fitted} vs mean {mean}",
            kind.name()
        );
    }
}

#[test]
fn mf_keeps_unit_output_weights_while_gmf_learns_them() {
    let (train, valid) = crate::testdata::low_rank_ratings(40, 30, 0.0, 11);
    let cfg = NcfConfig {
        epochs: 5,
        ..small()
    };
    let (mf, _) = Ncf::train(NcfKind::Mf, &cfg, 40, 30, &train, &valid, |_| {}).unwrap();
    assert_eq!(mf.gmf_output().unwrap().unwrap(), vec![1.0; 4]);
    assert_eq!(mf.kind(), "mf");
    let (gmf, _) = Ncf::train(NcfKind::Gmf, &cfg, 40, 30, &train, &valid, |_| {}).unwrap();
    let h = gmf.gmf_output().unwrap().unwrap();
    assert!(
        h.iter().any(|&x| (x - 1.0).abs() > 1e-3),
        "GMF's h trains: {h:?}"
    );
    // The MF model's scores are GMF's with h = 1 on the same tables.
    let copy = Ncf::from_weights(
        NcfKind::Gmf,
        &cfg,
        40,
        30,
        mf.mean,
        false,
        &mf.weights().unwrap(),
    )
    .unwrap();
    let a = mf.predict(&valid.users, &valid.items).unwrap();
    let b = copy.predict(&valid.users, &valid.items).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
}

/// Implicit feedback from 4 taste groups: a user interacts with 12 of the 15 items of their
/// group (and one random other item); the next interaction is one of the 3 left.
fn implicit_groups(users: usize) -> (Vec<Vec<u32>>, Vec<ValidationCase>) {
    let mut rng = Rng::new(5);
    let (groups, per_group) = (4, 15);
    let mut seen = Vec::new();
    let mut cases = Vec::new();
    for u in 0..users {
        let g = u % groups;
        let mut items: Vec<u32> = (0..per_group).map(|k| (g * per_group + k) as u32).collect();
        for k in (1..items.len()).rev() {
            items.swap(k, rng.below(k + 1));
        }
        let target = items[12];
        let mut mine = items[..12].to_vec();
        mine.push(rng.below(groups * per_group) as u32);
        mine.sort_unstable();
        mine.dedup();
        cases.push(ValidationCase {
            user: u as u32,
            history: mine.clone(),
            target,
            exclude: mine.clone(),
        });
        seen.push(mine);
    }
    (seen, cases)
}

#[test]
fn implicit_log_loss_learns_the_taste_groups() {
    let (seen, cases) = implicit_groups(80);
    let data = Implicit {
        seen: &seen,
        num_items: 60,
        validation: &cases,
    };
    // Random ranking puts the target in the top 10 of ~48 unseen items about 21% of the time;
    // the group's 3 unseen items are what a model that learned the groups ranks first.
    for kind in [NcfKind::Gmf, NcfKind::Mlp, NcfKind::NeuMf] {
        let cfg = NcfConfig {
            dim: 8,
            mlp_layers: vec![16, 8],
            batch_size: 32,
            epochs: 80,
            patience: 0,
            learning_rate: Some(0.01),
            ..NcfConfig::default()
        };
        let (model, report) = Ncf::train_implicit(kind, &cfg, &data, |_| {}).unwrap();
        let hr = report.best_validation.unwrap();
        eprintln!("{}: HR@10 {hr}", kind.name());
        assert!(hr > 0.8, "{}: HR@10 {hr}", kind.name());
        assert_eq!(model.hit_rate_at_10(&cases).unwrap(), Some(hr));
        // Outputs are logits: a group item outscores an item of another group.
        let s = model.score_catalogue(&[0]).unwrap();
        assert_eq!(s.len(), 60);
    }
}

#[test]
fn implicit_training_refuses_bad_data() {
    let (seen, cases) = implicit_groups(8);
    let cfg = NcfConfig::default();
    let unsorted = vec![vec![3, 1]; 8];
    let everything = vec![(0..60).collect::<Vec<u32>>(); 8];
    for bad in [&unsorted, &everything] {
        let data = Implicit {
            seen: bad,
            num_items: 60,
            validation: &cases,
        };
        assert!(Ncf::train_implicit(NcfKind::Gmf, &cfg, &data, |_| {}).is_err());
    }
    let data = Implicit {
        seen: &seen,
        num_items: 10,
        validation: &cases,
    };
    assert!(Ncf::train_implicit(NcfKind::Gmf, &cfg, &data, |_| {}).is_err());
}

/// The GPU code path (candle ops, what `device = "cuda:N"` runs, here on the CPU) trains the
/// same models as the fused kernels from the same seed: on ratings (NeuMF with pre-training,
/// so that the move to the device and back happens three times) and on implicit feedback.
#[test]
fn candle_ops_train_the_fused_kernels_ncf_models() {
    let candle = NcfConfig {
        compute: nn::Compute::Candle(candle_core::Device::Cpu),
        ..small()
    };
    let short = |c: &NcfConfig| NcfConfig {
        epochs: 3,
        ..c.clone()
    };
    let close = |a: &[f32], b: &[f32]| {
        let scale = 1.0 + a.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4 * scale)
    };
    let (train, valid) = crate::testdata::low_rank_ratings(40, 30, 0.0, 12);
    for kind in [NcfKind::Mf, NcfKind::Gmf, NcfKind::Mlp, NcfKind::NeuMf] {
        let fit = |c: &NcfConfig| {
            Ncf::train(kind, c, 40, 30, &train, &valid, |_| {})
                .unwrap()
                .0
        };
        let (a, b) = (fit(&short(&small())), fit(&short(&candle)));
        assert!(
            b.users().var().as_tensor().device().is_cpu(),
            "back in host memory"
        );
        let (pa, pb) = (
            a.predict(&valid.users, &valid.items).unwrap(),
            b.predict(&valid.users, &valid.items).unwrap(),
        );
        assert!(
            close(&pa, &pb),
            "{}: {:?} vs {:?}",
            kind.name(),
            &pa[..3],
            &pb[..3]
        );
    }
    let (seen, cases) = implicit_groups(40);
    let data = Implicit {
        seen: &seen,
        num_items: 60,
        validation: &cases,
    };
    for kind in [NcfKind::Gmf, NcfKind::NeuMf] {
        let fit = |c: &NcfConfig| Ncf::train_implicit(kind, c, &data, |_| {}).unwrap().0;
        let (a, b) = (fit(&short(&small())), fit(&short(&candle)));
        let users: Vec<u32> = (0..10).collect();
        let (sa, sb) = (
            a.score_catalogue(&users).unwrap(),
            b.score_catalogue(&users).unwrap(),
        );
        assert!(close(&sa, &sb), "{} on implicit feedback", kind.name());
    }
}
