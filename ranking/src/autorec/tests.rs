//! Unit tests of the parent module.

use super::*;
use candle_core::Var;
use nn::rating::rmse;

/// A hand-made 3 x 4 matrix: rows are items, columns users, 0 = unobserved.
const R: [[f32; 4]; 3] = [
    [5.0, 0.0, 3.0, 0.0],
    [0.0, 4.0, 0.0, 0.0],
    [1.0, 0.0, 0.0, 0.0],
];

fn tensors() -> (Tensor, Tensor) {
    let flat: Vec<f32> = R.iter().flatten().copied().collect();
    let mask: Vec<f32> = flat.iter().map(|&r| f32::from(r != 0.0)).collect();
    (
        Tensor::from_vec(flat, (3, 4), &Device::Cpu).unwrap(),
        Tensor::from_vec(mask, (3, 4), &Device::Cpu).unwrap(),
    )
}

#[test]
fn masked_loss_gradient_is_zero_on_unobserved_entries() {
    let (r, mask) = tensors();
    // Output h = 2 everywhere: dL/dh_kj = 2 (h - r) m / 3 rows, by hand.
    let h = Var::from_tensor(&Tensor::full(2f32, (3, 4), &Device::Cpu).unwrap()).unwrap();
    let loss = reconstruction_loss(h.as_tensor(), &r, &mask).unwrap();
    // (2-5)^2 + (2-3)^2 + (2-4)^2 + (2-1)^2 = 15, over 3 rows.
    assert!((loss.to_scalar::<f32>().unwrap() - 5.0).abs() < 1e-6);
    let grads = loss.backward().unwrap();
    let g: Vec<Vec<f32>> = grads.get(h.as_tensor()).unwrap().to_vec2().unwrap();
    let want = [
        [-2.0, 0.0, -2.0 / 3.0, 0.0],
        [0.0, -4.0 / 3.0, 0.0, 0.0],
        [2.0 / 3.0, 0.0, 0.0, 0.0],
    ];
    for (k, row) in g.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            assert!((x - want[k][j]).abs() < 1e-6, "({k}, {j}): {x}");
            if R[k][j] == 0.0 {
                assert_eq!(x, 0.0, "unobserved ({k}, {j}) got a gradient");
            }
        }
    }
    // The ablation counts the missing entries as 0-ratings: they pull h towards 0.
    let all = mask.ones_like().unwrap();
    let loss = reconstruction_loss(h.as_tensor(), &r, &all).unwrap();
    let g: Vec<Vec<f32>> = loss
        .backward()
        .unwrap()
        .get(h.as_tensor())
        .unwrap()
        .to_vec2()
        .unwrap();
    assert!((g[0][1] - 4.0 / 3.0).abs() < 1e-6);
}

#[test]
fn the_network_gets_no_gradient_through_a_user_nobody_rated() {
    // Column 3 (user 3) is unobserved in every row: the decoder's row and bias for it get
    // exactly zero gradient from the masked loss.
    let (r, mask) = tensors();
    let varmap = VarMap::new();
    let vb = SeededVarMap::new(varmap.clone(), 1).into_var_builder(&Device::Cpu);
    let enc = linear(vb.pp("encoder"), 4, 3).unwrap();
    let dec = linear(vb.pp("decoder"), 3, 4).unwrap();
    let h = enc.forward(&r).unwrap();
    let h = candle_nn::ops::sigmoid(&h).unwrap();
    let out = dec.forward(&h).unwrap();
    let loss = reconstruction_loss(&out, &r, &mask).unwrap();
    let grads = loss.backward().unwrap();
    let gw: Vec<Vec<f32>> = grads.get(dec.weight()).unwrap().to_vec2().unwrap();
    let gb: Vec<f32> = grads.get(dec.bias().unwrap()).unwrap().to_vec1().unwrap();
    assert_eq!(gw[3], vec![0.0; 3]);
    assert_eq!(gb[3], 0.0);
    assert!(gb[0] != 0.0 && gw[0].iter().any(|&x| x != 0.0));
}

#[test]
fn i_autorec_learns_ratings_below_the_mean_and_the_mask_matters() {
    let (train, valid) = crate::testdata::low_rank_ratings(80, 60, 0.0, 5);
    let cfg = AutoRecConfig {
        hidden: 20,
        l2: 0.01,
        batch_size: 8,
        epochs: 80,
        patience: 0,
        learning_rate: 0.01,
        ..AutoRecConfig::default()
    };
    let fit = |c: &AutoRecConfig| {
        AutoRec::train(Side::Item, c, 80, 60, &train, &valid, |_| {})
            .unwrap()
            .1
            .best_validation
            .unwrap()
    };
    let masked = fit(&cfg);
    let mean = rmse(&vec![train.mean() as f32; valid.len()], &valid.values);
    assert!(masked < 0.7 * mean, "AutoRec {masked} vs mean {mean}");
    // Missing = 0 in the loss drags predictions towards 0: far worse.
    let ablation = fit(&AutoRecConfig {
        unobserved_in_loss: true,
        ..cfg
    });
    assert!(
        ablation > 1.5 * masked,
        "ablation {ablation} vs masked {masked}"
    );
}

/// The GPU code path (candle ops, what `device = "cuda:N"` runs, here on the CPU) trains the
/// same I-AutoRec and U-AutoRec as the fused kernels from the same seed (with a pair rated
/// twice, which both keep at its last rating); the model comes back in host memory, and the
/// device's scoring gives the same predictions.
#[test]
fn candle_ops_train_the_fused_kernels_autorec() {
    let (mut train, valid) = crate::testdata::low_rank_ratings(40, 30, 0.0, 5);
    train.users.push(train.users[0]);
    train.items.push(train.items[0]);
    train.values.push(1.0);
    let fused = AutoRecConfig {
        hidden: 8,
        l2: 0.01,
        batch_size: 8,
        epochs: 3,
        patience: 0,
        learning_rate: 0.01,
        ..AutoRecConfig::default()
    };
    let candle = AutoRecConfig {
        compute: nn::Compute::Candle(Device::Cpu),
        ..fused.clone()
    };
    let close = |a: &[f32], b: &[f32]| {
        let scale = 1.0 + a.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4 * scale)
    };
    for side in [Side::Item, Side::User] {
        let fit = |c: &AutoRecConfig| {
            AutoRec::train(side, c, 40, 30, &train, &valid, |_| {})
                .unwrap()
                .0
        };
        let (a, b) = (fit(&fused), fit(&candle));
        assert!(b.encoder.weight().device().is_cpu(), "host memory");
        let (pa, pb) = (
            a.predict(&valid.users, &valid.items).unwrap(),
            b.predict(&valid.users, &valid.items).unwrap(),
        );
        let kind = side.kind();
        assert!(close(&pa, &pb), "{kind}: {:?} vs {:?}", &pa[..3], &pb[..3]);
        // Training moved the weights off their start.
        let start = fit(&AutoRecConfig {
            epochs: 0,
            ..fused.clone()
        });
        let (w0, w1) = (
            start.decoder.weight().flatten_all().unwrap(),
            b.decoder.weight().flatten_all().unwrap(),
        );
        let moved = (w1 - w0).unwrap().abs().unwrap().max(0).unwrap();
        assert!(
            moved.to_scalar::<f32>().unwrap() > 1e-3,
            "{kind} did not train"
        );
        // The batches built from the observed entries equal the host's dense ones, and scoring
        // in candle ops (the model on a GPU) equals the host's.
        let rows: Vec<u32> = (0..b.rows as u32).collect();
        let host = b.inputs.dense(&rows, b.cols).unwrap();
        let device = b.inputs.dense_on(&rows, b.cols, &Device::Cpu).unwrap();
        for (h, d) in [(&host.0, &device.0), (&host.1, &device.1)] {
            let diff = (h - d).unwrap().abs().unwrap().sum_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{kind}");
        }
        let (rows, cols) = match side {
            Side::Item => (&valid.items, &valid.users),
            Side::User => (&valid.users, &valid.items),
        };
        let on_device = b.predict_pairs(rows, cols, false).unwrap();
        assert!(close(&pb, &on_device), "{kind}: scoring in candle ops");
    }
}
