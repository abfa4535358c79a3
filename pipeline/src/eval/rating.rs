//! EVAL.md section 4, rating prediction: a seeded random 90/10 split of the rated events, 10%
//! of the training part held out to choose the epoch (the model fits the other 90% of it), RMSE
//! on the test part; a test pair whose user or item the model never saw is predicted by the
//! training mean. Reported beside the training mean alone.

use std::collections::HashMap;
use std::time::Instant;

use nn::rating::{rmse, Ratings};
use nn::rng::Rng;
use serde::Serialize;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::progress::bar;

/// Seed of the split (fixed by EVAL.md's "fixed seed").
pub const SPLIT_SEED: u64 = 42;

/// What `evaluate --task rating` measured.
#[derive(Debug, Clone, Serialize)]
pub struct RatingFigures {
    /// Registry name of the model.
    pub model: String,
    /// Ratings the model fitted, chose its epoch on, and was tested on.
    pub fit: usize,
    /// See `fit`.
    pub validation: usize,
    /// See `fit`.
    pub test: usize,
    /// Test pairs with a user or item unseen in the fitted part (predicted by the mean).
    pub test_unseen: usize,
    /// Test RMSE of the model.
    pub rmse: f64,
    /// Test RMSE of the training mean alone.
    pub mean_rmse: f64,
    /// Validation RMSE of the kept epoch.
    pub validation_rmse: Option<f64>,
    /// Epoch kept and epochs run.
    pub best_epoch: usize,
    /// See `best_epoch`.
    pub epochs: usize,
    /// Training seconds.
    pub train_seconds: f64,
}

impl RatingFigures {
    /// A small table.
    pub fn table(&self) -> String {
        format!(
            "rating (EVAL.md section 4): fit {} ratings, validation {}, test {} ({} with an unseen user or item)\n{:<24} {:>8}\n{:<24} {:>8.4}\n{:<24} {:>8.4}\n",
            self.fit,
            self.validation,
            self.test,
            self.test_unseen,
            "model",
            "RMSE",
            format!("{} (epoch {}/{})", self.model, self.best_epoch, self.epochs),
            self.rmse,
            "training mean",
            self.mean_rmse
        )
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

/// Splits `data`'s ratings, trains `settings`' model and measures it.
pub fn evaluate_rating(
    data: &Dataset,
    settings: &ranking::RatingSettings,
) -> Result<RatingFigures> {
    let model_err = |e| crate::stages::ranking::ranking_crate_err("rating", e);
    settings.validate().map_err(model_err)?;
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

    let t = Instant::now();
    let pb = bar(settings.mf.epochs as u64, "rating");
    let (model, report) = settings
        .train(users.0.len(), items.0.len(), &fit, &valid, |e| {
            pb.set_position(e.epoch as u64);
            pb.set_message(format!(
                "train MSE {:.4} valid RMSE {:.4}",
                e.loss,
                e.validation.unwrap_or(f64::NAN)
            ));
        })
        .map_err(model_err)?;
    pb.finish_and_clear();
    let train_seconds = t.elapsed().as_secs_f64();
    let mean = fit.mean() as f32;
    let mut predicted = model.predict(&test.users, &test.items).map_err(model_err)?;
    let mut actual = test.values.clone();
    predicted.extend(std::iter::repeat_n(mean, test_unseen.len()));
    actual.extend_from_slice(&test_unseen);
    let mean_only = vec![mean; actual.len()];
    Ok(RatingFigures {
        model: model.kind().to_string(),
        fit: fit.len(),
        validation: valid_rows.len(),
        test: test_rows.len(),
        test_unseen: test_unseen.len(),
        rmse: rmse(&predicted, &actual),
        mean_rmse: rmse(&mean_only, &actual),
        validation_rmse: report.best_validation,
        best_epoch: report.best_epoch,
        epochs: report.epochs.len(),
        train_seconds,
    })
}
