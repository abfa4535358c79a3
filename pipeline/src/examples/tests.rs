//! Example sampling, user features and the sampled evaluation.

use super::*;

/// Validation and test cases of 40 users with 6 watches each under `eval_users`.
fn cases(eval_users: usize, seed: u64) -> (Vec<ValidationCase>, Vec<ValidationCase>) {
    let mut events = crate::data::Events::default();
    for u in 0..40i64 {
        for k in 0..6i64 {
            events.push(crate::data::Event {
                user_id: 100 + u,
                item_id: (u * 7 + k * 3) % 50,
                timestamp: 1_700_000_000 + k * 60,
                watched: true,
                watch_time: None,
                rating: None,
            });
        }
    }
    let all = WatchSequences::from_events(&events);
    let split = LeaveLastOut::from_sequences(&all);
    let cfg = ExamplesConfig {
        eval_users,
        seed,
        ..Default::default()
    };
    let inputs = RetrievalInputs::build(&all, &split, &Items::default(), &Users::default(), &cfg)
        .expect("inputs");
    assert_eq!(inputs.evaluable_users, 40);
    (inputs.validation, inputs.test)
}

#[test]
fn sampled_evaluation_is_seeded_and_a_covering_sample_is_the_full_evaluation() {
    let full = cases(0, 17);
    assert_eq!(full.0.len(), 40);
    for covering in [40, 41, 1_000] {
        assert_eq!(cases(covering, 17), full, "eval_users {covering}");
    }
    let sample = cases(10, 17);
    assert_eq!(sample.0.len(), 10);
    assert_eq!(cases(10, 17), sample, "seeded");
    assert!(sample.0.iter().all(|c| full.0.contains(c)));
    assert!(sample.1.iter().all(|c| full.1.contains(c)));
    assert_ne!(cases(10, 18).0, sample.0, "another seed, another sample");
}

#[test]
fn examples_are_capped_sampled_and_never_position_zero() {
    let seqs: Vec<Vec<(u32, i64)>> = vec![
        (0..10).map(|i| (i, i as i64)).collect(),
        vec![(1, 5)],
        (0..3).map(|i| (i, i as i64)).collect(),
    ];
    let h = WatchHistories::from_sequences(&seqs);
    let cfg = ExamplesConfig {
        max_per_user: 4,
        seed: 1,
        ..Default::default()
    };
    let ex = sample_examples(&h, &cfg);
    let of = |u: u32| {
        ex.iter()
            .filter(|e| e.user == u)
            .map(|e| e.pos)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(0).len(), 4);
    assert!(of(0).iter().all(|&p| (1..10).contains(&p)));
    assert!(of(0).windows(2).all(|w| w[0] < w[1]));
    assert_ne!(of(0), vec![1, 2, 3, 4], "a sample, not the first four");
    assert!(of(1).is_empty());
    assert_eq!(of(2), vec![1, 2]);
    assert_eq!(sample_examples(&h, &cfg), ex, "seeded");
}

#[test]
fn user_features_encode_missing_and_scale() {
    let users = Users {
        user_id: vec![1, 2, 3],
        categorical: vec![("g".into(), vec![Some("M".into()), Some("F".into()), None])],
        numeric: vec![("age".into(), vec![Some(20.0), Some(40.0), None])],
        ..Default::default()
    };
    let enc = UserFeatureEncoder::fit(&users);
    assert_eq!(enc.cardinalities(), vec![3]);
    assert_eq!(enc.encode(1), (vec![2], vec![0.0]));
    assert_eq!(enc.encode(2), (vec![1], vec![1.0]));
    assert_eq!(enc.encode(3), (vec![0], vec![0.0]));
    assert_eq!(enc.encode(99), (vec![0], vec![0.0]));
}
