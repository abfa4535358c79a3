//! DCN-v2 (Wang, Shivanna, Cheng, Jain, Lin, Hong and Chi, "DCN V2: Improved Deep & Cross
//! Network and Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021) as a
//! ranker, `[ranking] model = "dcn_v2"`.
//!
//! x_0 is the YouTube ranker's input (see `ranking/src/model.rs`): the concatenated
//! embeddings of the candidate, its tokens, the recent watches, their tokens and the user
//! fields, then the encoded continuous features. The cross network applies `cross_layers`
//! layers
//!
//! - full rank (`low_rank = 0`, eq. 1): `x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l`;
//! - the mixture of low-rank experts (`low_rank = r > 0`, `experts = K`, eq. 3):
//!   `x_{l+1} = sum_i G_i(x_l) E_i(x_l) + x_l`,
//!   `E_i(x_l) = x_0 ⊙ (U_i g(C_i g(V_i^T x_l)) + b_l)` with `U_i, V_i` of rank r, `C_i`
//!   r x r, g = tanh and the gate `G(x_l) = softmax(Γ x_l)` over the experts (K = 1: the one
//!   expert, no gate).
//!
//! The deep part is a ReLU tower (`hidden`) either `stacked` on the cross network (its input
//! is x_L, section 3 figure 2b) or `parallel` beside it (its input is x_0, and the logit is
//! read from `[x_L, h]`, figure 2a). The last layer, `tower.output`, gives the logit; its bias
//! starts at the prior log-odds.
//!
//! Trained by `ranking/src/feature_ranker.rs` with the watch-time-weighted logistic loss
//! (e^logit = expected watch time) or unit weights.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};
use crate::example::FeatureSchema;
use crate::feature_ranker::{glorot, CrossHead, TrainingKeys};
use crate::model::{tower_fill, Fill, InputDims, LogitHead};
use crate::serve::{CrossUpdate, ServingStack};
use crate::train::FitSettings;

/// Registry name of DCN-v2.
pub const KIND: &str = "dcn_v2";

/// Section name in error messages.
const SECTION: &str = "ranking.dcn_v2";

/// Where the deep part sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Structure {
    /// The tower reads the cross network's output.
    Stacked,
    /// The tower reads x_0; the logit reads the cross output and the tower's.
    Parallel,
}

/// DCN-v2's settings (`[ranking.dcn_v2]`). Every key has a default; the embedding widths are
/// the YouTube ranker's, so that the two differ by the cross network alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DcnV2Config {
    /// Width of the item embedding (candidate and recent watches).
    pub item_dim: usize,
    /// Width of the token embedding.
    pub token_dim: usize,
    /// Width of each user categorical field's embedding.
    pub user_dim: usize,
    /// Number of cross layers (0: the deep part alone).
    pub cross_layers: usize,
    /// 0: full-rank cross layers; r > 0: each layer a mixture of `experts` rank-r experts.
    pub low_rank: usize,
    /// Experts per low-rank layer (read when `low_rank > 0`).
    pub experts: usize,
    /// `stacked` or `parallel`.
    pub structure: Structure,
    /// Widths of the deep part's ReLU layers, input side first.
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

impl Default for DcnV2Config {
    fn default() -> Self {
        Self {
            item_dim: 32,
            token_dim: 16,
            user_dim: 4,
            cross_layers: 3,
            low_rank: 0,
            experts: 4,
            structure: Structure::Stacked,
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

impl DcnV2Config {
    /// Rejects settings that cannot train; the error names `[ranking.dcn_v2]` and the key.
    pub fn validate(&self) -> Result<()> {
        if self.low_rank > 0 && self.experts == 0 {
            return Err(RankingError::InvalidConfig(format!(
                "[{SECTION}] experts must be positive when low_rank is"
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

/// One low-rank expert: `U g(C g(V^T x))`.
struct Expert {
    v: Linear,
    c: Linear,
    u: Linear,
}

/// One cross layer.
enum CrossLayer {
    /// `x_0 ⊙ (W x_l + b) + x_l`.
    Full(Linear),
    /// `sum_i G_i(x_l) x_0 ⊙ (U_i g(C_i g(V_i^T x_l)) + b) + x_l`.
    Mixture {
        experts: Vec<Expert>,
        gate: Option<Linear>,
        bias: Tensor,
    },
}

impl CrossLayer {
    /// Layer `cross.{index}` over width `width`.
    fn new(vb: VarBuilder, width: usize, config: &DcnV2Config) -> Result<Self> {
        if config.low_rank == 0 {
            return Ok(Self::Full(candle_nn::linear(width, width, vb)?));
        }
        let r = config.low_rank;
        let experts = (0..config.experts)
            .map(|i| {
                let vb = vb.pp(format!("expert.{i}"));
                Ok(Expert {
                    v: candle_nn::linear_no_bias(width, r, vb.pp("v"))?,
                    c: candle_nn::linear_no_bias(r, r, vb.pp("c"))?,
                    u: candle_nn::linear_no_bias(r, width, vb.pp("u"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let gate = if config.experts > 1 {
            Some(candle_nn::linear_no_bias(
                width,
                config.experts,
                vb.pp("gate"),
            )?)
        } else {
            None
        };
        let bias = vb.get_with_hints(width, "bias", Init::Const(0.0))?;
        Ok(Self::Mixture {
            experts,
            gate,
            bias,
        })
    }

    /// `x_{l+1}` of `x0` and `xl` (both `[batch, width]`).
    fn forward(&self, x0: &Tensor, xl: &Tensor) -> Result<Tensor> {
        let cross = match self {
            Self::Full(w) => (x0 * w.forward(xl)?)?,
            Self::Mixture {
                experts,
                gate,
                bias,
            } => {
                let mut outputs = Vec::with_capacity(experts.len());
                for e in experts {
                    let h = e.c.forward(&e.v.forward(xl)?.tanh()?)?.tanh()?;
                    outputs.push((x0 * e.u.forward(&h)?.broadcast_add(bias)?)?);
                }
                match gate {
                    None => outputs.swap_remove(0),
                    Some(gate) => {
                        let g = candle_nn::ops::softmax_last_dim(&gate.forward(xl)?)?;
                        let mut mixed = outputs[0].broadcast_mul(&g.narrow(1, 0, 1)?)?;
                        for (i, out) in outputs.iter().enumerate().skip(1) {
                            mixed = (mixed + out.broadcast_mul(&g.narrow(1, i, 1)?)?)?;
                        }
                        mixed
                    }
                }
            }
        };
        Ok((cross + xl)?)
    }
}

/// DCN-v2's head over x_0.
pub(crate) struct DcnV2Head {
    cross: Vec<CrossLayer>,
    hidden: Vec<Linear>,
    output: Linear,
    structure: Structure,
    scoring: Option<Scoring>,
}

/// The scoring path's copies of the weights.
struct Scoring {
    /// Per cross layer: `W^T` and b of a full-rank layer (fused update), `None` for a mixture.
    cross: Vec<Option<(Tensor, Vec<f32>)>>,
    hidden: ServingStack,
    output: ServingStack,
}

impl DcnV2Head {
    /// x_L, the cross network's output.
    fn cross(&self, x0: &Tensor) -> Result<Tensor> {
        let mut x = x0.clone();
        for layer in &self.cross {
            x = layer.forward(x0, &x)?;
        }
        Ok(x)
    }
}

impl LogitHead for DcnV2Head {
    fn logits(&self, x0: &Tensor) -> Result<Tensor> {
        let xl = self.cross(x0)?;
        let mut h = match self.structure {
            Structure::Stacked => xl.clone(),
            Structure::Parallel => x0.clone(),
        };
        for layer in &self.hidden {
            h = layer.forward(&h)?.relu()?;
        }
        let last = match self.structure {
            Structure::Stacked => h,
            Structure::Parallel => Tensor::cat(&[&xl, &h], 1)?,
        };
        Ok(self.output.forward(&last)?.squeeze(1)?)
    }
}

impl CrossHead for DcnV2Head {
    type Config = DcnV2Config;
    const KIND: &'static str = KIND;

    fn validate(config: &DcnV2Config) -> Result<()> {
        config.validate()
    }

    fn fit_settings(c: &DcnV2Config, unit_weights: bool) -> FitSettings {
        FitSettings {
            dims: InputDims {
                item: c.item_dim,
                token: c.token_dim,
                user: c.user_dim,
            },
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
        _schema: &FeatureSchema,
        config: &DcnV2Config,
        width: usize,
    ) -> Result<Self> {
        let cross = (0..config.cross_layers)
            .map(|l| CrossLayer::new(vb.pp(format!("cross.{l}")), width, config))
            .collect::<Result<Vec<_>>>()?;
        let mut hidden = Vec::with_capacity(config.hidden.len());
        let mut h = width;
        for (i, &next) in config.hidden.iter().enumerate() {
            hidden.push(candle_nn::linear(
                h,
                next,
                vb.pp(format!("tower.hidden.{i}")),
            )?);
            h = next;
        }
        let last = match config.structure {
            Structure::Stacked => h,
            Structure::Parallel => width + h,
        };
        Ok(Self {
            cross,
            hidden,
            output: candle_nn::linear(last, 1, vb.pp("tower.output"))?,
            structure: config.structure,
            scoring: None,
        })
    }

    fn fill(name: &str, dims: &[usize], prior: f32) -> Fill {
        if name.starts_with("cross.") && name.ends_with("weight") {
            glorot(dims)
        } else {
            tower_fill(name, dims, prior)
        }
    }

    fn prepare_scoring(&mut self) -> Result<()> {
        let cross = self
            .cross
            .iter()
            .map(|layer| match layer {
                CrossLayer::Full(w) => {
                    let bias = match w.bias() {
                        Some(b) => b.to_vec1::<f32>()?,
                        None => vec![0.0; w.weight().dim(0)?],
                    };
                    Ok(Some((w.weight().t()?.contiguous()?, bias)))
                }
                CrossLayer::Mixture { .. } => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        self.scoring = Some(Scoring {
            cross,
            hidden: ServingStack::from_linears(&self.hidden)?,
            output: ServingStack::from_linears([&self.output])?,
        });
        Ok(())
    }

    /// Full-rank cross layers as one matmul and one fused update each, the deep part as fused
    /// layers (a mixture layer runs as in training).
    fn score_rows(&self, x0: Vec<f32>, rows: usize, device: &Device) -> Result<Vec<f32>> {
        let width = x0.len() / rows.max(1);
        let x0 = Tensor::from_vec(x0, (rows, width), device)?;
        let Some(scoring) = &self.scoring else {
            return Ok(self.logits(&x0)?.to_vec1::<f32>()?);
        };
        let mut xl = x0.clone();
        for (layer, fused) in self.cross.iter().zip(&scoring.cross) {
            xl = match fused {
                Some((weight_t, bias)) => {
                    let h = xl.matmul(weight_t)?;
                    h.inplace_op3(&x0, &xl, &CrossUpdate { bias })?;
                    h
                }
                None => layer.forward(&x0, &xl)?,
            };
        }
        let last = match self.structure {
            Structure::Stacked => scoring.hidden.forward(xl, true)?,
            Structure::Parallel => {
                let h = scoring.hidden.forward(x0, true)?;
                Tensor::cat(&[&xl, &h], 1)?
            }
        };
        let logits = scoring.output.forward(last, false)?;
        Ok(logits.squeeze(1)?.to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_ranker::testkit;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn random(rows: usize, cols: usize, seed: u64) -> Result<Tensor> {
        let mut rng = nn::rng::Rng::new(seed);
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
    }

    /// Cross layer 0 of `config` over width 6, every variable random except those `zero`
    /// names, which are zero.
    fn layer(config: &DcnV2Config, zero: &[&str]) -> Result<CrossLayer> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let layer = CrossLayer::new(vb.pp("cross.0"), 6, config)?;
        let mut rng = nn::rng::Rng::new(9);
        crate::model::seeded_init(
            &varmap,
            &mut rng,
            0.0,
            |name, _, _| {
                if zero.iter().any(|z| name.ends_with(z)) {
                    Fill::Const(0.0)
                } else {
                    Fill::Uniform(1.0)
                }
            },
            &Device::Cpu,
        )?;
        Ok(layer)
    }

    #[test]
    fn a_cross_layer_with_zero_weight_and_bias_is_the_identity() -> Result<()> {
        let (x0, xl) = (random(5, 6, 1)?, random(5, 6, 2)?);
        let full = DcnV2Config::default();
        let zeroed = layer(&full, &["weight", "bias"])?;
        let out = zeroed.forward(&x0, &xl)?;
        assert_eq!(out.to_vec2::<f32>()?, xl.to_vec2::<f32>()?);
        // Not the identity once W is not zero: x_0 ⊙ (W x_l) + x_l.
        let with_w = layer(&full, &["bias"])?;
        assert_ne!(
            with_w.forward(&x0, &xl)?.to_vec2::<f32>()?,
            xl.to_vec2::<f32>()?
        );
        // The low-rank mixture: every expert's U = 0 and b = 0 (V, C and the gate random).
        let mixture = DcnV2Config {
            low_rank: 2,
            experts: 3,
            ..DcnV2Config::default()
        };
        let zeroed = layer(&mixture, &["u.weight", "bias"])?;
        assert_eq!(
            zeroed.forward(&x0, &xl)?.to_vec2::<f32>()?,
            xl.to_vec2::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn a_full_cross_layer_is_x0_times_wx_plus_b_plus_x() -> Result<()> {
        let (x0, xl) = (random(3, 6, 3)?, random(3, 6, 4)?);
        let layer = layer(&DcnV2Config::default(), &[])?;
        let CrossLayer::Full(linear) = &layer else {
            panic!("full rank expected")
        };
        let (w, b) = (linear.weight().to_vec2::<f32>()?, linear.bias());
        let b = b
            .map(|b| b.to_vec1::<f32>())
            .transpose()?
            .unwrap_or_default();
        let (x0v, xlv) = (x0.to_vec2::<f32>()?, xl.to_vec2::<f32>()?);
        let got = layer.forward(&x0, &xl)?.to_vec2::<f32>()?;
        for r in 0..3 {
            for i in 0..6 {
                let wx: f32 = (0..6).map(|j| w[i][j] * xlv[r][j]).sum();
                let want = x0v[r][i] * (wx + b[i]) + xlv[r][i];
                assert!((got[r][i] - want).abs() < 1e-5, "{} vs {want}", got[r][i]);
            }
        }
        Ok(())
    }

    fn small(structure: Structure, low_rank: usize) -> DcnV2Config {
        DcnV2Config {
            item_dim: 4,
            token_dim: 2,
            user_dim: 2,
            cross_layers: 2,
            low_rank,
            experts: 2,
            structure,
            hidden: vec![16],
            epochs: 15,
            batch_size: 128,
            learning_rate: 1e-2,
            patience: 0,
            ..DcnV2Config::default()
        }
    }

    #[test]
    fn dcn_v2_learns_a_cross_of_two_fields_and_round_trips() {
        testkit::learns_the_cross_and_round_trips::<DcnV2Head>(&small(Structure::Stacked, 0));
    }

    #[test]
    fn parallel_low_rank_mixture_learns_the_cross_too() {
        testkit::learns_the_cross_and_round_trips::<DcnV2Head>(&small(Structure::Parallel, 2));
    }

    #[test]
    fn bad_settings_name_their_section_and_key() {
        let bad = DcnV2Config {
            low_rank: 4,
            experts: 0,
            ..DcnV2Config::default()
        };
        let err = bad.validate().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("[ranking.dcn_v2] experts")));
        let bad = DcnV2Config {
            hidden: vec![8, 0],
            ..DcnV2Config::default()
        };
        let err = bad.validate().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("[ranking.dcn_v2] hidden")));
        let parsed: std::result::Result<DcnV2Config, _> =
            serde_json::from_str(r#"{"structure": "sideways"}"#);
        assert!(parsed.is_err());
    }
}
