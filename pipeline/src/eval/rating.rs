//! EVAL.md section 4, rating prediction: a seeded random 90/10 split of the rated events, 10%
//! of the training part held out to choose the epoch (the model fits the other 90% of it), RMSE
//! on the test part; a test pair whose user or item the model never saw is predicted by the
//! training mean. Reported beside the biased-MF baseline trained on the same split and the
//! training mean alone.

use std::collections::HashMap;
use std::time::Instant;

use nn::rating::{rmse, Ratings, SideFeatures};
use nn::rng::Rng;
use ranking::RatingSettings;
use serde::Serialize;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::side_features::side_features;
use crate::progress::bar;

/// Seed of the split (fixed by EVAL.md's "fixed seed").
pub const SPLIT_SEED: u64 = 42;
/// The baseline every rating model is reported beside.
pub const BASELINE: &str = "mf";

/// One trained model's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RatingRow {
    /// Registry name of the model, with the variant when it is not the configured one.
    pub model: String,
    /// Test RMSE.
    pub rmse: f64,
    /// Validation RMSE of the kept epoch.
    pub validation_rmse: Option<f64>,
    /// Epoch kept and epochs run.
    pub best_epoch: usize,
    /// See `best_epoch`.
    pub epochs: usize,
    /// Training seconds.
    pub train_seconds: f64,
    /// Peak resident memory while it trained and predicted, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
}

/// What `evaluate --task rating` (or the rating leaderboard) measured.
#[derive(Debug, Clone, Serialize)]
pub struct RatingFigures {
    /// Registry name of the model asked for (the first row).
    pub model: String,
    /// Ratings the models fitted, chose their epoch on, and were tested on.
    pub fit: usize,
    /// See `fit`.
    pub validation: usize,
    /// See `fit`.
    pub test: usize,
    /// Test pairs with a user or item unseen in the fitted part (predicted by the mean).
    pub test_unseen: usize,
    /// Test RMSE of the model asked for.
    pub rmse: f64,
    /// Test RMSE of the training mean alone.
    pub mean_rmse: f64,
    /// Test RMSE of each user's training mean (the training mean for an unseen user).
    pub user_mean_rmse: f64,
    /// Every model measured on this split, the one asked for first.
    pub rows: Vec<RatingRow>,
}

impl RatingFigures {
    /// A small table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "rating (EVAL.md section 4): fit {} ratings, validation {}, test {} ({} with an unseen user or item)\n{:<36} {:>8} {:>8} {:>8} {:>8} {:>9}\n",
            self.fit, self.validation, self.test, self.test_unseen, "model", "RMSE", "valid", "epoch", "train s", "peak MiB"
        );
        for r in &self.rows {
            let peak = r
                .peak_rss_mib
                .map_or("-".to_string(), |m| format!("{m:.0}"));
            out += &format!(
                "{:<36} {:>8.4} {:>8.4} {:>8} {:>8.1} {:>9}\n",
                r.model,
                r.rmse,
                r.validation_rmse.unwrap_or(f64::NAN),
                format!("{}/{}", r.best_epoch, r.epochs),
                r.train_seconds,
                peak
            );
        }
        out += &format!("{:<36} {:>8.4}\n", "user mean", self.user_mean_rmse);
        out += &format!("{:<36} {:>8.4}\n", "training mean", self.mean_rmse);
        out
    }
}

/// Dense indices of the ids seen in the fitted part.
#[derive(Default)]
struct Dense(HashMap<i64, u32>);

impl Dense {
    fn insert(&mut self, id: i64) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(id).or_insert(next)
    }
    fn get(&self, id: i64) -> Option<u32> {
        self.0.get(&id).copied()
    }
}

/// The split of EVAL.md section 4, as dense indices.
pub struct RatingSplit {
    fit: Ratings,
    valid: Ratings,
    validation_rows: usize,
    test: Ratings,
    test_rows: usize,
    test_unseen: Vec<f32>,
    num_users: usize,
    num_items: usize,
    features: Option<SideFeatures>,
}

impl RatingSplit {
    /// Splits `data`'s rated events.
    pub fn new(data: &Dataset) -> Result<Self> {
        let events = &data.events;
        let mut rows: Vec<usize> = (0..events.len())
            .filter(|&i| events.rating[i].is_some())
            .collect();
        if rows.len() < 10 {
            return Err(Error::input(
                &data.dir.join("events.parquet"),
                format!(
                    "column 'rating': {} rated events; rating prediction needs at least 10",
                    rows.len()
                ),
            ));
        }
        let mut rng = Rng::new(SPLIT_SEED);
        rng.shuffle(&mut rows);
        let n_test = rows.len() / 10;
        let (test_rows, training) = rows.split_at(n_test);
        let n_valid = training.len() / 10;
        let (valid_rows, fit_rows) = training.split_at(n_valid);

        let (mut users, mut items) = (Dense::default(), Dense::default());
        let mut fit = Ratings::default();
        for &i in fit_rows {
            fit.users.push(users.insert(events.user_id[i]));
            fit.items.push(items.insert(events.item_id[i]));
            fit.values.push(events.rating[i].unwrap_or_default());
        }
        // Pairs of `rows` whose user and item were fitted, and the rest (predicted by the mean).
        let known = |rows: &[usize]| {
            let mut known = Ratings::default();
            let mut unseen = Vec::new();
            for &i in rows {
                let r = events.rating[i].unwrap_or_default();
                match (users.get(events.user_id[i]), items.get(events.item_id[i])) {
                    (Some(u), Some(it)) => {
                        known.users.push(u);
                        known.items.push(it);
                        known.values.push(r);
                    }
                    _ => unseen.push(r),
                }
            }
            (known, unseen)
        };
        let (valid, _) = known(valid_rows);
        let (test, test_unseen) = known(test_rows);
        let features = side_features(
            &data.users,
            &data.items,
            |id| users.get(id),
            |id| items.get(id),
            users.0.len(),
            items.0.len(),
        );
        Ok(Self {
            features,
            num_users: users.0.len(),
            num_items: items.0.len(),
            fit,
            valid,
            validation_rows: valid_rows.len(),
            test,
            test_rows: test_rows.len(),
            test_unseen,
        })
    }

    /// The training mean, the prediction for unseen pairs.
    fn mean(&self) -> f32 {
        self.fit.mean() as f32
    }

    /// Each test pair's user mean over the fitted ratings, the seen pairs first (the training
    /// mean for the unseen ones).
    fn user_means(&self) -> Vec<f32> {
        let mut sums = vec![(0f64, 0usize); self.num_users];
        for (&u, &r) in self.fit.users.iter().zip(&self.fit.values) {
            let s = &mut sums[u as usize];
            *s = (s.0 + f64::from(r), s.1 + 1);
        }
        let mean = self.mean();
        let mut out: Vec<f32> = self
            .test
            .users
            .iter()
            .map(|&u| match sums[u as usize] {
                (sum, n) if n > 0 => (sum / n as f64) as f32,
                _ => mean,
            })
            .collect();
        out.extend(std::iter::repeat_n(mean, self.test_unseen.len()));
        out
    }

    /// Test ratings, the seen pairs first.
    fn actual(&self) -> Vec<f32> {
        let mut actual = self.test.values.clone();
        actual.extend_from_slice(&self.test_unseen);
        actual
    }

    /// Trains `settings`' chosen model on the split and measures it; `label` names the row.
    pub fn evaluate(&self, settings: &RatingSettings, label: &str) -> Result<RatingRow> {
        let model_err = |e| crate::stages::ranking::ranking_crate_err("rating", e);
        settings.validate().map_err(model_err)?;
        let measured = super::reset_peak_rss();
        let t = Instant::now();
        let pb = bar(settings.epochs() as u64, label);
        let (model, report) = settings
            .train(
                self.num_users,
                self.num_items,
                self.features.as_ref(),
                &self.fit,
                &self.valid,
                |e| {
                    pb.set_position(e.epoch as u64);
                    pb.set_message(format!(
                        "train MSE {:.4} valid RMSE {:.4}",
                        e.loss,
                        e.validation.unwrap_or(f64::NAN)
                    ));
                },
            )
            .map_err(model_err)?;
        pb.finish_and_clear();
        let train_seconds = t.elapsed().as_secs_f64();
        let mut predicted = model
            .predict(&self.test.users, &self.test.items)
            .map_err(model_err)?;
        predicted.extend(std::iter::repeat_n(self.mean(), self.test_unseen.len()));
        Ok(RatingRow {
            model: label.to_string(),
            rmse: rmse(&predicted, &self.actual()),
            validation_rmse: report.best_validation,
            best_epoch: report.best_epoch,
            epochs: report.epochs.len(),
            train_seconds,
            peak_rss_mib: if measured {
                super::peak_rss_mib()
            } else {
                None
            },
        })
    }

    /// The figures of `rows` (the first is the model asked for) on this split.
    pub fn figures(&self, rows: Vec<RatingRow>) -> RatingFigures {
        let actual = self.actual();
        RatingFigures {
            model: rows.first().map(|r| r.model.clone()).unwrap_or_default(),
            fit: self.fit.len(),
            validation: self.validation_rows,
            test: self.test_rows,
            test_unseen: self.test_unseen.len(),
            rmse: rows.first().map_or(f64::NAN, |r| r.rmse),
            mean_rmse: rmse(&vec![self.mean(); actual.len()], &actual),
            user_mean_rmse: rmse(&self.user_means(), &actual),
            rows,
        }
    }
}

/// Splits `data`'s ratings, trains `settings`' model and, when it is not the baseline, the
/// biased-MF baseline on the same split, and measures both.
pub fn evaluate_rating(data: &Dataset, settings: &RatingSettings) -> Result<RatingFigures> {
    let model_err = |e| crate::stages::ranking::ranking_crate_err("rating", e);
    settings.validate().map_err(model_err)?;
    let split = RatingSplit::new(data)?;
    let mut rows = vec![split.evaluate(settings, &settings.model)?];
    if settings.model != BASELINE {
        rows.push(split.evaluate(&settings.with_model(BASELINE), BASELINE)?);
    }
    Ok(split.figures(rows))
}
