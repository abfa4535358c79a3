//! `recpipe.toml`: optional settings for every stage. Each section is optional and each key in it
//! falls back to its default; an unknown key is an error, so a typo is never silently ignored.

use crate::error::{Error, Result};
use crate::examples::ExamplesConfig;
use crate::generate::WorldConfig;
use crate::ranking_features::FeatureConfig;
use crate::server::ServeConfig;
use index::HnswConfig;
use ranking::deep_mf::DeepMfConfig;
use ranking::ncf::NcfConfig;
use ranking::{
    DcnV2Config, DeepFmConfig, MultitaskConfig, RankerConfig, RankerSettings, RatingSettings,
};
use retrieval::RetrievalSettings;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[generate]`: the synthetic world.
    pub generate: WorldConfig,
    /// `[examples]`: how training examples are drawn for the retrieval model.
    pub examples: ExamplesConfig,
    /// `[retrieval]`: the candidate-generation network and its training.
    pub retrieval: RetrievalSettings,
    /// `[index]`: the HNSW index.
    pub index: HnswConfig,
    /// `[build]`: the nightly job.
    pub build: BuildConfig,
    /// `[train]`: where models train.
    pub train: TrainConfig,
    /// `[ranking]`: the ranking stage (day split, features, `[ranking.youtube]`).
    pub ranking: RankingConfig,
    /// `[rating]`: the rating model of `evaluate --task rating` (`model`, `[rating.mf]`).
    pub rating: RatingSettings,
    /// `[serve]`: the HTTP server.
    pub serve: ServeConfig,
}

impl Config {
    /// Reads `path` when given, else `./recpipe.toml` when it exists, else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let default = Path::new("recpipe.toml");
        let path = match path {
            Some(p) => p,
            None if default.is_file() => default,
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::input(path, format!("cannot read the config: {e}")))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    Error::input(path, format!("line {line}: {msg}"))
                }
                None => Error::input(path, msg),
            }
        })?;
        config.check_models().map_err(|e| Error::input(path, e))?;
        config
            .train
            .check()
            .map_err(|e| Error::input(path, format!("[train] {e}")))?;
        Ok(config.with_device(None))
    }

    /// These settings with `device` (the `--device` flag) instead of `[train] device` when
    /// given, handed to the stages that train.
    pub fn with_device(mut self, device: Option<&str>) -> Self {
        if let Some(d) = device {
            self.train.device = d.to_string();
        }
        self.retrieval.device = self.train.device.clone();
        self.ranking.device = self.train.device.clone();
        self.rating.device = self.train.device.clone();
        self
    }

    /// Checks every model choice and its settings before any work starts (a typo in a model
    /// name must not surface hours later, or make `build-index` skip a stage).
    pub fn check_models(&self) -> std::result::Result<(), String> {
        self.retrieval
            .validate()
            .map_err(|e| format!("[retrieval] {e}"))?;
        self.ranking
            .ranker_settings()
            .validate()
            .map_err(|e| format!("[ranking] {e}"))?;
        self.rating.validate().map_err(|e| format!("[rating] {e}"))
    }
}

/// `[train]`: where models train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// `cpu` (the default), or `cuda:N` for the N-th NVIDIA GPU, which needs a binary built
    /// with the `cuda` feature (`scripts/cuda-build.sh`); every model trains there. Whatever
    /// trains a model, its files are the same, and the index and the server run on the CPU.
    pub device: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
        }
    }
}

impl TrainConfig {
    /// Checks the device's name (opening it waits for a stage that trains).
    pub fn check(&self) -> std::result::Result<(), String> {
        check_device_name(&self.device).map_err(|e| format!("device = \"{}\": {e}", self.device))
    }
}

/// `cpu`, `cuda` or `cuda:N`.
pub fn check_device_name(name: &str) -> std::result::Result<(), String> {
    let cuda_ordinal = name.strip_prefix("cuda").map(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|n| n.parse::<usize>().is_ok())
    });
    match (name, cuda_ordinal) {
        ("cpu", _) | (_, Some(true)) => Ok(()),
        _ => Err("must be \"cpu\" or \"cuda:N\"".into()),
    }
}

/// `[build]`: the nightly job's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildConfig {
    /// Versions kept after a publish (the live one is never removed).
    pub keep_versions: usize,
    /// Refuse to publish when validation HR@10 falls more than this share below the live
    /// version's (0.1 = 10%), unless `--force`.
    pub max_hr10_drop: f64,
    /// Beam width of the index searches used to measure served quality (default: the index's
    /// configured one).
    pub eval_ef: Option<usize>,
    /// Start training from the live version's weights (known ids keep their embeddings).
    pub warm_start: bool,
    /// The HNSW search beam width is chosen on validation queries as the smallest whose
    /// recall@100 against exact search reaches this (0: keep `[index] ef_search_default`).
    pub recall_target: f64,
    /// The largest beam width tried when choosing it.
    pub max_search_ef: usize,
    /// When no beam width up to `max_search_ef` reaches `recall_target`, serve with exact
    /// search instead of the graph (quality first; the summary and the manifest say so).
    pub exact_fallback: bool,
    /// Refuse to publish when the served test HR@10 (through the index) is below this share of
    /// the exact test HR@10, unless `--force`.
    pub min_served_ratio: f64,
    /// Wall-clock budget of each training stage of `build-index` (retrieval, ranker) in
    /// seconds: training stops at the first step after it runs out, that partial epoch is
    /// validated and the best epoch so far is kept (0: none). The default, 450, lets a
    /// 2M-event world build within 20 minutes on 2 cores; the shared data sets train well
    /// within it. `evaluate` and `leaderboard` never have a budget, so their figures do not
    /// depend on the machine's speed.
    pub train_seconds: f64,
}

impl BuildConfig {
    /// The training time budget, when there is one.
    pub fn train_budget(&self) -> Option<f64> {
        (self.train_seconds > 0.0).then_some(self.train_seconds)
    }

    /// Checks the values are usable (errors name the key).
    pub fn validate(&self) -> Result<()> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Input(format!(
                    "[build] {name} = {v}: must be within 0..=1"
                )))
            }
        };
        share("recall_target", self.recall_target)?;
        share("min_served_ratio", self.min_served_ratio)?;
        share("max_hr10_drop", self.max_hr10_drop)?;
        if !(self.train_seconds.is_finite() && self.train_seconds >= 0.0) {
            return Err(Error::Input(format!(
                "[build] train_seconds = {}: must be >= 0 (0: no budget)",
                self.train_seconds
            )));
        }
        if self.max_search_ef == 0 {
            return Err(Error::Input(
                "[build] max_search_ef = 0: must be >= 1".into(),
            ));
        }
        Ok(())
    }
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            keep_versions: 3,
            max_hr10_drop: 0.1,
            eval_ef: None,
            warm_start: true,
            recall_target: 0.99,
            max_search_ef: 2_048,
            exact_fallback: true,
            min_served_ratio: 0.99,
            train_seconds: 450.0,
        }
    }
}

/// `[ranking]`: the day split, the features, which ranker (`model`) and each ranker's own
/// section (`[ranking.youtube]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankingConfig {
    /// The last this many days of impressions are the test days (at least 1).
    pub test_days: usize,
    /// This many days just before the test days stop training early (0: no early stopping).
    pub valid_days: usize,
    /// Item vocabulary size: the items with the most watched impressions on the fit days.
    pub max_items: usize,
    /// Training examples kept from a large log: above this many fit impressions, a seeded
    /// sample of whole pages (user, day) of about this size (0: every impression). Bounds the
    /// ranker stage's memory; every impression still feeds the features.
    pub max_fit_examples: usize,
    /// Validation and test examples kept from a large log: above this many impressions in
    /// either part, a seeded sample of whole users of about this size (0: every impression).
    pub max_eval_examples: usize,
    /// Recent watches kept per user.
    pub recent: usize,
    /// Pseudo-impressions of the prior in smoothed rates.
    pub smoothing: f32,
    /// Data with watches only: each user's last this many watches before the validation target
    /// become training pages (the validation and test targets are always pages).
    pub pages_per_user: usize,
    /// Data with watches only: candidates each page shows (the retrieval model's best).
    pub candidates_per_page: usize,
    /// Registry name of the ranker (one of `ranking::MODELS`).
    pub model: String,
    /// `[ranking.youtube]`: the YouTube ranker's network and training (an unknown key is an
    /// error, as everywhere else).
    #[serde(deserialize_with = "strict_ranker_config")]
    pub youtube: RankerConfig,
    /// `[ranking.neumf]`: NeuMF as a ranker (learning rate and lambda default as on implicit
    /// feedback).
    pub neumf: NcfConfig,
    /// `[ranking.deep_mf]`: deep MF as a ranker.
    pub deep_mf: DeepMfConfig,
    /// `[ranking.deepfm]`: DeepFM (factorisation machine beside a deep tower, same inputs as
    /// the YouTube ranker).
    pub deepfm: DeepFmConfig,
    /// `[ranking.dcn_v2]`: DCN-v2 (cross network stacked on or beside a deep tower, same
    /// inputs as the YouTube ranker).
    pub dcn_v2: DcnV2Config,
    /// `[ranking.multitask]`: the multi-task ranker (shared bottom or MMoE, one head per label
    /// column the data has, per-task loss weights, the serving combination).
    pub multitask: MultitaskConfig,
    /// The device the ranker trains on: not part of `[ranking]`, set from `[train] device` or
    /// `--device`.
    #[serde(skip)]
    pub device: String,
}

impl RankingConfig {
    /// The model choice and settings the ranking crate trains from.
    pub fn ranker_settings(&self) -> RankerSettings {
        RankerSettings {
            model: self.model.clone(),
            youtube: self.youtube.clone(),
            neumf: self.neumf.clone(),
            deep_mf: self.deep_mf.clone(),
            deepfm: self.deepfm.clone(),
            dcn_v2: self.dcn_v2.clone(),
            multitask: self.multitask.clone(),
            labels: Vec::new(),
            device: self.device.clone(),
        }
    }
}

/// Reads `[ranking.youtube]`, refusing keys [`RankerConfig`] does not have (it accepts and
/// ignores them itself).
fn strict_ranker_config<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<RankerConfig, D::Error> {
    use serde::de::Error as _;
    let value = serde_json::Value::deserialize(d)?;
    let known = serde_json::to_value(RankerConfig::default()).map_err(D::Error::custom)?;
    if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
        if let Some(key) = given.keys().find(|k| !known.contains_key(*k)) {
            let expected: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(D::Error::custom(format!(
                "unknown field `{key}` in [ranking.youtube], expected one of {}",
                expected.join(", ")
            )));
        }
    }
    serde_json::from_value(value).map_err(D::Error::custom)
}

impl Default for RankingConfig {
    fn default() -> Self {
        let features = FeatureConfig::default();
        RankingConfig {
            test_days: 3,
            valid_days: 1,
            max_items: 100_000,
            max_fit_examples: 2_000_000,
            max_eval_examples: 500_000,
            recent: features.recent,
            smoothing: features.smoothing,
            pages_per_user: 20,
            candidates_per_page: 50,
            model: ranking::KIND.to_string(),
            youtube: RankerConfig::default(),
            neumf: NcfConfig::default(),
            deep_mf: DeepMfConfig::default(),
            deepfm: DeepFmConfig::default(),
            dcn_v2: DcnV2Config::default(),
            multitask: MultitaskConfig::default(),
            device: "cpu".into(),
        }
    }
}

impl RankingConfig {
    /// The feature settings.
    pub fn features(&self) -> FeatureConfig {
        FeatureConfig {
            recent: self.recent,
            smoothing: self.smoothing,
            retrieval: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let dir = std::env::temp_dir().join(format!("recpipe-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join("recpipe.toml");
        std::fs::write(&p, "[generate]\nusers = 10\nuserz = 3\n").expect("write");
        let err = Config::load(Some(&p))
            .expect_err("typo must fail")
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(&p, "[generate]\nusers = 10\n").expect("write");
        let cfg = Config::load(Some(&p)).expect("valid config");
        assert_eq!(cfg.generate.users, 10);
        // An unknown model name is refused when the file is read, naming the known ones.
        std::fs::write(&p, "[ranking]\nmodel = \"autoint\"\n").expect("write");
        let err = Config::load(Some(&p))
            .expect_err("unknown ranker")
            .to_string();
        assert!(
            err.contains("autoint") && err.contains("known: youtube"),
            "{err}"
        );
        // A bad value of a chosen ranker's section names the section and the key.
        std::fs::write(
            &p,
            "[ranking]\nmodel = \"deepfm\"\n[ranking.deepfm]\nembedding_dim = 0\n",
        )
        .expect("write");
        let err = Config::load(Some(&p)).expect_err("bad dim").to_string();
        assert!(err.contains("[ranking.deepfm] embedding_dim"), "{err}");
        std::fs::write(&p, "[ranking.dcn_v2]\nstructure = \"sideways\"\n").expect("write");
        let err = Config::load(Some(&p))
            .expect_err("bad structure")
            .to_string();
        assert!(err.contains("sideways"), "{err}");
        std::fs::write(&p, "[retrieval]\nmodel = \"sasrec2\"\n").expect("write");
        let err = Config::load(Some(&p))
            .expect_err("unknown retriever")
            .to_string();
        assert!(err.contains("youtube_dnn, mf"), "{err}");
        assert_eq!(cfg.generate.days, WorldConfig::default().days);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
