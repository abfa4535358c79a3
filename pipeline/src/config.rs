//! `recpipe.toml`: optional settings for every stage. Each section is optional and each key in it
//! falls back to its default; an unknown key is an error, so a typo is never silently ignored.

use crate::error::{Error, Result};
use crate::examples::ExamplesConfig;
use crate::generate::WorldConfig;
use crate::server::ServeConfig;
use crate::stages::build::BuildConfig;
use crate::stages::ranking::RankingConfig;
use index::HnswConfig;
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
    /// `[ranking]`: the ranking stage (day split, features, `[ranking.youtube]`).
    pub ranking: RankingConfig,
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
        toml::from_str(&text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    Error::input(path, format!("line {line}: {msg}"))
                }
                None => Error::input(path, msg),
            }
        })
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
        assert_eq!(cfg.generate.days, WorldConfig::default().days);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
