//! Training: batches of rolled-back examples, the logQ-corrected in-batch + sampled softmax of
//! the module doc, in-place AdamW (row-sparse for the embedding tables), run by the shared
//! trainer with early stopping on validation HR@10; with the fused CPU kernels or in candle ops
//! on a GPU ([`nn::Compute`]), the same batches and random draws either way.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use nn::bag::{with_f32_data, Bags, RowGrads};
use nn::layers::with_bias_column;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::portable::softmax_cross_entropy;
use nn::rng::Rng;
use nn::softmax::NegativeSampler;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport};
use nn::xent::SoftmaxCrossEntropy;
use nn::{Compute, Retriever, TrainingSet, UserFeatures};

use super::config::TwoTowerConfig;
use super::network::{
    age_bucket, block, ItemBatch, ItemFeatures, Standardizer, UserBatch, UserSource, Vocabulary,
};
use super::TwoTower;
use crate::error::{invalid, Result, RetrievalError};
use crate::warm::WarmStart;

/// Name of the id embedding table among the variables.
const IDS: &str = "ids.weight";

impl TwoTower {
    /// Trains a model on `data`, keeping the epoch with the best validation HR@10 and stopping
    /// after `cfg.patience` epochs without improvement; starts from `warm`'s weights when given
    /// (known items keep their id rows, new items start from their features).
    pub fn train(
        cfg: &TwoTowerConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(TwoTower, TrainReport)> {
        Self::train_with(&Compute::FusedCpu, cfg, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]); the model
    /// returned is in host memory whichever device trained it.
    pub fn train_with(
        compute: &Compute,
        cfg: &TwoTowerConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(TwoTower, TrainReport)> {
        cfg.validate()?;
        data.validate()?;
        let model = Self::warm_started(cfg, data, warm, &compute.device())?;
        let mut run = Run::new(model, data, compute)?;
        let schedule = Schedule {
            epochs: cfg.epochs,
            patience: cfg.patience,
            learning_rate: cfg.learning_rate,
            final_lr_fraction: cfg.final_lr_fraction,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        Ok((run.model.into_cpu()?, report))
    }

    /// The untrained model for `data`: fresh, or from `warm`'s weights (id rows of known
    /// items and token rows moved to their new indices, new items' id rows zero, every other
    /// tensor copied when its shape is unchanged).
    pub(crate) fn warm_started(
        cfg: &TwoTowerConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let c = data.catalog;
        let features = data.user_features.filter(|_| cfg.use_user_features);
        let vocab = Vocabulary {
            id_rows: c.num_items,
            num_tokens: if c.item_tokens.is_empty() {
                0
            } else {
                c.num_tokens
            },
            duration: (!c.duration_seconds.is_empty())
                .then(|| Standardizer::fit(&c.duration_seconds)),
            age: (!c.age_days.is_empty()).then(|| Standardizer::fit(&c.age_days)),
            user_cardinalities: features.map_or(Vec::new(), |f| f.cardinalities.clone()),
            num_numeric: features.map_or(0, |f| f.num_numeric),
        };
        let items = ItemFeatures::from_catalog(c, &vocab)?;
        let mut model = TwoTower::init(cfg, vocab, items, device)?;
        let Some(w) = warm else {
            return Ok(model);
        };
        nn::vars::warm_start(&model.varmap, &w.weights, |name| {
            if name.starts_with("ids.") {
                Some(w.items.as_slice())
            } else if name.starts_with("tokens.") {
                Some(w.tokens.as_slice())
            } else {
                None
            }
        })?;
        let old_rows = w.weights.get(IDS).and_then(|t| t.dim(0).ok());
        if let (Some(old_rows), true) = (old_rows, w.items.len() == model.vocab.id_rows) {
            let var = model.network.ids.var();
            let width = model.network.ids.width();
            let mut rows = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for (r, prev) in w.items.iter().enumerate() {
                if !prev.is_some_and(|p| (p as usize) < old_rows) {
                    rows[r * width..(r + 1) * width].fill(0.0);
                }
            }
            var.set(&Tensor::from_vec(rows, var.shape(), &model.device)?)?;
        }
        model.refresh_table()?;
        Ok(model)
    }
}

/// Row gradients of the embedding tables, in the optimiser's sparse-table order.
struct TableGrads {
    ids: RowGrads,
    tokens: Option<RowGrads>,
    user: Vec<RowGrads>,
}

/// One training run's state.
struct Run<'a> {
    model: TwoTower,
    data: TrainingSet<'a>,
    features: Option<&'a UserFeatures>,
    /// Draws the shared negatives (None when `num_negatives` is 0).
    sampler: Option<NegativeSampler>,
    /// Each item's share p_j of the training targets (the in-batch candidates' distribution).
    target_share: Vec<f64>,
    optimizer: InPlaceAdamW,
    grads: TableGrads,
    rng: Rng,
    batches: ShuffledBatches,
    /// Fused CPU kernels, or candle ops on the model's device.
    compute: Compute,
}

impl<'a> Run<'a> {
    fn new(model: TwoTower, data: &TrainingSet<'a>, compute: &Compute) -> Result<Self> {
        let cfg = model.config.clone();
        let features = data.user_features.filter(|_| cfg.use_user_features);
        let sampler = match cfg.num_negatives {
            0 => None,
            s => Some(
                NegativeSampler::new(&data.item_counts(), cfg.sampling_power, s)
                    .ok_or_else(|| invalid("cannot build the negative sampler"))?,
            ),
        };
        let mut counts = vec![0f64; data.catalog.num_items];
        for e in data.examples {
            counts[data.target(e) as usize] += 1.0;
        }
        let total = data.examples.len().max(1) as f64;
        let target_share = counts.into_iter().map(|c| c / total).collect();

        let net = &model.network;
        let mut sparse = vec![(net.ids.var().clone(), net.ids.width())];
        if let Some(t) = &net.tokens {
            sparse.push((t.var().clone(), t.width()));
        }
        sparse.extend(
            net.user_categorical
                .iter()
                .map(|t| (t.var().clone(), t.width())),
        );
        // The item tower's output bias is among them although the softmax gives it no gradient
        // in exact arithmetic (it shifts every logit of a row alike), so AdamW moves it on
        // rounding noise: leaving it out lowered validation HR@10 on ml-100k in both seeds tried
        // (README, two_tower), and the scores' order does not depend on it.
        let dense: Vec<Var> = {
            let vars = model
                .varmap
                .data()
                .lock()
                .map_err(|_| invalid("variable map lock poisoned"))?;
            let mut names: Vec<&String> = vars
                .keys()
                .filter(|k| k.starts_with("item_tower.") || k.starts_with("user_tower."))
                .collect();
            names.sort();
            names.into_iter().map(|k| vars[k].clone()).collect()
        };
        let params = AdamWParams {
            lr: cfg.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
        };
        let grads = TableGrads {
            ids: RowGrads::new(net.ids.rows(), net.ids.width()),
            tokens: net
                .tokens
                .as_ref()
                .map(|t| RowGrads::new(t.rows(), t.width())),
            user: net
                .user_categorical
                .iter()
                .map(|t| RowGrads::new(t.rows(), t.width()))
                .collect(),
        };
        Ok(Self {
            optimizer: InPlaceAdamW::for_compute(compute, dense, sparse, params)?,
            compute: compute.clone(),
            rng: Rng::new(cfg.seed ^ 0x7A0_70EE),
            batches: ShuffledBatches::new(data.examples.len(), cfg.batch_size),
            model,
            data: *data,
            features,
            sampler,
            target_share,
            grads,
        })
    }
}

/// One step's inputs, built on the host the same way (and with the same random draws)
/// whichever way the step computes.
struct Batch {
    /// Each row's target item.
    targets: Vec<u32>,
    /// The user tower's inputs.
    users: UserBatch,
    /// The item tower's inputs: the batch's distinct candidates (targets and negatives).
    items: ItemBatch,
    /// Each column's candidate as a row of `items`.
    local: Vec<u32>,
    /// The logQ correction of each column.
    adjust: Vec<f32>,
    /// The masked `(row, column)` entries: accidental hits and not-yet-published candidates.
    hits: Vec<(u32, u32)>,
    /// Each `(row, column)`'s age bucket, row-major, when the model has the age bias.
    ages: Option<Vec<u32>>,
}

impl Run<'_> {
    /// The inputs of step `step`: the batch's examples, the shared negatives, the DropoutNet
    /// mask of the id embeddings.
    fn batch(&mut self, step: usize) -> Batch {
        let model = &self.model;
        let cfg = &model.config;
        let data = &self.data;
        let features = self.features;
        let batch = self.batches.batch(step);
        let targets: Vec<u32> = batch
            .iter()
            .map(|&i| data.target(&data.examples[i]))
            .collect();
        let sources = batch.iter().map(|&i| {
            let e = &data.examples[i];
            let (user, pos) = (e.user as usize, e.pos as usize);
            let seq = data.histories.user_items(user);
            UserSource {
                history: &seq[pos.saturating_sub(cfg.max_history)..pos],
                categorical: features.map_or(&[], |f| f.categorical_of(user)),
                numeric: features.map_or(&[], |f| f.numeric_of(user)),
            }
        });
        let layout = &model.network.layout;
        let users = model
            .features
            .user_batch(layout, &model.vocab, cfg.recent_window, sources);

        let negatives = match &self.sampler {
            Some(s) => s.sample(&mut self.rng),
            None => Vec::new(),
        };
        let columns: Vec<u32> = targets.iter().chain(&negatives).copied().collect();
        let mut unique = columns.clone();
        unique.sort_unstable();
        unique.dedup();
        let local: Vec<u32> = columns
            .iter()
            .map(|j| unique.binary_search(j).unwrap_or(0) as u32)
            .collect();
        let sampler = self.sampler.as_ref();
        let (adjust, mut hits) = corrections(sampler, &self.target_share, &targets, &columns);
        // Each candidate's age at its row's example time (the example age of Covington et al.
        // 2016, section 3.3, on the item side); a candidate not yet published then is masked.
        let ages = model.network.age_bias.as_ref().map(|_| {
            let h = data.histories;
            let reference = data.catalog.reference_time;
            let mut buckets = Vec::with_capacity(batch.len() * columns.len());
            for (r, &i) in batch.iter().enumerate() {
                let e = &data.examples[i];
                let at = h.offsets[e.user as usize] + e.pos as usize;
                let shift = match (reference, h.times.get(at)) {
                    (Some(reference), Some(&t)) => (reference - t) as f32 / 86_400.0,
                    _ => 0.0,
                };
                for (c, &j) in columns.iter().enumerate() {
                    let age = model.features.age.get(j as usize).copied().flatten();
                    let age = age.map(|a| a - shift);
                    if c != r && age.is_some_and(|a| a < 0.0) {
                        hits.push((r as u32, c as u32));
                    }
                    buckets.push(age_bucket(age));
                }
            }
            buckets
        });
        let rng = &mut self.rng;
        let p_id = cfg.id_dropout as f64;
        let items = model
            .features
            .item_batch(&unique, &model.vocab, |_| rng.uniform() >= p_id);
        Batch {
            targets,
            users,
            items,
            local,
            adjust,
            hits,
            ages,
        }
    }

    /// The batch's logits `[u, 1] . [v_j, b_j] (+ age term)` / temperature from the gathered
    /// item and user blocks (tensors or leaves), with dropout drawn item tower first.
    fn logits(
        &mut self,
        b: &Batch,
        item_block: &Tensor,
        user_block: &Tensor,
        age_term: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (net, cfg) = (&self.model.network, &self.model.config);
        let p = cfg.dropout;
        let rng = &mut self.rng;
        let item_out = net.item_forward(item_block, &b.items.dense, Some((p, &mut *rng)))?;
        let u = net.user_forward(user_block, &b.users.dense, Some((p, &mut *rng)))?;
        let local = Tensor::from_slice(&b.local, b.local.len(), item_out.device())?;
        let candidates = item_out.index_select(&local, 0)?;
        let mut logits = with_bias_column(&u)?.matmul(&candidates.t()?)?;
        if let Some(a) = age_term {
            logits = (logits + a)?;
        }
        if cfg.temperature != 1.0 {
            logits = logits.affine(1.0 / cfg.temperature, 0.0)?;
        }
        Ok(logits)
    }

    /// One step with the fused CPU kernels: the blocks gathered on the host as leaves, whose
    /// gradients are scattered back to the tables' rows; returns the batch loss.
    fn fused_step(&mut self, b: &Batch) -> Result<f64> {
        let device = &self.model.device.clone();
        let net = &self.model.network;
        let layout = &net.layout;
        let embed = layout.item_embed();
        let (items, users) = (&b.items, &b.users);
        let item_leaf =
            Var::from_tensor(&block(net.gather_items(items)?, items.rows, embed, device)?)?;
        let user_leaf = Var::from_tensor(&block(
            net.gather_users(users)?,
            users.rows,
            layout.user_sparse,
            device,
        )?)?;
        // The age term a(k_ij) enters as a leaf gathered here; its gradient is folded into the
        // bucket weights after the backward pass, in one pass over the batch's pairs.
        let age_term = match (&net.age_bias, &b.ages) {
            (Some(w), Some(buckets)) => {
                let weights = w.to_vec1::<f32>()?;
                let values: Vec<f32> = buckets.iter().map(|&k| weights[k as usize]).collect();
                let shape = (b.targets.len(), b.local.len());
                let leaf = Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?;
                Some((w.clone(), leaf, buckets))
            }
            _ => None,
        };
        let logits = self.logits(
            b,
            item_leaf.as_tensor(),
            user_leaf.as_tensor(),
            age_term.as_ref().map(|(_, leaf, _)| leaf.as_tensor()),
        )?;
        let objective = SoftmaxCrossEntropy::new((0..b.targets.len() as u32).collect())
            .with_column_adjust(b.adjust.clone())
            .with_masked(b.hits.clone());
        let loss = logits.apply_op1(objective)?.mean_all()?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        let mut store = loss.backward()?;
        if let Some((w, leaf, buckets)) = age_term {
            let mut grad = vec![0f32; w.elem_count()];
            if let Some(g) = store.get(leaf.as_tensor()) {
                let g = g.flatten_all()?.to_vec1::<f32>()?;
                for (&k, &x) in buckets.iter().zip(&g) {
                    grad[k as usize] += x;
                }
            }
            store.insert(&w, Tensor::from_vec(grad, w.elem_count(), device)?);
        }
        self.optimizer.step_dense(&store)?;

        let grad_of = |leaf: &Var| {
            store
                .get(leaf.as_tensor())
                .ok_or_else(|| invalid("no gradient reached the embeddings"))
                .and_then(|g| Ok(g.contiguous()?))
        };
        let g_items = grad_of(&item_leaf)?;
        let g_users = grad_of(&user_leaf)?;
        let layout = &self.model.network.layout;
        let grads = &mut self.grads;
        let id_width = layout.id_width;
        let mut scatter_embed =
            |g: &[f32], offset: usize, stride: usize, ids: &Bags, toks: &Bags| {
                grads.ids.scatter(g, offset, stride, ids);
                if let Some(tg) = grads.tokens.as_mut() {
                    tg.scatter(g, offset + id_width, stride, toks);
                }
            };
        with_f32_data(&g_items, |g| {
            scatter_embed(g, 0, embed, &items.ids, &items.tokens)
        })?;
        with_f32_data(&g_users, |g| {
            let stride = layout.user_sparse;
            scatter_embed(g, 0, stride, &users.ids, &users.tokens);
            if let Some(offset) = layout.recent {
                scatter_embed(g, offset, stride, &users.recent_ids, &users.recent_tokens);
            }
        })?;
        with_f32_data(&g_users, |g| {
            for ((ug, bags), (offset, _)) in grads
                .user
                .iter_mut()
                .zip(&users.categorical)
                .zip(&layout.user_categorical)
            {
                ug.scatter(g, *offset, layout.user_sparse, bags);
            }
        })?;
        let mut tables: Vec<&mut RowGrads> = vec![&mut grads.ids];
        tables.extend(grads.tokens.as_mut());
        tables.extend(grads.user.iter_mut());
        for (k, table) in tables.into_iter().enumerate() {
            let (rows, gv) = table.take_sorted();
            self.optimizer.step_rows(k, &rows, &gv)?;
        }
        Ok(value)
    }

    /// [`Self::fused_step`] in candle ops on the model's device: the tables are read through
    /// compact leaves of the rows the batch touches, the age term is gathered from the bucket
    /// weights (so the backward pass gives their gradient), and every update stays on the
    /// device; returns the batch loss.
    fn step_in_candle_ops(&mut self, b: &Batch) -> Result<f64> {
        let net = &self.model.network;
        let gathered = net.gather_leaves(Some(&b.items), Some(&b.users))?;
        let (Some(item_block), Some(user_block)) = (&gathered.items, &gathered.users) else {
            return Err(invalid("a training batch gathered no block"));
        };
        let age_term = match (&net.age_bias, &b.ages) {
            (Some(w), Some(buckets)) => {
                let idx = Tensor::from_slice(buckets, buckets.len(), w.device())?;
                let shape = (b.targets.len(), b.local.len());
                Some(w.index_select(&idx, 0)?.reshape(shape)?)
            }
            _ => None,
        };
        let logits = self.logits(b, item_block, user_block, age_term.as_ref())?;
        let rows: Vec<u32> = (0..b.targets.len() as u32).collect();
        let loss = softmax_cross_entropy(&logits, &rows, &b.adjust, &b.hits)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.step_dense(&store)?;
        for (table, (touched, leaf)) in gathered.leaves.iter().enumerate() {
            if let Some(g) = store.get(leaf.as_tensor()) {
                self.optimizer.step_rows_tensor(table, &touched.rows, g)?;
            }
        }
        Ok(value)
    }
}

/// Per-column logQ corrections `-log(B p_j + S q_j)` (B = `targets.len()`, p_j =
/// `target_share[j]`, S q_j = the sampler's expected draws of j) and the accidental hits
/// `(row, column)` of a batch whose columns are `targets` then the negatives: every column
/// holding a row's target other than the row's own column.
pub(super) fn corrections(
    sampler: Option<&NegativeSampler>,
    target_share: &[f64],
    targets: &[u32],
    columns: &[u32],
) -> (Vec<f32>, Vec<(u32, u32)>) {
    let b = targets.len() as f64;
    let adjust = columns
        .iter()
        .map(|&j| {
            let drawn = sampler.map_or(0.0, |s| f64::from(s.log_expected_count(j)).exp());
            let share = target_share.get(j as usize).copied().unwrap_or(0.0);
            -((b * share + drawn).max(1e-12).ln() as f32)
        })
        .collect();
    let mut column_of: HashMap<u32, Vec<u32>> = HashMap::new();
    for (c, &j) in columns.iter().enumerate() {
        column_of.entry(j).or_default().push(c as u32);
    }
    let mut hits = Vec::new();
    for (row, t) in targets.iter().enumerate() {
        if let Some(cols) = column_of.get(t) {
            let others = cols.iter().filter(|&&c| c as usize != row);
            hits.extend(others.map(|&c| (row as u32, c)));
        }
    }
    (adjust, hits)
}

impl Fit for Run<'_> {
    type Error = RetrievalError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.data.examples.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let batch = self.batch(step);
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        let value = if self.compute.is_fused_cpu() {
            self.fused_step(&batch)?
        } else {
            self.step_in_candle_ops(&batch)?
        };
        Ok(StepLoss {
            sum: value,
            weight: 1.0,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.refresh_table()?;
        self.model
            .validation_hit_rate(self.data.validation, self.features)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        nn::vars::restore(&self.model.varmap, &snapshot)?;
        self.model.refresh_table()
    }
}
