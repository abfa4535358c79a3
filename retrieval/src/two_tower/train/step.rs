//! One training step of [`super::Run`]: the batch's inputs built on the host, then the forward
//! and backward passes and the updates, with the fused CPU kernels or in candle ops (any
//! device) from the same inputs and random draws.

use candle_core::{Tensor, Var};
use nn::bag::{with_f32_data, Bags, RowGrads};
use nn::layers::with_bias_column;
use nn::portable::softmax_cross_entropy;
use nn::xent::SoftmaxCrossEntropy;

use super::super::network::{age_bucket, block, ItemBatch, UserBatch, UserSource};
use super::{corrections, Run};
use crate::error::{invalid, Result};

/// One step's inputs, built on the host the same way (and with the same random draws)
/// whichever way the step computes.
pub(super) struct Batch {
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
    pub(super) fn batch(&mut self, step: usize) -> Batch {
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
    pub(super) fn fused_step(&mut self, b: &Batch) -> Result<f64> {
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
    pub(super) fn step_in_candle_ops(&mut self, b: &Batch) -> Result<f64> {
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
