//! The KuaiRand-Pure split of issue 5 and its examples: fit on 20220425..0501, stop early on
//! 20220502, test on 20220503..05; shared by the experiment and the quality-floor test.

use std::collections::HashMap;
use std::error::Error;
use std::path::Path;

use ranking::{FeatureSchema, RankingExample};

use crate::features::{build_examples, continuous_names, FeatureConfig, Impressions, SideInfo};
use crate::metrics::{ranking_metrics, RankingMetrics, ScoredImpression};
use crate::tables::{read_log, read_users, read_videos};

/// Last training day (the validation day included).
pub const LAST_TRAIN_DAY: i64 = 20220502;
/// The early-stopping slice: the last training day.
pub const VALID_DAY: i64 = 20220502;

/// Examples of the three slices and what the test metrics need.
pub struct Experiment {
    pub schema: FeatureSchema,
    pub fit: Vec<RankingExample>,
    pub valid: Vec<RankingExample>,
    pub test: Vec<RankingExample>,
    /// (user, day, clicked, watch time) of each test example.
    test_pages: Vec<(i64, i64, bool, f32)>,
    /// Click rate of each test impression's video on the training days (0 if unseen).
    pub ctr_scores: Vec<f32>,
}

impl Experiment {
    /// Reads the three CSV files under `dir` and builds causal features; `frozen` stops every
    /// counter at the first test impression.
    pub fn load(dir: &Path, frozen: bool) -> Result<Self, Box<dyn Error>> {
        let log = read_log(&dir.join("log_standard_4_25_to_5_05_pure.csv"))?;
        let videos = read_videos(&dir.join("video_features_basic_pure.csv"))?;
        let users = read_users(&dir.join("user_features_pure.csv"))?;
        let n = log.user_id.len();
        // Item vocabulary: videos shown on the days the model is fitted on (a video first shown
        // later would keep its untrained initial embedding; out of vocabulary it gets zeros).
        let mut item_index: HashMap<i64, u32> = HashMap::new();
        for i in (0..n).filter(|&i| log.date[i] < VALID_DAY) {
            let next = item_index.len() as u32;
            item_index.entry(log.item_id[i]).or_insert(next);
        }
        let timestamp: Vec<i64> = log.time_ms.iter().map(|t| t.div_euclid(1000)).collect();
        let is_test = |i: usize| log.date[i] > LAST_TRAIN_DAY;
        let freeze_at = frozen.then(|| {
            (0..n)
                .filter(|&i| is_test(i))
                .map(|i| timestamp[i])
                .min()
                .unwrap_or(i64::MAX)
        });
        let examples = build_examples(
            &Impressions {
                user_id: &log.user_id,
                item_id: &log.item_id,
                timestamp: &timestamp,
                day: &log.date,
                watched: &log.clicked,
                watch_time: &log.watch_time,
                retrieval: None,
            },
            &SideInfo {
                item_index: &item_index,
                item_tokens: &videos.tokens,
                duration: &videos.duration,
                published: &videos.published,
                user_categorical: &users.values,
                n_user_fields: users.cardinalities.len(),
            },
            &FeatureConfig {
                recent: 20,
                smoothing: 20.0,
                freeze_at,
            },
        );
        let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<RankingExample> {
            (0..n)
                .filter(|&i| keep(i))
                .map(|i| examples[i].clone())
                .collect()
        };
        let mut ctr: HashMap<i64, (f64, f64)> = HashMap::new();
        for i in (0..n).filter(|&i| !is_test(i)) {
            let e = ctr.entry(log.item_id[i]).or_default();
            e.0 += f64::from(u8::from(log.clicked[i]));
            e.1 += 1.0;
        }
        let test_idx: Vec<usize> = (0..n).filter(|&i| is_test(i)).collect();
        Ok(Self {
            schema: FeatureSchema {
                n_items: item_index.len(),
                n_tokens: videos.n_tokens,
                user_cardinalities: users.cardinalities.clone(),
                continuous: continuous_names(false),
            },
            fit: pick(&|i| log.date[i] < VALID_DAY),
            valid: pick(&|i| log.date[i] == VALID_DAY),
            test: pick(&is_test),
            test_pages: test_idx
                .iter()
                .map(|&i| {
                    (
                        log.user_id[i],
                        log.date[i],
                        log.clicked[i],
                        log.watch_time[i],
                    )
                })
                .collect(),
            ctr_scores: test_idx
                .iter()
                .map(|&i| {
                    ctr.get(&log.item_id[i])
                        .map_or(0.0, |(c, s)| (c / s) as f32)
                })
                .collect(),
        })
    }

    /// EVAL.md section 3 metrics of `scores` (one per test example).
    pub fn metrics(&self, scores: &[f32]) -> RankingMetrics {
        let rows: Vec<ScoredImpression> = self
            .test_pages
            .iter()
            .zip(scores)
            .map(
                |(&(user, day, clicked, watch_time), &score)| ScoredImpression {
                    user,
                    day,
                    score,
                    clicked,
                    watch_time,
                },
            )
            .collect();
        ranking_metrics(&rows)
    }
}
