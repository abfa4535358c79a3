//! Unit tests: the GRU equations and their gradients, causality, padding invariance,
//! save/load, warm start, validation, the sampled path.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use nn::rng::Rng;
use nn::{Catalog, Example, Retriever, TrainingSet, UserQuery, ValidationCase, WatchHistories};

use super::network::GruLayer;
use super::*;
use crate::warm::WarmStart;

fn small() -> Gru4RecConfig {
    Gru4RecConfig {
        dim: 16,
        hidden: 24,
        layers: 2,
        max_len: 20,
        init_std: 0.3,
        ..Gru4RecConfig::default()
    }
}

fn user_vector(model: &Gru4Rec, history: &[u32]) -> Vec<f32> {
    model
        .user_vectors(&[UserQuery::from_history(history)])
        .unwrap()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "{what}: max difference {worst}");
}

/// A layer from `input` features to `hidden` units in f64, its weights seeded N(0, 0.5²)
/// variables (input, bias, gates, candidate).
fn layer_f64(seed: u64, input: usize, hidden: usize) -> (GruLayer, Vec<(&'static str, Var)>) {
    let mut rng = Rng::new(seed);
    let mut var = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| 0.5 * rng.normal()).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    };
    let vars = vec![
        ("input", var(&[input, 3 * hidden])),
        ("bias", var(&[3 * hidden])),
        ("gates", var(&[hidden, 2 * hidden])),
        ("candidate", var(&[hidden, hidden])),
    ];
    let map: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_tensor().clone()))
        .collect();
    let vb = VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
    (GruLayer::new(vb, input, hidden).unwrap(), vars)
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2::<f64>().unwrap()
}

#[test]
fn the_layer_computes_the_gru_equations() {
    let (input, hidden) = (3, 2);
    let (layer, vars) = layer_f64(5, input, hidden);
    let w = rows(vars[0].1.as_tensor());
    let b = vars[1].1.as_tensor().to_vec1::<f64>().unwrap();
    let u = rows(vars[2].1.as_tensor());
    let uc = rows(vars[3].1.as_tensor());
    let xs: Vec<Vec<f64>> = vec![
        vec![9.0, -9.0, 9.0],
        vec![0.3, -1.2, 0.5],
        vec![1.0, 0.2, -0.7],
        vec![-0.4, 0.8, 0.1],
    ];
    let mask = [0.0, 1.0, 1.0, 1.0];
    let inputs: Vec<Tensor> = xs
        .iter()
        .map(|x| Tensor::from_vec(x.clone(), (1, input), &Device::Cpu).unwrap())
        .collect();
    let masks: Vec<Tensor> = mask
        .iter()
        .map(|&m| Tensor::from_vec(vec![m], (1, 1), &Device::Cpu).unwrap())
        .collect();
    let states = layer.run(&inputs, &masks).unwrap();
    // By hand: z = s(x W_z + h U_z + b_z), r = s(x W_r + h U_r + b_r),
    // c = tanh(x W_c + (r * h) U_c + b_c), h' = (1 - z) h + z c; a masked step keeps h.
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut h = vec![0.0; hidden];
    for (t, x) in xs.iter().enumerate() {
        let xw = |col: usize| b[col] + (0..input).map(|i| x[i] * w[i][col]).sum::<f64>();
        let hu = |col: usize| (0..hidden).map(|j| h[j] * u[j][col]).sum::<f64>();
        let z: Vec<f64> = (0..hidden).map(|k| sig(xw(k) + hu(k))).collect();
        let r: Vec<f64> = (0..hidden)
            .map(|k| sig(xw(hidden + k) + hu(hidden + k)))
            .collect();
        let c: Vec<f64> = (0..hidden)
            .map(|k| {
                let rh: f64 = (0..hidden).map(|j| r[j] * h[j] * uc[j][k]).sum();
                (xw(2 * hidden + k) + rh).tanh()
            })
            .collect();
        if mask[t] > 0.0 {
            h = (0..hidden)
                .map(|k| (1.0 - z[k]) * h[k] + z[k] * c[k])
                .collect();
        }
        let got = &rows(&states[t])[0];
        for k in 0..hidden {
            assert!((got[k] - h[k]).abs() < 1e-12, "step {t}: {got:?} vs {h:?}");
        }
    }
    // The padding step, whatever its input, left the initial state.
    assert_eq!(rows(&states[0])[0], vec![0.0; hidden]);
}

#[test]
fn the_layers_gradients_match_finite_differences() {
    let (input, hidden, batch, steps) = (3, 4, 2, 4);
    let (layer, vars) = layer_f64(7, input, hidden);
    let mut rng = Rng::new(3);
    let mut random = |n: usize, shape: (usize, usize)| {
        let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let inputs: Vec<Var> = (0..steps)
        .map(|_| Var::from_tensor(&random(batch * input, (batch, input))).unwrap())
        .collect();
    let readout: Vec<Tensor> = (0..steps)
        .map(|_| random(batch * hidden, (batch, hidden)))
        .collect();
    // Row 0 is padded at the first step (left padding), row 1 is real throughout.
    let masks: Vec<Tensor> = (0..steps)
        .map(|t| {
            let m = vec![if t == 0 { 0.0 } else { 1.0 }, 1.0];
            Tensor::from_vec(m, (batch, 1), &Device::Cpu).unwrap()
        })
        .collect();
    let loss = || -> f64 {
        let xs: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let states = layer.run(&xs, &masks).unwrap();
        let mut total = Tensor::zeros((), DType::F64, &Device::Cpu).unwrap();
        for (s, r) in states.iter().zip(&readout) {
            total = (total + (s * r).unwrap().sum_all().unwrap()).unwrap();
        }
        total.to_scalar::<f64>().unwrap()
    };
    let xs: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
    let states = layer.run(&xs, &masks).unwrap();
    let mut total = Tensor::zeros((), DType::F64, &Device::Cpu).unwrap();
    for (s, r) in states.iter().zip(&readout) {
        total = (total + (s * r).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = total.backward().unwrap();
    let mut checked = 0;
    let all = vars.iter().map(|(n, v)| (n.to_string(), v)).chain(
        inputs
            .iter()
            .enumerate()
            .map(|(t, v)| (format!("x_{t}"), v)),
    );
    for (name, var) in all {
        let analytic = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let shape = var.as_tensor().shape().clone();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let eps = 1e-6;
        for (k, &g) in analytic.iter().enumerate() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[k] += delta;
                var.set(&Tensor::from_vec(v, &shape, &Device::Cpu).unwrap())
                    .unwrap();
                loss()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            at(0.0);
            let err = (numeric - g).abs() / numeric.abs().max(g.abs()).max(1e-3);
            assert!(err < 1e-6, "{name}[{k}]: autograd {g} vs numeric {numeric}");
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        3 * 4 * 3 + 12 + 4 * 8 + 4 * 4 + steps * batch * input
    );
}

#[test]
fn outputs_never_see_the_future() {
    let model = Gru4Rec::untrained(&small(), 50).unwrap();
    let history = [3u32, 7, 1, 9];
    let longer = [3u32, 7, 1, 9, 12, 5, 30];
    let outputs = model.position_outputs(&longer, longer.len()).unwrap();
    assert_eq!(outputs.len(), longer.len());
    // Appending items after the last position leaves every prefix's user vector as it was.
    for k in 1..=longer.len() {
        let u = user_vector(&model, &longer[..k]);
        assert_close(&u, &outputs[k - 1], &format!("prefix {k}"));
    }
    assert_close(
        &user_vector(&model, &history),
        &outputs[history.len() - 1],
        "history",
    );
    // And the outputs depend on the history and its order (the check is not vacuous).
    for other in [[3u32, 7, 2, 9], [7, 3, 1, 9]] {
        let u = user_vector(&model, &other);
        assert!(outputs[3].iter().zip(&u).any(|(x, y)| (x - y).abs() > 1e-3));
    }
}

#[test]
fn padding_never_changes_an_output_or_a_score() {
    let model = Gru4Rec::untrained(&small(), 50).unwrap();
    let history = [3u32, 7, 1, 9, 22];
    let tight = model.position_outputs(&history, 5).unwrap();
    for padded in [10, 20, 40] {
        let padded_out = model.position_outputs(&history, padded).unwrap();
        for (k, (a, b)) in tight.iter().zip(&padded_out).enumerate() {
            assert_close(a, b, &format!("padded to {padded}, slot {k}"));
        }
    }
    // In a batch with a longer history (more padding for the short one): same vector and
    // same scores over the catalogue.
    let alone = user_vector(&model, &history);
    let long: Vec<u32> = (10..30).collect();
    let queries = [
        UserQuery::from_history(&long),
        UserQuery::from_history(&history),
    ];
    let both = model.user_vectors(&queries).unwrap();
    assert_close(&alone, &both[16..], "batched with a longer history");
    let scores = model.score_all(&queries).unwrap();
    let own = model
        .score_all(&[UserQuery::from_history(&history)])
        .unwrap();
    assert_close(&own, &scores[50..], "scores batched with a longer history");
    // Padding slots read item 0's row; changing it changes nothing for a history without it.
    let table = model.network.items.var();
    let mut w = table.as_tensor().to_vec2::<f32>().unwrap();
    w[0][..16].iter_mut().for_each(|x| *x = 100.0);
    table.set(&Tensor::new(w, &Device::Cpu).unwrap()).unwrap();
    assert_close(&alone, &user_vector(&model, &history), "item 0 changed");
}

#[test]
fn long_histories_use_their_last_max_len_items_and_empty_ones_give_zero() {
    let model = Gru4Rec::untrained(&small(), 50).unwrap();
    let long: Vec<u32> = (0..45).collect();
    assert_close(
        &user_vector(&model, &long),
        &user_vector(&model, &long[25..]),
        "last 20",
    );
    assert!(user_vector(&model, &[]).iter().all(|&x| x == 0.0));
    assert!(model
        .user_vectors(&[UserQuery::from_history(&[50])])
        .is_err());
}

#[test]
fn save_load_round_trip_gives_identical_vectors() {
    let model = Gru4Rec::untrained(&small(), 50).unwrap();
    let dir = std::env::temp_dir().join(format!("gru4rec-unit-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = crate::load(&dir).unwrap();
    assert_eq!(loaded.kind(), KIND);
    let h = [4u32, 8, 15, 16, 23, 42];
    let q = [UserQuery::from_history(&h)];
    assert_eq!(
        model.user_vectors(&q).unwrap(),
        loaded.user_vectors(&q).unwrap()
    );
    assert_eq!(
        model.item_vectors().unwrap(),
        loaded.item_vectors().unwrap()
    );
    // Two layers and the projection (hidden 24 -> dim 16) were saved.
    let names: Vec<String> = model.weights().unwrap().into_keys().collect();
    for name in ["gru.1.candidate", "projection.weight", "items.weight"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validate_names_the_key() {
    assert!(Gru4RecConfig::default().validate().is_ok());
    let cases = [
        (
            Gru4RecConfig {
                hidden: 0,
                ..Gru4RecConfig::default()
            },
            "hidden",
        ),
        (
            Gru4RecConfig {
                layers: 0,
                ..Gru4RecConfig::default()
            },
            "layers",
        ),
        (
            Gru4RecConfig {
                dropout: 1.0,
                ..Gru4RecConfig::default()
            },
            "dropout",
        ),
        (
            Gru4RecConfig {
                learning_rate: f64::NAN,
                ..Gru4RecConfig::default()
            },
            "learning_rate",
        ),
        (
            Gru4RecConfig {
                weight_decay: -1.0,
                ..Gru4RecConfig::default()
            },
            "weight_decay",
        ),
    ];
    for (cfg, key) in cases {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("[retrieval.gru4rec]") && err.contains(key) && !err.contains('\n'),
            "{err}"
        );
    }
    let parsed: std::result::Result<Gru4RecConfig, _> = serde_json::from_str(r#"{"hiden": 3}"#);
    assert!(parsed.is_err());
}

/// Item i is followed by i + 1 (mod 30); 40 users of 12 watches.
fn successor_world() -> (Catalog, WatchHistories, Vec<Example>, Vec<ValidationCase>) {
    let items = 30u32;
    let sequences: Vec<Vec<(u32, i64)>> = (0..40u32)
        .map(|u| (0..12).map(|k| ((u + k) % items, k as i64)).collect())
        .collect();
    let histories = WatchHistories::from_sequences(&sequences);
    let examples: Vec<Example> = (0..40u32)
        .flat_map(|user| (1..12u32).map(move |pos| Example { user, pos }))
        .collect();
    let validation: Vec<ValidationCase> = (0..40u32)
        .map(|u| {
            let h = histories.user_items(u as usize).to_vec();
            ValidationCase {
                user: u,
                target: (u + 12) % items,
                exclude: h.clone(),
                history: h,
            }
        })
        .collect();
    (
        Catalog::without_tokens(items as usize),
        histories,
        examples,
        validation,
    )
}

#[test]
fn the_sampled_softmax_path_trains_the_item_rows_sparsely() {
    let (catalog, histories, examples, validation) = successor_world();
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &validation,
    };
    let cfg = Gru4RecConfig {
        dim: 16,
        hidden: 16,
        max_len: 8,
        full_softmax_max_items: 0,
        num_negatives: 16,
        batch_size: 16,
        epochs: 30,
        patience: 0,
        learning_rate: 1e-2,
        dropout: 0.1,
        ..Gru4RecConfig::default()
    };
    let (model, report) = Gru4Rec::train(&cfg, &data, None, |_| {}).unwrap();
    let first = report.epochs[0].loss;
    let last = report.epochs.last().unwrap().loss;
    let hr = report.best_validation.unwrap();
    assert!(last < first, "loss {first} -> {last}");
    assert!(hr > 0.5, "sampled-softmax validation HR@10 {hr}");
    assert!(model.user_vectors(&[validation[0].query(None)]).is_ok());
}

#[test]
fn warm_start_keeps_known_items_rows_and_starts_new_items_fresh() {
    let (catalog, histories, examples, validation) = successor_world();
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &validation,
    };
    let cfg = Gru4RecConfig {
        dim: 8,
        hidden: 8,
        max_len: 8,
        epochs: 2,
        ..Gru4RecConfig::default()
    };
    let (old, _) = Gru4Rec::train(&cfg, &data, None, |_| {}).unwrap();
    // The new catalogue: item 0 is new, new item k > 0 is old item k - 1 (30 -> 31 items).
    let new_items = 31;
    let warm = WarmStart {
        weights: old.weights().unwrap(),
        items: (0..new_items as u32).map(|k| k.checked_sub(1)).collect(),
        ..WarmStart::default()
    };
    let shifted: Vec<Vec<(u32, i64)>> = (0..40u32)
        .map(|u| (0..12).map(|k| ((u + k) % 30 + 1, k as i64)).collect())
        .collect();
    let histories = WatchHistories::from_sequences(&shifted);
    let catalog = Catalog::without_tokens(new_items);
    let tiny_step = Gru4RecConfig {
        epochs: 1,
        learning_rate: 1e-9,
        ..cfg.clone()
    };
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &[],
    };
    let (new, _) = Gru4Rec::train(&tiny_step, &data, Some(&warm), |_| {}).unwrap();
    let fresh = Gru4Rec::untrained(&tiny_step, new_items).unwrap();
    let table = |m: &Gru4Rec| m.item_table().to_vec2::<f32>().unwrap();
    let (old_t, new_t, fresh_t) = (table(&old), table(&new), table(&fresh));
    assert_close(&new_t[0], &fresh_t[0], "the new item starts fresh");
    for k in 1..new_items {
        assert_close(&new_t[k], &old_t[k - 1], &format!("item {k} kept its row"));
    }
    let w = |m: &Gru4Rec| {
        m.weights().unwrap()["gru.0.gates"]
            .to_vec2::<f32>()
            .unwrap()
    };
    assert_close(&w(&new).concat(), &w(&old).concat(), "the GRU was copied");
}
