//! The sample of a large impression log that becomes the ranker's examples
//! (`[ranking] max_fit_examples`, `max_eval_examples`).

use super::Part;
use crate::config::RankingConfig;
use crate::rng::Rng;
use crate::split::tie_order;

/// Salt of the example sample's hash (fixed, so a build's sample does not move between runs).
const SAMPLE_SEED: u64 = 0x005E_ED0F_0EAA;

/// Which impressions of a large log become examples, so that the ranker's examples fit in
/// memory whatever the log's length. Training keeps whole pages (user, day), a seeded hash of
/// the page deciding, at the rate that brings the fit part to about `[ranking]
/// max_fit_examples`; validation and test keep whole users (the same users on both parts) at
/// the rate that brings the larger of them to about `max_eval_examples`. A part under its cap
/// keeps everything, so small logs are unchanged. Impressions left out still feed every
/// counter, so the kept examples' features are exactly those of the full log.
pub(super) struct ExampleSample {
    /// Kept fraction of fit pages.
    fit_rate: f64,
    /// Kept fraction of validation and test users.
    eval_rate: f64,
    /// Impressions per part before sampling (fit, valid, test).
    counts: [usize; 3],
}

impl ExampleSample {
    pub(super) fn new(parts: &[Part], cfg: &RankingConfig) -> Self {
        let mut counts = [0usize; 3];
        for &p in parts {
            counts[p as usize] += 1;
        }
        let rate = |cap: usize, n: usize| {
            if cap == 0 || n <= cap {
                1.0
            } else {
                cap as f64 / n as f64
            }
        };
        ExampleSample {
            fit_rate: rate(cfg.max_fit_examples, counts[0]),
            eval_rate: rate(cfg.max_eval_examples, counts[1].max(counts[2])),
            counts,
        }
    }

    /// Whether the impression of `user_id` on `day` in `part` becomes an example.
    pub(super) fn keeps(&self, part: Part, user_id: i64, day: i64) -> bool {
        let (rate, key) = match part {
            Part::Fit => (self.fit_rate, tie_order(user_id, day)),
            Part::Valid | Part::Test => (self.eval_rate, tie_order(user_id, -1)),
        };
        rate >= 1.0 || Rng::stream(SAMPLE_SEED, key).f64() < rate
    }

    /// The impressions `part` had before sampling, when it was sampled.
    pub(super) fn sampled_from(&self, part: Part) -> Option<usize> {
        let rate = match part {
            Part::Fit => self.fit_rate,
            Part::Valid | Part::Test => self.eval_rate,
        };
        (rate < 1.0).then_some(self.counts[part as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// 200 users x 10 days x 5 impressions: days 0-7 fit, 8 valid, 9 test.
    fn log() -> (Vec<Part>, Vec<i64>, Vec<i64>) {
        let (mut parts, mut users, mut days) = (Vec::new(), Vec::new(), Vec::new());
        for day in 0..10 {
            for user in 0..200 {
                for _ in 0..5 {
                    parts.push(match day {
                        0..=7 => Part::Fit,
                        8 => Part::Valid,
                        _ => Part::Test,
                    });
                    users.push(1_000 + user);
                    days.push(20_260_100 + day);
                }
            }
        }
        (parts, users, days)
    }

    fn kept(sample: &ExampleSample, log: &(Vec<Part>, Vec<i64>, Vec<i64>)) -> Vec<usize> {
        let (parts, users, days) = log;
        (0..parts.len())
            .filter(|&i| sample.keeps(parts[i], users[i], days[i]))
            .collect()
    }

    #[test]
    fn logs_under_the_caps_keep_every_impression() {
        let log = log();
        for (fit, eval) in [(8_000, 1_000), (0, 0), (1_000_000, 1_000_000)] {
            let cfg = RankingConfig {
                max_fit_examples: fit,
                max_eval_examples: eval,
                ..Default::default()
            };
            let sample = ExampleSample::new(&log.0, &cfg);
            assert_eq!(kept(&sample, &log).len(), log.0.len(), "caps {fit}/{eval}");
            for part in [Part::Fit, Part::Valid, Part::Test] {
                assert_eq!(sample.sampled_from(part), None);
            }
        }
    }

    #[test]
    fn large_logs_keep_whole_pages_near_the_caps_and_the_same_users_on_valid_and_test() {
        let log = log();
        let cfg = RankingConfig {
            max_fit_examples: 2_000,
            max_eval_examples: 250,
            ..Default::default()
        };
        let sample = ExampleSample::new(&log.0, &cfg);
        let kept = kept(&sample, &log);
        let count = |part: Part| kept.iter().filter(|&&i| log.0[i] == part).count();
        // 8,000 fit impressions at rate 0.25 in pages of 5; 1,000 per evaluation day at 0.25.
        let fit = count(Part::Fit);
        assert!((1_500..=2_500).contains(&fit), "fit kept {fit}");
        for part in [Part::Valid, Part::Test] {
            let n = count(part);
            assert!((150..=350).contains(&n), "{part:?} kept {n}");
        }
        assert_eq!(sample.sampled_from(Part::Fit), Some(8_000));
        assert_eq!(sample.sampled_from(Part::Test), Some(1_000));
        // Whole pages: a page's impressions are all kept or all dropped.
        let mut pages: HashMap<(i64, i64), usize> = HashMap::new();
        for &i in &kept {
            *pages.entry((log.1[i], log.2[i])).or_default() += 1;
        }
        assert!(pages.values().all(|&n| n == 5), "partial pages kept");
        // Pages, not users, on the fit days: a user is kept on some fit days and not others.
        let fit_days_of = |user: i64| {
            pages
                .keys()
                .filter(|&&(u, d)| u == user && d < 20_260_108)
                .count()
        };
        assert!((1_000..1_200).any(|u| (1..8).contains(&fit_days_of(u))));
        // The same users on the validation and the test day.
        let users_on = |day: i64| -> HashSet<i64> {
            pages.keys().filter(|k| k.1 == day).map(|k| k.0).collect()
        };
        assert_eq!(users_on(20_260_108), users_on(20_260_109));
        // Seeded: the same sample again.
        assert_eq!(
            super::tests::kept(&ExampleSample::new(&log.0, &cfg), &log),
            kept
        );
    }
}
