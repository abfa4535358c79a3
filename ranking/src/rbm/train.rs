//! RBM-CF's training run: contrastive divergence over mini-batches of users, on the CPU (the
//! loop over users below) or in candle ops on a device ([`super::device`]).

use nn::rating::{RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{Fit, ShuffledBatches, StepLoss};

use super::{device, Params, Rbm};
use crate::error::{RankingError, Result};

/// One training run.
pub(super) struct Run<'a> {
    pub(super) model: Rbm,
    pub(super) valid: &'a Ratings,
    pub(super) users: Vec<u32>,
    pub(super) grads: Params,
    pub(super) velocity: Params,
    pub(super) rng: Rng,
    pub(super) batches: ShuffledBatches,
    /// Epoch number (from 1), for the CD schedule.
    pub(super) steps: usize,
    /// The parameters in candle ops on a device, when training there.
    pub(super) on_device: Option<device::DeviceParams>,
}

impl Run<'_> {
    /// Adds one user's contrastive-divergence statistics to `grads` (eq. 6: data minus
    /// T-step reconstruction); returns the squared error of the reconstruction's expected
    /// ratings against the data.
    fn user_statistics(&mut self, user: u32, gibbs: usize) -> f64 {
        let m = &self.model;
        let (k, f) = (m.levels(), m.config.hidden);
        let rated = &m.rated[user as usize];
        let data = m.hidden_probabilities(rated.iter().map(|&(i, l)| (i, l as usize, 1.0)));
        // Negative phase: Gibbs chain from a sample of the data's hidden units.
        let mut h: Vec<f32> = data
            .iter()
            .map(|&p| f32::from(self.rng.uniform() < f64::from(p)))
            .collect();
        let mut probs = vec![0f32; rated.len() * k];
        let mut model_h = Vec::new();
        for t in 1..=gibbs {
            for (n, &(i, _)) in rated.iter().enumerate() {
                m.visible_softmax(i, &h, &mut probs[n * k..(n + 1) * k]);
            }
            let last = t == gibbs;
            let visible: Vec<(u32, usize, f32)> = if last {
                // The final reconstruction enters as probabilities (less sampling noise).
                rated
                    .iter()
                    .enumerate()
                    .flat_map(|(n, &(i, _))| (0..k).map(move |l| (i, l, n * k + l)))
                    .map(|(i, l, at)| (i, l, probs[at]))
                    .collect()
            } else {
                rated
                    .iter()
                    .enumerate()
                    .map(|(n, &(i, _))| {
                        let x = self.rng.uniform() as f32;
                        let p = &probs[n * k..(n + 1) * k];
                        let mut acc = 0.0;
                        let level = p
                            .iter()
                            .position(|&q| {
                                acc += q;
                                x < acc
                            })
                            .unwrap_or(k - 1);
                        (i, level, 1.0)
                    })
                    .collect()
            };
            model_h = m.hidden_probabilities(visible.into_iter());
            if !last {
                h = model_h
                    .iter()
                    .map(|&p| f32::from(self.rng.uniform() < f64::from(p)))
                    .collect();
            }
        }
        let g = &mut self.grads;
        let mut squared = 0.0;
        for (n, &(i, level)) in rated.iter().enumerate() {
            let base = i as usize * k;
            let row = (base + level as usize) * f;
            g.w[row..row + f]
                .iter_mut()
                .zip(&data)
                .for_each(|(g, d)| *g += d);
            g.b[base + level as usize] += 1.0;
            let mut expected = 0.0;
            for l in 0..k {
                let p = probs[n * k + l];
                let row = (base + l) * f;
                g.w[row..row + f]
                    .iter_mut()
                    .zip(&model_h)
                    .for_each(|(g, h)| *g -= p * h);
                g.b[base + l] -= p;
                expected += p * m.levels[l];
            }
            squared += f64::from(expected - m.levels[level as usize]).powi(2);
        }
        g.c.iter_mut()
            .zip(data.iter().zip(&model_h))
            .for_each(|(g, (d, h))| *g += d - h);
        squared
    }
}

/// `v = momentum v + scale g - decay w; w += v`, then clears `g`.
fn momentum_step(
    w: &mut [f32],
    g: &mut [f32],
    v: &mut [f32],
    momentum: f32,
    scale: f32,
    decay: f32,
) {
    for ((w, g), v) in w.iter_mut().zip(g.iter_mut()).zip(v.iter_mut()) {
        *v = momentum * *v + scale * *g - decay * *w;
        *w += *v;
        *g = 0.0;
    }
}

impl Fit for Run<'_> {
    type Error = RankingError;
    type Snapshot = Params;

    fn examples_per_epoch(&self) -> usize {
        self.users.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<()> {
        self.steps = epoch;
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let gibbs = self.model.config.gibbs_steps(self.steps);
        let users: Vec<u32> = self
            .batches
            .batch(step)
            .iter()
            .map(|&i| self.users[i])
            .collect();
        let count: usize = users
            .iter()
            .map(|&u| self.model.rated[u as usize].len())
            .sum();
        let cfg = &self.model.config;
        let scale = (lr / users.len().max(1) as f64) as f32;
        let (momentum, decay) = (cfg.momentum as f32, (lr * cfg.weight_decay) as f32);
        if let Some(params) = self.on_device.as_mut() {
            let rated: Vec<&[(u32, u8)]> = users
                .iter()
                .map(|&u| self.model.rated[u as usize].as_slice())
                .collect();
            let counts: Vec<usize> = rated.iter().map(|r| r.len()).collect();
            let draws = device::Draws::new(&mut self.rng, &counts, cfg.hidden, gibbs);
            let (m, s, d) = (momentum.into(), scale.into(), decay.into());
            let squared = params.step(&rated, &draws, gibbs, m, s, d)?;
            return Ok(StepLoss {
                sum: squared,
                weight: count.max(1) as f64,
            });
        }
        let mut squared = 0.0;
        for &u in &users {
            squared += self.user_statistics(u, gibbs);
        }
        let (p, g, v) = (&mut self.model.params, &mut self.grads, &mut self.velocity);
        momentum_step(&mut p.w, &mut g.w, &mut v.w, momentum, scale, decay);
        momentum_step(&mut p.b, &mut g.b, &mut v.b, momentum, scale, 0.0);
        momentum_step(&mut p.c, &mut g.c, &mut v.c, momentum, scale, 0.0);
        Ok(StepLoss {
            sum: squared,
            weight: count.max(1) as f64,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        if let Some(params) = &self.on_device {
            self.model.params = params.to_host()?;
        }
        self.model.validation_rmse(self.valid)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(self.model.params.clone())
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        if let Some(params) = self.on_device.as_mut() {
            params.set(&snapshot)?;
        }
        self.model.params = snapshot;
        Ok(())
    }
}
