//! Serving equals exact scoring for the autoencoders: the top-10 an HNSW index returns for
//! u = the model's user vector (seen items excluded) is the top-10 of the model's own output
//! layer (softmax, sigmoid or identity over the whole catalogue): same items, same order. The
//! same holds for GMF against its own pair logits b_u + b_i + h^T (p_u . q_i).

mod common;

use common::check;
use nn::Retriever;
use retrieval::autoencoder::AutoencoderSettings;
use retrieval::{
    autorec, cdae, cfgan, gmf, mult_dae, mult_vae, Catalog, Example, TrainingSet, UserQuery,
    ValidationCase, WatchHistories,
};

/// 240 users in 4 taste groups over 400 items; each user watches 25 items, mostly from their
/// group's quarter of the catalogue.
fn world() -> (Catalog, WatchHistories, Vec<Example>, Vec<ValidationCase>) {
    let mut state = 7u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let items = 400u64;
    let mut sequences = Vec::new();
    for u in 0..240u64 {
        let group = u % 4;
        let mut seq: Vec<(u32, i64)> = Vec::new();
        while seq.len() < 25 {
            let item = match next(10) {
                0 => next(items),
                _ => group * 100 + next(100),
            } as u32;
            if !seq.iter().any(|&(i, _)| i == item) {
                seq.push((item, seq.len() as i64));
            }
        }
        sequences.push(seq);
    }
    let histories = WatchHistories::from_sequences(&sequences);
    let examples = (0..240u32)
        .flat_map(|user| (1..25u32).map(move |pos| Example { user, pos }))
        .collect();
    let validation = (0..80u32)
        .map(|u| {
            let h = histories.user_items(u as usize);
            ValidationCase {
                user: u,
                history: h[..24].to_vec(),
                target: h[24],
                exclude: h[..24].to_vec(),
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
fn index_top_10_equals_each_autoencoders_own_output() {
    let (catalog, histories, examples, validation) = world();
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &validation,
    };
    let models = [
        mult_vae::MultVaeConfig {
            hidden: 48,
            latent: 16,
            batch_size: 32,
            epochs: 20,
            learning_rate: 1e-2,
            ..Default::default()
        }
        .train(&data, None, |_| {}),
        mult_dae::MultDaeConfig {
            hidden: 32,
            batch_size: 32,
            epochs: 20,
            learning_rate: 1e-2,
            ..Default::default()
        }
        .train(&data, None, |_| {}),
        cdae::CdaeConfig {
            hidden: 24,
            epochs: 20,
            learning_rate: 1e-2,
            ..Default::default()
        }
        .train(&data, None, |_| {}),
        autorec::AutoRecConfig {
            hidden: 32,
            epochs: 20,
            learning_rate: 1e-2,
            ..Default::default()
        }
        .train(&data, None, |_| {}),
        cfgan::CfganConfig {
            hidden: 32,
            discriminator_hidden: 16,
            epochs: 10,
            learning_rate: 1e-2,
            discriminator_learning_rate: 1e-2,
            ..Default::default()
        }
        .train(&data, None, |_| {}),
    ];
    for result in models {
        let (model, report) = result.unwrap();
        // Trained: the group structure is learned far above chance (10 of 376 items: 0.027; a learned group: about 0.12).
        let hr = report.best_validation.unwrap();
        eprintln!("{}: validation HR@10 {hr}", model.spec().kind);
        assert!(hr > 0.08, "{}: validation HR@10 {hr}", model.spec().kind);
        check(&model, &histories, model.spec().kind, |q, _| {
            model.reconstruct(&[q]).unwrap()
        });
    }
}

#[test]
fn index_top_10_equals_gmfs_own_pair_logits() {
    let (catalog, histories, examples, validation) = world();
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &validation,
    };
    let config = ranking::ncf::NcfConfig {
        dim: 16,
        epochs: 10,
        learning_rate: Some(1e-2),
        ..Default::default()
    };
    let (model, report) = gmf::Gmf::train(&config, &data, None, |_| {}).unwrap();
    let hr = report.best_validation.unwrap();
    assert!(hr > 0.08, "GMF validation HR@10 {hr}");
    check(&model, &histories, "gmf", |_, user| {
        model.network().score_catalogue(&[user]).unwrap()
    });
    // A new user (no index) is folded in from the history: still a ranking of unseen items.
    let u = model
        .user_vectors(&[UserQuery::from_history(histories.user_items(0))])
        .unwrap();
    assert_eq!(u.len(), model.dim());
    assert!(u.iter().all(|x| x.is_finite()));
}
