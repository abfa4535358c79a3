//! Training the user-row autoencoders: one step = a batch of users' corrupted rows through the
//! network, the objective of [`super::Objective`], Adam on the dense layers and row-sparse
//! updates of the first layer (and the per-user node); with the fused CPU kernels or in candle
//! ops on a GPU ([`nn::Compute`]). The pieces (rows, forward pass, update) are shared with the
//! adversarial training of [`crate::cfgan`].

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use nn::bag::{with_f32_data, Bags, RowGrads};
use nn::layers::with_bias_column;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::portable::{bag_sum, TouchedRows};
use nn::rng::Rng;
use nn::trainer::{Fit, ShuffledBatches, StepLoss};
use nn::{Compute, Retriever, TrainingSet};

use super::{distinct, user_bags, Autoencoder, InputScale, Objective};
use crate::error::{invalid, Result, RetrievalError};

/// Each training user's distinct watched items, and the users with at least one.
pub(crate) struct UserRows {
    /// Row of each training user.
    pub(crate) rows: Vec<Vec<u32>>,
    /// Users with a non-empty row.
    pub(crate) users: Vec<u32>,
}

impl UserRows {
    /// The rows of `data`'s training histories.
    pub(crate) fn new(data: &TrainingSet) -> Self {
        let rows: Vec<Vec<u32>> = (0..data.histories.num_users())
            .map(|u| distinct(data.histories.user_items(u)))
            .collect();
        let users = (0..rows.len() as u32)
            .filter(|&u| !rows[u as usize].is_empty())
            .collect();
        Self { rows, users }
    }

    /// `users.len() x items` with 1 on each user's watched items.
    pub(crate) fn dense(&self, users: &[u32], items: usize) -> Result<Vec<f32>> {
        let mut x = vec![0f32; users.len() * items];
        for (row, &u) in x.chunks_mut(items).zip(users) {
            self.rows[u as usize]
                .iter()
                .for_each(|&j| row[j as usize] = 1.0);
        }
        Ok(x)
    }

    /// The first layer's input bags of `users`, each watched item dropped with probability
    /// `p` and the rest scaled by 1 / (1 - p) (after the unit-norm scaling, as Liang et al.
    /// normalise before dropping).
    pub(crate) fn corrupted(
        &self,
        model: &Autoencoder,
        users: &[u32],
        p: f64,
        rng: &mut Rng,
    ) -> Bags {
        let keep_scale = (1.0 / (1.0 - p)) as f32;
        let mut bags = Bags::new();
        let mut kept = Vec::new();
        for &u in users {
            let row = &self.rows[u as usize];
            kept.clear();
            kept.extend(row.iter().filter(|_| p <= 0.0 || rng.uniform() >= p));
            let norm = match model.spec.shape.input {
                InputScale::Binary => 1.0,
                InputScale::UnitNorm => (kept.len().max(1) as f32 / row.len() as f32).sqrt(),
            };
            model.push_row(&mut bags, &kept, keep_scale * norm);
        }
        bags
    }
}

/// `count` distinct items of `0..items` outside the sorted `row`, drawn uniformly (all of them
/// when `count` is at least the number of such items).
pub(crate) fn unwatched_sample(row: &[u32], items: usize, count: usize, rng: &mut Rng) -> Vec<u32> {
    let free = items - row.len();
    if count >= free {
        return (0..items as u32)
            .filter(|i| row.binary_search(i).is_err())
            .collect();
    }
    let mut taken = std::collections::HashSet::with_capacity(count);
    // Rejection sampling for sparse draws, a shuffle of the free items for dense ones.
    if count * 2 <= free {
        while taken.len() < count {
            let j = rng.below(items) as u32;
            if row.binary_search(&j).is_err() {
                taken.insert(j);
            }
        }
        let mut out: Vec<u32> = taken.into_iter().collect();
        out.sort_unstable();
        return out;
    }
    let mut all: Vec<u32> = (0..items as u32)
        .filter(|i| row.binary_search(i).is_err())
        .collect();
    rng.shuffle(&mut all);
    all.truncate(count);
    all.sort_unstable();
    all
}

/// A training-time forward pass.
pub(crate) struct Forward {
    /// The gathered first layer `x W`, whose gradient the bags scatter to the rows of W (fused
    /// kernels), or the distinct rows of W the batch reads, whose gradient is W's (candle ops).
    input_leaf: Var,
    /// Candle ops: the rows of W in `input_leaf`, ascending.
    input_rows: Option<Vec<u32>>,
    /// The per-user node rows, when the model has them (candle ops: the batch's users'
    /// rows, ascending).
    node_leaf: Option<Var>,
    /// Candle ops: the rows of the per-user node in `node_leaf`.
    node_rows: Option<Vec<u32>>,
    /// The latent mean and log-variance (VAE).
    pub(crate) gaussian: Option<(Tensor, Tensor)>,
    /// `users x items` output logits.
    pub(crate) logits: Tensor,
}

impl Autoencoder {
    /// The forward pass of `bags` (one per user of `users`, distinct training users) with a
    /// sampled latent, with the fused CPU kernels or (`fused` false) in candle ops.
    pub(crate) fn forward_train(
        &self,
        bags: &Bags,
        users: &[u32],
        rng: &mut Rng,
        fused: bool,
    ) -> Result<Forward> {
        let known: Vec<Option<u32>> = users.iter().map(|&u| Some(u)).collect();
        let (input_leaf, input_rows, pre, node_leaf, node_rows) = if fused {
            let (input_leaf, mut pre) = self.input.forward(bags)?;
            let node_leaf = match self.user_node_rows(&known)? {
                Some(rows) => {
                    let leaf = Var::from_tensor(&rows)?;
                    pre = (pre + leaf.as_tensor())?;
                    Some(leaf)
                }
                None => None,
            };
            (input_leaf, None, pre, node_leaf, None)
        } else {
            let (input, input_leaf, pre) = self.input.forward_rows(bags)?;
            let (node_leaf, node_rows) = match &self.user_node {
                Some(table) => {
                    let touched = TouchedRows::of(&[users]);
                    let leaf = touched.leaf(table.var().as_tensor())?;
                    let bags = user_bags(&known, table.rows());
                    let rows = bag_sum(leaf.as_tensor(), &bags, &touched.local[0])?;
                    (Some((leaf, rows)), Some(touched.rows))
                }
                None => (None, None),
            };
            let (pre, node_leaf) = match node_leaf {
                Some((leaf, rows)) => ((pre + rows)?, Some(leaf)),
                None => (pre, None),
            };
            (input_leaf, Some(input.rows), pre, node_leaf, node_rows)
        };
        let (h, gaussian) = self.hidden(&pre, Some(rng))?;
        let logits = with_bias_column(&h)?.matmul(&self.items.var().as_tensor().t()?)?;
        Ok(Forward {
            input_leaf,
            input_rows,
            node_leaf,
            node_rows,
            gaussian,
            logits,
        })
    }

    /// Every dense variable of the network (all but the first layer's rows and the user node).
    pub(crate) fn dense_vars(&self) -> Result<Vec<Var>> {
        let mut vars = vec![self.input.bias().clone(), self.items.var().clone()];
        let layers = self.dense.encoder.iter();
        let layers = layers.chain(&self.dense.latent).chain(&self.dense.decoder);
        for l in layers {
            vars.push(Var::from_tensor(l.weight())?);
            if let Some(b) = l.bias() {
                vars.push(Var::from_tensor(b)?);
            }
        }
        Ok(vars)
    }
}

/// AdamW over an autoencoder's parameters: dense steps, and row-sparse steps for the first
/// layer's rows and the per-user node.
pub(crate) struct Updater {
    optimizer: InPlaceAdamW,
    input_grads: RowGrads,
    node_grads: Option<RowGrads>,
}

impl Updater {
    /// An optimiser over `model` with learning rate `lr` and decoupled weight decay `decay`,
    /// updating with the fused kernels or in candle ops as `compute` says.
    pub(crate) fn new(model: &Autoencoder, lr: f64, decay: f64, compute: &Compute) -> Result<Self> {
        let table = model.input.weight();
        let mut sparse = vec![(table.var().clone(), table.width())];
        let node_grads = model.user_node.as_ref().map(|n| {
            sparse.push((n.var().clone(), n.width()));
            RowGrads::new(n.rows(), n.width())
        });
        let params = AdamWParams {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: decay,
        };
        Ok(Self {
            optimizer: InPlaceAdamW::for_compute(compute, model.dense_vars()?, sparse, params)?,
            input_grads: RowGrads::new(table.rows(), table.width()),
            node_grads,
        })
    }

    /// One step from the gradients `store` of a loss over `forward` (of `bags`, `users`).
    pub(crate) fn step(
        &mut self,
        store: &GradStore,
        forward: &Forward,
        bags: &Bags,
        users: &[u32],
        lr: f64,
    ) -> Result<()> {
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(store)?;
        let width = self.input_grads.width();
        if let Some(g) = store.get(forward.input_leaf.as_tensor()) {
            if let Some(rows) = &forward.input_rows {
                self.optimizer.step_rows_tensor(0, rows, g)?;
            } else {
                let grads = &mut self.input_grads;
                with_f32_data(&g.contiguous()?, |g| grads.scatter(g, 0, width, bags))?;
                let (rows, gv) = grads.take_sorted();
                self.optimizer.step_rows(0, &rows, &gv)?;
            }
        }
        let node = forward.node_leaf.as_ref();
        if let Some(g) = node.and_then(|leaf| store.get(leaf.as_tensor())) {
            if let Some(rows) = &forward.node_rows {
                self.optimizer.step_rows_tensor(1, rows, g)?;
            } else if let Some(grads) = self.node_grads.as_mut() {
                grads.add_rows(users, g)?;
                let (rows, gv) = grads.take_sorted();
                self.optimizer.step_rows(1, &rows, &gv)?;
            }
        }
        Ok(())
    }
}

/// One training run: an epoch is one pass over the training users in a seeded order.
pub(super) struct Run<'a> {
    /// The model being trained.
    pub(super) model: Autoencoder,
    data: TrainingSet<'a>,
    rows: UserRows,
    updater: Updater,
    rng: Rng,
    batches: ShuffledBatches,
    steps: usize,
    /// Fused CPU kernels, or candle ops on the model's device.
    fused: bool,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        model: Autoencoder,
        data: &TrainingSet<'a>,
        compute: &Compute,
    ) -> Result<Self> {
        let t = &model.spec.training;
        let rows = UserRows::new(data);
        Ok(Self {
            updater: Updater::new(&model, t.learning_rate, t.weight_decay, compute)?,
            fused: compute.is_fused_cpu(),
            rng: Rng::new(t.seed ^ 0xAE_70E2),
            batches: ShuffledBatches::new(rows.users.len(), t.batch_size),
            steps: 0,
            rows,
            model,
            data: *data,
        })
    }

    /// Dense `batch x items` targets (1 on watched items) and, for the logistic objective,
    /// the weights (1 on watched and on sampled unwatched items, 0 elsewhere).
    fn targets(&mut self, users: &[u32]) -> Result<(Tensor, Option<Tensor>)> {
        let n = self.model.num_items();
        let device = self.model.item_table().device().clone();
        let x = self.rows.dense(users, n)?;
        let weights = match self.model.spec.training.objective {
            Objective::Logistic { negatives } => {
                let mut w = x.clone();
                for (row, &u) in w.chunks_mut(n).zip(users) {
                    let watched = &self.rows.rows[u as usize];
                    let count = negatives * watched.len();
                    for j in unwatched_sample(watched, n, count, &mut self.rng) {
                        row[j as usize] = 1.0;
                    }
                }
                Some(Tensor::from_vec(w, (users.len(), n), &device)?)
            }
            _ => None,
        };
        Ok((Tensor::from_vec(x, (users.len(), n), &device)?, weights))
    }
}

impl Fit for Run<'_> {
    type Error = RetrievalError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.rows.users.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let t = self.model.spec.training.clone();
        let users: Vec<u32> = self
            .batches
            .batch(step)
            .iter()
            .map(|&i| self.rows.users[i])
            .collect();
        let b = users.len();
        let bags = self
            .rows
            .corrupted(&self.model, &users, t.input_dropout, &mut self.rng);
        let forward = self
            .model
            .forward_train(&bags, &users, &mut self.rng, self.fused)?;
        let logits = &forward.logits;
        let (x, weights) = self.targets(&users)?;
        let mut loss = match t.objective {
            Objective::SquaredError => ((logits - &x)?.sqr()?.sum_all()? / b as f64)?,
            Objective::Logistic { .. } => {
                let w = weights.ok_or_else(|| invalid("logistic objective without weights"))?;
                (nn::loss::weighted_bce_sum(logits, &x, &w)? / b as f64)?
            }
            Objective::Multinomial { .. } => nn::loss::multinomial_nll(logits, &x)?,
            Objective::Adversarial => {
                return Err(invalid("an adversarial generator trains through cfgan"));
            }
        };
        if let (
            Objective::Multinomial {
                beta_cap,
                anneal_steps,
            },
            Some((mu, logvar)),
        ) = (t.objective, &forward.gaussian)
        {
            let beta = beta_cap.min(self.steps as f64 / anneal_steps.max(1) as f64);
            if beta > 0.0 {
                // KL(q(z|x) || N(0, I)) = 1/2 sum (-logvar + e^logvar + mu^2 - 1), batch mean.
                let kl = ((logvar.exp()? - logvar)? + mu.sqr()?)?;
                let kl = ((kl - 1.0)?.sum_all()? * (0.5 / b as f64))?;
                loss = (loss + (kl * beta)?)?;
            }
        }
        let value = f64::from(loss.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.updater.step(&store, &forward, &bags, &users, lr)?;
        self.steps += 1;
        Ok(StepLoss {
            sum: value * b as f64,
            weight: b as f64,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.validation_hit_rate(self.data.validation, None)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        Ok(nn::vars::restore(&self.model.varmap, &snapshot)?)
    }
}
