//! The GPU code path: the YouTube network, MF, SASRec, GRU4Rec, the autoencoders and CFGAN
//! trained in candle ops (what `device = "cuda:N"` runs, here on the CPU) against the fused CPU
//! kernels, with the same seed (the two-tower model's test is among its unit tests). Same batches, same random draws, the same update in another
//! arithmetic order: the two models must agree to float rounding, not just in quality.

mod common;

use candle_core::Device;
use common::{sequence_data, tiny_config, SequenceData};
use nn::Compute;
use retrieval::autoencoder::AutoencoderSettings;
use retrieval::autorec::AutoRecConfig;
use retrieval::cdae::CdaeConfig;
use retrieval::cfgan::CfganConfig;
use retrieval::gru4rec::{Gru4Rec, Gru4RecConfig};
use retrieval::mult_dae::MultDaeConfig;
use retrieval::mult_vae::MultVaeConfig;
use retrieval::sasrec::{SasRec, SasRecConfig};
use retrieval::{Mf, MfConfig};
use retrieval::{
    RetrievalSettings, Retriever, TrainingSet, UserFeatures, YoutubeDnn, YoutubeDnnConfig,
};

fn features(users: usize) -> UserFeatures {
    UserFeatures {
        cardinalities: vec![3, 5],
        categorical: (0..users)
            .map(|u| {
                if u % 7 == 0 {
                    vec![] // unknown: empty bags
                } else {
                    vec![(u % 3) as u32, (u % 5) as u32]
                }
            })
            .collect(),
        num_numeric: 1,
        numeric: (0..users).map(|u| vec![(u % 10) as f32 / 10.0]).collect(),
    }
}

fn train(compute: &Compute, cfg: &YoutubeDnnConfig, data: &SequenceData) -> (YoutubeDnn, f64) {
    let users = features(data.validation.len());
    let set = TrainingSet {
        catalog: &data.catalog,
        histories: &data.train,
        examples: &data.examples,
        user_features: Some(&users),
        validation: &data.validation,
    };
    let (model, report) = YoutubeDnn::train_with(compute, cfg, &set, None, |_| {}).unwrap();
    let hr = report.epochs.last().and_then(|e| e.validation).unwrap();
    (model, hr)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Trains both ways and compares every item vector and bias, the validation HR@10, and the
/// user vectors the two models serve.
fn both_ways_agree(cfg: &YoutubeDnnConfig, data: &SequenceData) {
    let (fused, hr_fused) = train(&Compute::FusedCpu, cfg, data);
    let (candle, hr_candle) = train(&Compute::Candle(Device::Cpu), cfg, data);
    let (v1, b1) = fused.item_vectors().unwrap();
    let (v2, b2) = candle.item_vectors().unwrap();
    let moved = v1.iter().map(|x| x.abs()).fold(0.0, f32::max);
    assert!(
        moved > 0.05,
        "the model trained (largest coordinate {moved})"
    );
    let dv = max_difference(&v1, &v2);
    let db = max_difference(&b1, &b2);
    assert!(
        dv < 2e-3 && db < 2e-3,
        "item vectors differ by {dv}, biases by {db}"
    );
    assert!(
        (hr_fused - hr_candle).abs() <= 0.02,
        "HR@10 {hr_fused} vs {hr_candle}"
    );
    let queries: Vec<_> = data.test.iter().take(20).map(|c| c.query(None)).collect();
    let u1 = fused.user_vectors(&queries).unwrap();
    let u2 = candle.user_vectors(&queries).unwrap();
    let du = max_difference(&u1, &u2);
    assert!(du < 1e-4, "user vectors differ by {du}");
}

#[test]
fn candle_ops_train_the_fused_kernels_model_with_the_full_softmax() {
    let data = sequence_data(60, 120, 20, 0.9, 11);
    let cfg = YoutubeDnnConfig {
        epochs: 2,
        dropout: 0.1,
        history_dropout: 0.1,
        ..tiny_config()
    };
    assert!(data.catalog.num_items <= cfg.full_softmax_max_items);
    both_ways_agree(&cfg, &data);
}

#[test]
fn candle_ops_train_the_fused_kernels_model_with_the_sampled_softmax() {
    let data = sequence_data(200, 120, 20, 0.9, 12);
    let cfg = YoutubeDnnConfig {
        epochs: 2,
        full_softmax_max_items: 0,
        num_negatives: 48,
        dropout: 0.1,
        history_dropout: 0.1,
        ..tiny_config()
    };
    both_ways_agree(&cfg, &data);
}

/// The sequence models' training set: no user features.
fn sequence_set(data: &SequenceData) -> TrainingSet<'_> {
    TrainingSet {
        catalog: &data.catalog,
        histories: &data.train,
        examples: &data.examples,
        user_features: None,
        validation: &data.validation,
    }
}

/// Item vectors, biases and served user vectors of two models agree to `tol` relative to
/// their largest value.
fn same_model(
    a: &dyn Retriever<Error = retrieval::RetrievalError>,
    b: &dyn Retriever<Error = retrieval::RetrievalError>,
    data: &SequenceData,
    tol: f32,
) {
    let (v1, b1) = a.item_vectors().unwrap();
    let (v2, b2) = b.item_vectors().unwrap();
    let queries: Vec<_> = data.test.iter().take(20).map(|c| c.query(None)).collect();
    let (u1, u2) = (
        a.user_vectors(&queries).unwrap(),
        b.user_vectors(&queries).unwrap(),
    );
    for (what, x, y) in [
        ("item vectors", v1, v2),
        ("biases", b1, b2),
        ("user vectors", u1, u2),
    ] {
        // Relative to the largest value: SASRec's layer norms give user vectors up to about 3.
        let scale = 1.0 + x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_difference(&x, &y);
        assert!(
            d < tol * scale,
            "{what} differ by {d} (largest value {})",
            scale - 1.0
        );
    }
}

#[test]
fn candle_ops_train_the_fused_kernels_sasrec_and_gru4rec() {
    // 200 items: full softmax with the default threshold, sampled with 0.
    let data = sequence_data(200, 80, 16, 0.9, 13);
    let set = sequence_set(&data);
    let fused = Compute::FusedCpu;
    let candle = Compute::Candle(Device::Cpu);
    for full_softmax_max_items in [SasRecConfig::default().full_softmax_max_items, 0] {
        let cfg = SasRecConfig {
            dim: 16,
            max_len: 8,
            full_softmax_max_items,
            num_negatives: 16,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            learning_rate: 1e-2,
            dropout: 0.1,
            ..SasRecConfig::default()
        };
        let (a, _) = SasRec::train_with(&fused, &cfg, &set, None, |_| {}).unwrap();
        let (b, _) = SasRec::train_with(&candle, &cfg, &set, None, |_| {}).unwrap();
        same_model(&a, &b, &data, 1e-4);
        let cfg = Gru4RecConfig {
            dim: 16,
            hidden: 16,
            max_len: 8,
            full_softmax_max_items,
            num_negatives: 16,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            learning_rate: 1e-2,
            dropout: 0.1,
            ..Gru4RecConfig::default()
        };
        let (a, _) = Gru4Rec::train_with(&fused, &cfg, &set, None, |_| {}).unwrap();
        let (b, _) = Gru4Rec::train_with(&candle, &cfg, &set, None, |_| {}).unwrap();
        same_model(&a, &b, &data, 1e-4);
    }
}

#[test]
fn candle_ops_train_the_fused_kernels_mf() {
    let data = sequence_data(150, 80, 16, 0.9, 15);
    let set = sequence_set(&data);
    for full_softmax_max_items in [MfConfig::default().full_softmax_max_items, 0] {
        let cfg = MfConfig {
            dim: 16,
            epochs: 2,
            patience: 0,
            batch_size: 64,
            num_negatives: 32,
            full_softmax_max_items,
            ..MfConfig::default()
        };
        let (a, _) = Mf::train_with(&Compute::FusedCpu, &cfg, &set, None, |_| {}).unwrap();
        let (b, _) =
            Mf::train_with(&Compute::Candle(Device::Cpu), &cfg, &set, None, |_| {}).unwrap();
        same_model(&a, &b, &data, 1e-4);
    }
}

/// Trains an autoencoder both ways and compares the models.
fn autoencoder_both_ways(settings: &impl AutoencoderSettings, data: &SequenceData) {
    let set = sequence_set(data);
    let (a, _) = settings
        .train_with(&Compute::FusedCpu, &set, None, |_| {})
        .unwrap();
    let (b, _) = settings
        .train_with(&Compute::Candle(Device::Cpu), &set, None, |_| {})
        .unwrap();
    same_model(&a, &b, data, 1e-4);
}

#[test]
fn candle_ops_train_the_fused_kernels_autoencoders() {
    let data = sequence_data(150, 80, 16, 0.9, 14);
    autoencoder_both_ways(
        &MultVaeConfig {
            hidden: 32,
            latent: 8,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            ..MultVaeConfig::default()
        },
        &data,
    );
    autoencoder_both_ways(
        &MultDaeConfig {
            hidden: 32,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            ..MultDaeConfig::default()
        },
        &data,
    );
    // CDAE: the per-user node and the logistic objective with sampled negatives.
    autoencoder_both_ways(
        &CdaeConfig {
            hidden: 32,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            ..CdaeConfig::default()
        },
        &data,
    );
    // CFGAN: the generator against its discriminator.
    autoencoder_both_ways(
        &CfganConfig {
            hidden: 32,
            discriminator_hidden: 16,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            ..CfganConfig::default()
        },
        &data,
    );
    autoencoder_both_ways(
        &AutoRecConfig {
            hidden: 32,
            batch_size: 16,
            epochs: 2,
            patience: 0,
            ..AutoRecConfig::default()
        },
        &data,
    );
}

#[test]
fn a_gpu_is_refused_clearly_where_it_cannot_be_used() {
    let mut settings = RetrievalSettings {
        device: "cuda:0".into(),
        ..RetrievalSettings::default()
    };
    // A binary built without the `cuda` feature (the default build) says so.
    #[cfg(not(feature = "cuda"))]
    {
        let e = settings.compute().unwrap_err().to_string();
        assert!(e.contains("`cuda` feature"), "{e}");
    }
    settings.device = "tpu".into();
    let e = settings.compute().unwrap_err().to_string();
    assert!(e.contains("unknown device 'tpu'"), "{e}");
    settings.device = "cpu".into();
    assert!(settings.compute().unwrap().is_fused_cpu());
}
