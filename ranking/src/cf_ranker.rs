//! Collaborative-filtering rankers: NeuMF (He et al., "Neural Collaborative Filtering", WWW
//! 2017, eq. 11-12, see [`crate::ncf`]) and deep MF ([`crate::deep_mf`]) re-scoring the
//! retrieved candidates, `[ranking] model = "neumf" | "deep_mf"`.
//!
//! Both learn an embedding per user and per item of the ranker's vocabularies
//! ([`RankingExample::user`], [`RankingExample::item`]); a user or item outside them shares one
//! extra row, trained on the training impressions whose user or item is outside (the long tail
//! of a large catalogue). Deep MF also reads the user's categorical fields and the item's
//! tokens. Neither reads the YouTube ranker's context (recent watches, time since the last
//! watch, impression counts): they answer whether pure user x item interaction, as the NCF
//! papers rank, beats the YouTube ranker's features on the same pages.
//!
//! Trained with the ranking stage's loss, the watch-time-weighted logistic regression of
//! Covington et al. 2016, section 4.2 (unit weights with `unit_weights`), the epoch chosen by
//! the weighted log loss on the validation days; e^logit is the expected watch time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use nn::rating::{LabelledPairs, RatingModel, SideFeatures};
use nn::trainer::{EpochReport, TrainReport};
use nn::Compute;
use serde::{Deserialize, Serialize};

use crate::deep_mf::{self, DeepMf, DeepMfConfig};
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::ncf::{self, Ncf, NcfConfig, NcfKind};
use crate::train::example_weight;
use crate::youtube::{META_FILE, WEIGHTS_FILE};

/// Format name in `ranker.json`.
const FORMAT: &str = "recpipe-cf-ranker";

/// The network behind a CF ranker.
enum Net {
    NeuMf(Ncf),
    DeepMf(DeepMf),
}

/// What `ranker.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format: String,
    model: String,
    schema: FeatureSchema,
    unit_weights: bool,
    offset: f32,
    #[serde(default)]
    neumf: Option<NcfConfig>,
    #[serde(default)]
    deep_mf: Option<DeepMfConfig>,
    #[serde(default)]
    features: Option<SideFeatures>,
}

/// A trained NeuMF or deep MF ranker.
pub struct CfRanker {
    net: Net,
    /// A copy of the network on a device, when scoring there ([`CfRanker::score_with`]).
    on_device: Option<Net>,
    schema: FeatureSchema,
    unit_weights: bool,
}

/// Which settings a CF ranker trains with.
#[derive(Debug, Clone, Copy)]
pub enum CfSettings<'a> {
    /// NeuMF with `[ranking.neumf]`.
    NeuMf(&'a NcfConfig),
    /// Deep MF with `[ranking.deep_mf]`.
    DeepMf(&'a DeepMfConfig),
}

/// The example's user row: its index, or the shared row past the vocabulary.
fn user_row(schema: &FeatureSchema, e: &RankingExample) -> u32 {
    e.user.unwrap_or(schema.n_users as u32)
}

/// The example's item row: its index, or the shared row past the vocabulary.
fn item_row(schema: &FeatureSchema, e: &RankingExample) -> u32 {
    e.item.unwrap_or(schema.n_items as u32)
}

/// Examples as labelled pairs over the rows above, weighted as the ranking loss weighs them.
fn pairs(schema: &FeatureSchema, examples: &[RankingExample], unit_weights: bool) -> LabelledPairs {
    LabelledPairs {
        users: examples.iter().map(|e| user_row(schema, e)).collect(),
        items: examples.iter().map(|e| item_row(schema, e)).collect(),
        labels: examples
            .iter()
            .map(|e| f32::from(u8::from(e.label)))
            .collect(),
        weights: examples
            .iter()
            .map(|e| example_weight(e, unit_weights))
            .collect(),
    }
}

/// Deep MF's side features from the training examples: each user row's categorical values (as
/// tokens of one vocabulary, field by field) and each item row's tokens, from the first
/// example that names them; the shared rows have none.
fn side_features(schema: &FeatureSchema, examples: &[RankingExample]) -> SideFeatures {
    let offsets = schema.user_offsets();
    let mut f = SideFeatures {
        user_tokens: vec![Vec::new(); schema.n_users + 1],
        user_vocab: schema.user_rows(),
        item_tokens: vec![Vec::new(); schema.n_items + 1],
        item_vocab: schema.n_tokens,
    };
    let (mut user_done, mut item_done) = (
        vec![false; schema.n_users + 1],
        vec![false; schema.n_items + 1],
    );
    for e in examples {
        if let Some(u) = e.user.map(|u| u as usize).filter(|&u| !user_done[u]) {
            user_done[u] = true;
            f.user_tokens[u] = e
                .user_categorical
                .iter()
                .zip(&offsets)
                .filter_map(|(v, &o)| v.map(|v| o + v))
                .collect();
        }
        if let Some(i) = e.item.map(|i| i as usize).filter(|&i| !item_done[i]) {
            item_done[i] = true;
            let mut tokens = e.item_tokens.clone();
            tokens.sort_unstable();
            tokens.dedup();
            f.item_tokens[i] = tokens;
        }
    }
    f
}

impl CfRanker {
    /// Trains the ranker `settings` names on `train`, stopping early on `valid`. An example
    /// that does not fit the schema is reported by its position in `train` followed by `valid`.
    pub fn train(
        settings: CfSettings,
        schema: FeatureSchema,
        unit_weights: bool,
        train: &[RankingExample],
        valid: &[RankingExample],
        progress: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        schema.validate()?;
        for (index, example) in train.iter().chain(valid).enumerate() {
            schema.check(index, example)?;
            if example.label && !(example.watch_time.is_finite() && example.watch_time >= 0.0) {
                return Err(RankingError::InvalidExample {
                    index,
                    reason: format!("watched with watch time {}", example.watch_time),
                });
            }
        }
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let (users, items) = (schema.n_users + 1, schema.n_items + 1);
        let (fit, held) = (
            pairs(&schema, train, unit_weights),
            pairs(&schema, valid, unit_weights),
        );
        let (net, report) = match settings {
            CfSettings::NeuMf(cfg) => {
                let (m, r) =
                    Ncf::train_labelled(NcfKind::NeuMf, cfg, users, items, &fit, &held, progress)?;
                (Net::NeuMf(m), r)
            }
            CfSettings::DeepMf(cfg) => {
                let features = side_features(&schema, train);
                let (m, r) = DeepMf::train_labelled(
                    cfg,
                    users,
                    items,
                    Some(&features),
                    &fit,
                    &held,
                    progress,
                )?;
                (Net::DeepMf(m), r)
            }
        };
        let ranker = Self {
            net,
            on_device: None,
            schema,
            unit_weights,
        };
        Ok((ranker, report))
    }

    /// The logit of each example.
    pub fn logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        for (index, e) in examples.iter().enumerate() {
            self.schema.check(index, e)?;
        }
        let users: Vec<u32> = examples.iter().map(|e| user_row(&self.schema, e)).collect();
        let items: Vec<u32> = examples.iter().map(|e| item_row(&self.schema, e)).collect();
        match self.on_device.as_ref().unwrap_or(&self.net) {
            Net::NeuMf(m) => m.predict(&users, &items),
            Net::DeepMf(m) => m.predict(&users, &items),
        }
    }

    /// Scores with `compute` from now on: in host memory (the default), or with a copy of the
    /// network on a device (a GPU), where the embedding lookups and the network run.
    pub fn score_with(&mut self, compute: &Compute) -> Result<()> {
        self.on_device = match compute {
            Compute::FusedCpu => None,
            Compute::Candle(device) => Some(match &self.net {
                Net::NeuMf(m) => Net::NeuMf(m.copy_on(device)?),
                Net::DeepMf(m) => Net::DeepMf(m.copy_on(device)?),
            }),
        };
        Ok(())
    }

    /// Reads a ranker written by [`nn::Ranker::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|source| RankingError::Io {
            path: meta_path.clone(),
            source,
        })?;
        let meta: Meta = serde_json::from_str(&text).map_err(|source| RankingError::Json {
            path: meta_path.clone(),
            source,
        })?;
        let incompatible = |reason: String| RankingError::IncompatibleModel {
            path: meta_path.clone(),
            reason,
        };
        if meta.format != FORMAT {
            return Err(incompatible(format!(
                "format {}, expected {FORMAT}",
                meta.format
            )));
        }
        meta.schema.validate()?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights: HashMap<String, Tensor> =
            candle_core::safetensors::load(&weights_path, &Device::Cpu)?;
        let (users, items) = (meta.schema.n_users + 1, meta.schema.n_items + 1);
        let net = match (meta.model.as_str(), &meta.neumf, &meta.deep_mf) {
            (ncf::KIND_NEUMF, Some(cfg), _) => Net::NeuMf(Ncf::from_weights(
                NcfKind::NeuMf,
                cfg,
                users,
                items,
                meta.offset,
                true,
                &weights,
            )?),
            (deep_mf::KIND, _, Some(cfg)) => Net::DeepMf(DeepMf::from_weights(
                cfg,
                users,
                items,
                meta.features.as_ref(),
                meta.offset,
                &weights,
            )?),
            (other, ..) => {
                return Err(incompatible(format!(
                    "'{other}' without its settings is not a CF ranker"
                )))
            }
        };
        Ok(Self {
            net,
            on_device: None,
            schema: meta.schema,
            unit_weights: meta.unit_weights,
        })
    }

    fn meta(&self) -> Meta {
        let (model, offset) = match &self.net {
            Net::NeuMf(m) => (ncf::KIND_NEUMF, m.offset()),
            Net::DeepMf(m) => (deep_mf::KIND, m.offset()),
        };
        Meta {
            format: FORMAT.to_string(),
            model: model.to_string(),
            schema: self.schema.clone(),
            unit_weights: self.unit_weights,
            offset,
            neumf: match &self.net {
                Net::NeuMf(m) => Some(m.config().clone()),
                Net::DeepMf(_) => None,
            },
            deep_mf: match &self.net {
                Net::DeepMf(m) => Some(m.config().clone()),
                Net::NeuMf(_) => None,
            },
            features: match &self.net {
                Net::DeepMf(m) => m.features(),
                Net::NeuMf(_) => None,
            },
        }
    }
}

impl nn::Ranker for CfRanker {
    type Example = RankingExample;
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        match self.net {
            Net::NeuMf(_) => ncf::KIND_NEUMF,
            Net::DeepMf(_) => deep_mf::KIND,
        }
    }

    fn logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        CfRanker::logits(self, examples)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let io = |path: PathBuf, source| RankingError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(|e| io(dir.to_path_buf(), e))?;
        let weights = match &self.net {
            Net::NeuMf(m) => m.weights()?,
            Net::DeepMf(m) => m.weights()?,
        };
        candle_core::safetensors::save(&weights, dir.join(WEIGHTS_FILE))?;
        let meta_path = dir.join(META_FILE);
        let text =
            serde_json::to_string_pretty(&self.meta()).map_err(|source| RankingError::Json {
                path: meta_path.clone(),
                source,
            })?;
        std::fs::write(&meta_path, text).map_err(|e| io(meta_path, e))
    }

    fn config_json(&self) -> serde_json::Value {
        let meta = self.meta();
        let config = match (meta.neumf, meta.deep_mf) {
            (Some(c), _) => serde_json::to_value(c),
            (_, Some(c)) => serde_json::to_value(c),
            _ => Ok(serde_json::Value::Null),
        };
        config.unwrap_or_default()
    }
}

impl crate::registry::RankingModel for CfRanker {
    fn score_with(&mut self, compute: &Compute) -> Result<()> {
        CfRanker::score_with(self, compute)
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn weighted_log_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        let logits = self.logits(examples)?;
        Ok(pairs(&self.schema, examples, unit_weights).weighted_log_loss(&logits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RankingModel;
    use nn::rng::Rng;
    use nn::Ranker;

    /// 40 users and 30 items in two taste groups: a user watches an item of their group with
    /// probability 0.8 (watch time 30 s), of the other group with 0.1.
    fn world(seed: u64, count: usize) -> (FeatureSchema, Vec<RankingExample>) {
        let schema = FeatureSchema {
            n_users: 40,
            n_items: 30,
            n_tokens: 2,
            user_cardinalities: vec![2],
            continuous: Vec::new(),
        };
        let mut rng = Rng::new(seed);
        let examples = (0..count)
            .map(|_| {
                let (u, i) = (rng.below(40) as u32, rng.below(30) as u32);
                let same = u % 2 == i % 2;
                let label = rng.uniform() < if same { 0.8 } else { 0.1 };
                RankingExample {
                    user: Some(u),
                    item: Some(i),
                    item_tokens: vec![i % 2],
                    user_categorical: vec![Some(u % 2)],
                    label,
                    watch_time: if label { 30.0 } else { 0.0 },
                    ..RankingExample::default()
                }
            })
            .collect();
        (schema, examples)
    }

    fn settings_of<'a>(neumf: &'a NcfConfig, deep: &'a DeepMfConfig) -> [CfSettings<'a>; 2] {
        [CfSettings::NeuMf(neumf), CfSettings::DeepMf(deep)]
    }

    #[test]
    fn cf_rankers_learn_the_taste_groups_and_round_trip_through_their_folder() {
        let (schema, train) = world(1, 4000);
        let (_, valid) = world(2, 1000);
        let neumf = NcfConfig {
            dim: 8,
            mlp_layers: vec![16, 8],
            epochs: 20,
            patience: 0,
            learning_rate: Some(1e-2),
            l2: Some(0.01),
            ..NcfConfig::default()
        };
        let deep = DeepMfConfig {
            dim: 8,
            layers: vec![16],
            epochs: 20,
            patience: 0,
            learning_rate: 5e-3,
            init_std: 0.2,
            l2: 0.01,
            ..DeepMfConfig::default()
        };
        for settings in settings_of(&neumf, &deep) {
            let (ranker, report) =
                CfRanker::train(settings, schema.clone(), false, &train, &valid, &mut |_| {})
                    .unwrap();
            let kind = ranker.kind();
            // The constant prior's weighted log loss on the validation pairs.
            let held = pairs(&schema, &valid, false);
            let logits = ranker.logits(&valid).unwrap();
            let prior = held.weighted_log_loss(&vec![held.prior_log_odds(); held.len()]);
            let fitted = report.best_validation.unwrap();
            eprintln!("{kind}: weighted log loss {fitted:.4}, prior {prior:.4}");
            // The Bayes optimum of this world is about 0.70 x the prior's loss.
            assert!(
                fitted < 0.85 * prior,
                "{kind}: {fitted} vs the prior's {prior}"
            );
            let own = ranker.weighted_log_loss(&valid, false).unwrap();
            assert!((own - fitted).abs() < 1e-6, "{kind}: {own} vs {fitted}");
            // In-group pairs outscore out-of-group pairs.
            let (mut same, mut other) = (Vec::new(), Vec::new());
            for (e, &z) in valid.iter().zip(&logits) {
                let (u, i) = (e.user.unwrap_or(0), e.item.unwrap_or(0));
                if u % 2 == i % 2 {
                    &mut same
                } else {
                    &mut other
                }
                .push(z);
            }
            let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
            assert!(mean(&same) > mean(&other) + 1.0, "{kind}");
            // Saved and loaded through the registry: the same logits, also for a user and an
            // item outside the vocabularies (the shared row).
            let dir = std::env::temp_dir().join(format!("recpipe-cf-ranker-{kind}"));
            let _ = std::fs::remove_dir_all(&dir);
            ranker.save(&dir).unwrap();
            let loaded = crate::registry::load(&dir).unwrap();
            assert_eq!(loaded.kind(), kind);
            let mut probe = valid[..50].to_vec();
            probe[0].user = None;
            probe[1].item = None;
            assert_eq!(
                loaded.logits(&probe).unwrap(),
                ranker.logits(&probe).unwrap()
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn examples_outside_the_schema_are_refused() {
        let (schema, mut train) = world(3, 100);
        train[7].user = Some(40);
        let cfg = NcfConfig::default();
        let err = CfRanker::train(
            CfSettings::NeuMf(&cfg),
            schema,
            false,
            &train,
            &[],
            &mut |_| {},
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("user 40 outside the user vocabulary"), "{err}");
    }
}
