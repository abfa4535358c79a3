//! DeepFM (Guo, Tang, Ye, Li and He, "DeepFM: A Factorization-Machine based Neural Network for
//! CTR Prediction", IJCAI 2017) as a ranker, `[ranking] model = "deepfm"`:
//!
//! `logit = y_FM + y_DNN` (eq. 1 before the sigmoid), where
//!
//! - `y_FM = sum_f w_f + sum_{f<g} <v_f, v_g>` (eq. 2) over the fields' embeddings `v_f`
//!   (width `embedding_dim` = k) and first-order weights `w_f`, the pairwise sum computed in
//!   O(fields x k) as `1/2 sum_d [(sum_f v_fd)^2 - sum_f v_fd^2]` (Rendle 2010, lemma 3.1);
//! - `y_DNN` is a ReLU tower (`hidden`) over the concatenated `v_f` (eq. 3-4): the same
//!   embeddings feed both parts.
//!
//! The fields are those of the YouTube ranker's input (see `ranking/src/model.rs`): the
//! candidate item, the candidate's tokens (mean), the recent watches (mean), their tokens
//! (mean), each user categorical field, and each continuous feature. An embedding table row is
//! `[v (k) | w (1)]`, so a bag of ids gives a field's vector and its first-order weight at once.
//! A continuous field is its encoded inputs times learned vectors, `[v | w]_j = sum_a x_ja
//! [v | w]_ja` over `x~, x~^2, sqrt(x~)` and the missing indicator: the paper's treatment of a
//! continuous field (its value times an embedding) for each of the four inputs, so that a
//! missing value has a vector of its own. The deep tower's output bias is the global bias.
//!
//! Trained by `ranking/src/feature_ranker.rs` with the watch-time-weighted logistic loss
//! (e^logit = expected watch time) or unit weights.

use candle_core::{Device, Tensor};
use candle_nn::{Init, VarBuilder};
use nn::layers::Tower;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};
use crate::example::FeatureSchema;
use crate::feature_ranker::{CrossHead, TrainingKeys};
use crate::model::{tower_fill, Fill, InputDims, LogitHead, EMBEDDING_INIT_STD};
use crate::quantiles::INPUTS_PER_CONTINUOUS;
use crate::serve::ServingStack;
use crate::train::FitSettings;

/// Registry name of DeepFM.
pub const KIND: &str = "deepfm";

/// Section name in error messages.
const SECTION: &str = "ranking.deepfm";

/// Name of the continuous fields' vectors (`[continuous, 4, k + 1]`).
const CONTINUOUS_VECTORS: &str = "fm.continuous";

/// DeepFM's settings (`[ranking.deepfm]`). Every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepFmConfig {
    /// k: width of every field's embedding (the FM's factors and the tower's input per field).
    pub embedding_dim: usize,
    /// Widths of the deep part's ReLU layers, input side first (empty: a linear layer).
    pub hidden: Vec<usize>,
    /// Quantile intervals fitted per continuous feature.
    pub n_quantiles: usize,
    /// Maximum passes over the training examples.
    pub epochs: usize,
    /// Examples per gradient step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss (0 = never stop early).
    pub patience: usize,
    /// Seed of the initial weights and of the shuffles.
    pub seed: u64,
}

impl Default for DeepFmConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 16,
            hidden: vec![256, 128, 64],
            n_quantiles: 256,
            epochs: 20,
            batch_size: 512,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            patience: 2,
            seed: 42,
        }
    }
}

impl DeepFmConfig {
    /// Rejects settings that cannot train; the error names `[ranking.deepfm]` and the key.
    pub fn validate(&self) -> Result<()> {
        if self.embedding_dim == 0 {
            return Err(RankingError::InvalidConfig(format!(
                "[{SECTION}] embedding_dim must be positive"
            )));
        }
        TrainingKeys {
            section: SECTION,
            hidden: &self.hidden,
            n_quantiles: self.n_quantiles,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
        }
        .validate()
    }
}

/// `1/2 sum_d [(sum_f v_fd)^2 - sum_f v_fd^2]` of `fields` `[batch, f, k]`: the FM's
/// `sum_{f<g} <v_f, v_g>` per row in O(f k), `[batch]`.
pub(crate) fn fm_pairwise(fields: &Tensor) -> Result<Tensor> {
    let sum_sq = fields.sum(1)?.sqr()?;
    let sq_sum = fields.sqr()?.sum(1)?;
    Ok((sum_sq - sq_sum)?.sum(1)?.affine(0.5, 0.0)?)
}

/// DeepFM's head over x_0.
pub(crate) struct DeepFmHead {
    /// k.
    dim: usize,
    /// Fields read from the tables (4 + user fields), each `k + 1` wide in x_0.
    embedded: usize,
    /// Continuous fields.
    continuous: usize,
    /// `[continuous, 4, k + 1]`: per continuous field, the vector of each encoded input.
    vectors: Option<Tensor>,
    /// The deep part over the `fields x k` embeddings.
    tower: Tower,
    /// The scoring path's copies: the continuous vectors as a plain array, the fused tower.
    scoring: Option<(Vec<f32>, ServingStack)>,
}

impl DeepFmHead {
    /// Every field's `[v | w]`, `[batch, fields, k + 1]`.
    fn fields(&self, x0: &Tensor) -> Result<Tensor> {
        let (batch, w) = (x0.dim(0)?, self.dim + 1);
        let embedded = x0
            .narrow(1, 0, self.embedded * w)?
            .reshape((batch, self.embedded, w))?;
        let Some(vectors) = &self.vectors else {
            return Ok(embedded);
        };
        // [c, batch, 4] x [c, 4, k + 1] -> [c, batch, k + 1] -> [batch, c, k + 1].
        let inputs = x0
            .narrow(
                1,
                self.embedded * w,
                self.continuous * INPUTS_PER_CONTINUOUS,
            )?
            .reshape((batch, self.continuous, INPUTS_PER_CONTINUOUS))?
            .transpose(0, 1)?
            .contiguous()?;
        let continuous = inputs.matmul(vectors)?.transpose(0, 1)?;
        Ok(Tensor::cat(&[&embedded, &continuous], 1)?)
    }

    /// One x_0 row's FM term (first order plus pairwise); writes the deep part's input (every
    /// field's v) into `deep`.
    fn fm_row(&self, x: &[f32], vectors: &[f32], deep: &mut [f32]) -> f32 {
        let (k, w) = (self.dim, self.dim + 1);
        let mut first = 0.0;
        for (f, field) in x[..self.embedded * w].chunks(w).enumerate() {
            deep[f * k..(f + 1) * k].copy_from_slice(&field[..k]);
            first += field[k];
        }
        let inputs = &x[self.embedded * w..];
        for c in 0..self.continuous {
            let out = &mut deep[(self.embedded + c) * k..(self.embedded + c + 1) * k];
            out.fill(0.0);
            for a in 0..INPUTS_PER_CONTINUOUS {
                let j = c * INPUTS_PER_CONTINUOUS + a;
                let vector = &vectors[j * w..(j + 1) * w];
                for (o, v) in out.iter_mut().zip(vector) {
                    *o += inputs[j] * v;
                }
                first += inputs[j] * vector[k];
            }
        }
        let fields = self.embedded + self.continuous;
        let mut pairwise = 0.0;
        for d in 0..k {
            let (mut sum, mut squares) = (0.0, 0.0);
            for f in 0..fields {
                let v = deep[f * k + d];
                sum += v;
                squares += v * v;
            }
            pairwise += sum * sum - squares;
        }
        first + 0.5 * pairwise
    }
}

impl LogitHead for DeepFmHead {
    fn logits(&self, x0: &Tensor) -> Result<Tensor> {
        let fields = self.fields(x0)?;
        let (batch, n, _) = fields.dims3()?;
        let first = fields.narrow(2, self.dim, 1)?.sum((1, 2))?;
        let v = fields.narrow(2, 0, self.dim)?.contiguous()?;
        let pairwise = fm_pairwise(&v)?;
        let deep = self
            .tower
            .forward(&v.reshape((batch, n * self.dim))?)?
            .squeeze(1)?;
        Ok(((first + pairwise)? + deep)?)
    }
}

impl CrossHead for DeepFmHead {
    type Config = DeepFmConfig;
    const KIND: &'static str = KIND;

    fn validate(config: &DeepFmConfig) -> Result<()> {
        config.validate()
    }

    fn fit_settings(c: &DeepFmConfig, unit_weights: bool) -> FitSettings {
        FitSettings {
            dims: InputDims::uniform(c.embedding_dim + 1),
            n_quantiles: c.n_quantiles,
            epochs: c.epochs,
            batch_size: c.batch_size,
            learning_rate: c.learning_rate,
            weight_decay: c.weight_decay,
            patience: c.patience,
            seed: c.seed,
            unit_weights,
        }
    }

    fn build(
        vb: VarBuilder,
        schema: &FeatureSchema,
        config: &DeepFmConfig,
        _width: usize,
    ) -> Result<Self> {
        let dim = config.embedding_dim;
        let embedded = 4 + schema.user_cardinalities.len();
        let continuous = schema.continuous.len();
        let vectors = if continuous > 0 {
            let shape = (continuous, INPUTS_PER_CONTINUOUS, dim + 1);
            Some(vb.get_with_hints(shape, CONTINUOUS_VECTORS, Init::Const(0.0))?)
        } else {
            None
        };
        let fields = embedded + continuous;
        Ok(Self {
            dim,
            embedded,
            continuous,
            vectors,
            tower: Tower::new(vb.pp("tower"), fields * dim, &config.hidden, 1)?,
            scoring: None,
        })
    }

    fn fill(name: &str, dims: &[usize], prior: f32) -> Fill {
        if name == CONTINUOUS_VECTORS {
            Fill::Normal(EMBEDDING_INIT_STD)
        } else {
            tower_fill(name, dims, prior)
        }
    }

    fn prepare_scoring(&mut self) -> Result<()> {
        let vectors = match &self.vectors {
            Some(v) => v.flatten_all()?.to_vec1::<f32>()?,
            None => Vec::new(),
        };
        self.scoring = Some((vectors, ServingStack::from_linears(self.tower.layers())?));
        Ok(())
    }

    /// The FM term and the deep input per row in plain Rust (in parallel), then the fused tower.
    fn score_rows(&self, x0: Vec<f32>, rows: usize, device: &Device) -> Result<Vec<f32>> {
        let Some((vectors, tower)) = &self.scoring else {
            let width = x0.len() / rows.max(1);
            let x0 = Tensor::from_vec(x0, (rows, width), device)?;
            return Ok(self.logits(&x0)?.to_vec1::<f32>()?);
        };
        let width = self.embedded * (self.dim + 1) + self.continuous * INPUTS_PER_CONTINUOUS;
        let deep_width = (self.embedded + self.continuous) * self.dim;
        let mut deep = vec![0f32; rows * deep_width];
        let mut fm = vec![0f32; rows];
        deep.par_chunks_mut(deep_width)
            .zip(fm.par_iter_mut())
            .zip(x0.par_chunks(width))
            .for_each(|((d, fm), x)| *fm = self.fm_row(x, vectors, d));
        let deep = Tensor::from_vec(deep, (rows, deep_width), device)?;
        let logits = tower.forward(deep, false)?.squeeze(1)?.to_vec1::<f32>()?;
        Ok(logits.iter().zip(&fm).map(|(d, f)| d + f).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_ranker::testkit;
    use candle_core::Device;

    #[test]
    fn pairwise_term_in_o_fk_equals_the_double_sum() -> Result<()> {
        // Two rows of three fields, k = 2.
        let rows = [
            [[1.0f32, 2.0], [3.0, -1.0], [0.5, 4.0]],
            [[0.0, 0.0], [2.0, 1.0], [-1.0, 3.0]],
        ];
        // Row 0: <v1,v2> + <v1,v3> + <v2,v3> = (3 - 2) + (0.5 + 8) + (1.5 - 4) = 7.
        // Row 1: 0 + 0 + (-2 + 3) = 1.
        let explicit: Vec<f32> = rows
            .iter()
            .map(|fields| {
                let mut sum = 0.0;
                for f in 0..fields.len() {
                    for g in f + 1..fields.len() {
                        sum += fields[f][0] * fields[g][0] + fields[f][1] * fields[g][1];
                    }
                }
                sum
            })
            .collect();
        assert_eq!(explicit, vec![7.0, 1.0]);
        let flat: Vec<f32> = rows.iter().flatten().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (2, 3, 2), &Device::Cpu)?;
        let fast = fm_pairwise(&t)?.to_vec1::<f32>()?;
        assert_eq!(fast, explicit);
        Ok(())
    }

    #[test]
    fn logit_is_first_order_plus_pairwise_plus_deep() -> Result<()> {
        // One user field, one continuous feature; k = 2, a tower without hidden layers.
        let schema = testkit::xor_schema();
        let config = DeepFmConfig {
            embedding_dim: 2,
            hidden: vec![],
            ..DeepFmConfig::default()
        };
        let device = Device::Cpu;
        // Fields: item, item tokens, recent, recent tokens, user field, continuous: 6 x k.
        let tower_w: Vec<f32> = (0..12).map(|i| 0.1 * i as f32 - 0.5).collect();
        let vectors: Vec<f32> = (0..12).map(|i| 0.05 * i as f32).collect();
        let weights = std::collections::HashMap::from([
            (
                "tower.output.weight".to_string(),
                Tensor::from_vec(tower_w.clone(), (1, 12), &device)?,
            ),
            (
                "tower.output.bias".to_string(),
                Tensor::from_vec(vec![0.25f32], 1, &device)?,
            ),
            (
                CONTINUOUS_VECTORS.to_string(),
                Tensor::from_vec(vectors.clone(), (1, 4, 3), &device)?,
            ),
        ]);
        let vb = VarBuilder::from_tensors(weights, candle_core::DType::F32, &device);
        let head = DeepFmHead::build(vb, &schema, &config, 0)?;
        // x_0: five embedded fields of [v1, v2, w], then the four continuous inputs.
        let embedded = [
            [1.0f32, 0.0, 0.5],
            [0.0, 1.0, -0.5],
            [2.0, 1.0, 0.25],
            [0.0, 0.0, 0.0],
            [-1.0, 1.0, 1.0],
        ];
        let inputs = [0.5f32, 0.25, 0.7, 0.0];
        let mut x0: Vec<f32> = embedded.iter().flatten().copied().collect();
        x0.extend_from_slice(&inputs);
        let got = head.logits(&Tensor::from_vec(x0.clone(), (1, 19), &device)?)?;
        // The continuous field: sum_a x_a [v | w]_a.
        let mut cont = [0f32; 3];
        for (a, x) in inputs.iter().enumerate() {
            for (d, c) in cont.iter_mut().enumerate() {
                *c += x * vectors[a * 3 + d];
            }
        }
        let fields: Vec<[f32; 3]> = embedded.iter().copied().chain([cont]).collect();
        let first: f32 = fields.iter().map(|f| f[2]).sum();
        let mut pairwise = 0.0;
        for f in 0..fields.len() {
            for g in f + 1..fields.len() {
                pairwise += fields[f][0] * fields[g][0] + fields[f][1] * fields[g][1];
            }
        }
        let deep: f32 = fields
            .iter()
            .flat_map(|f| [f[0], f[1]])
            .zip(&tower_w)
            .map(|(x, w)| x * w)
            .sum::<f32>()
            + 0.25;
        let want = first + pairwise + deep;
        let got = got.to_vec1::<f32>()?[0];
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // The scoring path computes the same.
        let mut head = head;
        head.prepare_scoring()?;
        let scored = head.score_rows(x0, 1, &device)?[0];
        assert!((scored - want).abs() < 1e-5, "{scored} vs {want}");
        Ok(())
    }

    #[test]
    fn deepfm_learns_a_cross_of_two_fields_and_round_trips() {
        let config = DeepFmConfig {
            embedding_dim: 4,
            hidden: vec![16],
            epochs: 15,
            batch_size: 128,
            learning_rate: 1e-2,
            patience: 0,
            ..DeepFmConfig::default()
        };
        testkit::learns_the_cross_and_round_trips::<DeepFmHead>(&config);
    }

    #[test]
    fn bad_settings_name_their_section_and_key() {
        let err = |c: DeepFmConfig| c.validate().err().map(|e| e.to_string());
        let zero = err(DeepFmConfig {
            embedding_dim: 0,
            ..DeepFmConfig::default()
        });
        assert!(zero.is_some_and(|e| e.contains("[ranking.deepfm] embedding_dim")));
        let lr = err(DeepFmConfig {
            learning_rate: f64::NAN,
            ..DeepFmConfig::default()
        });
        assert!(lr.is_some_and(|e| e.contains("[ranking.deepfm] learning_rate")));
        assert!(DeepFmConfig::default().validate().is_ok());
    }
}
