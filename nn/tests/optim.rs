//! The in-place AdamW against candle_nn::AdamW, with the fused CPU kernels and with the
//! candle-op update a GPU runs (here on the CPU).

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use nn::compute::Compute;
use nn::{AdamWParams, InPlaceAdamW};

const PARAMS: AdamWParams = AdamWParams {
    lr: 0.05,
    beta1: 0.9,
    beta2: 0.99,
    eps: 1e-8,
    weight_decay: 0.1,
};

fn candle_params() -> ParamsAdamW {
    ParamsAdamW {
        lr: PARAMS.lr,
        beta1: PARAMS.beta1,
        beta2: PARAMS.beta2,
        eps: PARAMS.eps,
        weight_decay: PARAMS.weight_decay,
    }
}

fn var(values: &[f32], shape: (usize, usize)) -> Var {
    Var::from_tensor(&Tensor::from_slice(values, shape, &Device::Cpu).unwrap()).unwrap()
}

/// A loss with different gradients per element: sum((w * c)^2) + sum(w^3) / 3.
fn loss(w: &Var) -> Tensor {
    let n = w.elem_count();
    let c: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.25).collect();
    let c = Tensor::from_vec(c, w.shape(), &Device::Cpu).unwrap();
    let a = (w.as_tensor() * &c)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let b = (w.as_tensor().powf(3.0).unwrap() / 3.0)
        .unwrap()
        .sum_all()
        .unwrap();
    (a + b).unwrap()
}

fn values(w: &Var) -> Vec<f32> {
    w.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}

const INIT: [f32; 6] = [0.3, -1.2, 2.0, 0.0, -0.4, 1.1];

fn both_ways() -> [Compute; 2] {
    [Compute::FusedCpu, Compute::Candle(Device::Cpu)]
}

#[test]
fn dense_update_matches_candle_adamw() {
    for compute in both_ways() {
        dense_update_matches(&compute);
    }
}

fn dense_update_matches(compute: &Compute) {
    let ours = var(&INIT, (2, 3));
    let theirs = var(&INIT, (2, 3));
    let mut opt = InPlaceAdamW::for_compute(compute, vec![ours.clone()], vec![], PARAMS).unwrap();
    let mut reference = AdamW::new(vec![theirs.clone()], candle_params()).unwrap();
    for _ in 0..20 {
        opt.step(&loss(&ours).backward().unwrap()).unwrap();
        reference.step(&loss(&theirs).backward().unwrap()).unwrap();
    }
    let (a, b) = (values(&ours), values(&theirs));
    assert_ne!(a, INIT.to_vec(), "the variable moved");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{}: {a:?} vs {b:?}", compute.name());
    }
}

#[test]
fn sparse_update_matches_candle_on_touched_rows_and_skips_the_rest() {
    for compute in both_ways() {
        sparse_update_matches(&compute);
    }
}

fn sparse_update_matches(compute: &Compute) {
    // A 3 x 2 table; rows 0 and 2 get the loss gradient every step, row 1 never.
    let table = var(&INIT, (3, 2));
    let reference = var(&[INIT[0], INIT[1], INIT[4], INIT[5]], (2, 2));
    let mut opt =
        InPlaceAdamW::for_compute(compute, vec![], vec![(table.clone(), 2)], PARAMS).unwrap();
    let mut candle_opt = AdamW::new(vec![reference.clone()], candle_params()).unwrap();
    for _ in 0..20 {
        let grads = loss(&reference).backward().unwrap();
        let g = grads
            .get(reference.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        opt.begin_step();
        opt.step_rows(0, &[0, 2], &g).unwrap();
        candle_opt.step(&grads).unwrap();
    }
    let (t, r) = (values(&table), values(&reference));
    for (x, y) in [t[0], t[1], t[4], t[5]].iter().zip(&r) {
        assert!((x - y).abs() < 1e-5, "{}: {t:?} vs {r:?}", compute.name());
    }
    assert_eq!(&t[2..4], &INIT[2..4], "an untouched row keeps its value");
    // Rows must be sorted and unique.
    opt.begin_step();
    assert!(opt.step_rows(0, &[2, 0], &[0.0; 4]).is_err());
    assert!(opt.step_rows(0, &[3], &[0.0; 2]).is_err());
}
