//! `recpipe add-items`: items published after the nightly build get vectors from their features
//! (a model with an item tower, such as `two_tower`) and are inserted into the live index; the
//! result is published as a new version by the same atomic publish as `build-index`, and a
//! server picks it up by hot swap.
//!
//! The new version holds the live version's files, with the retrieval model, `ids.json`,
//! `item_vectors.parquet` and the index rewritten to include the new items, and
//! `added_items.parquet`: every item added since the nightly build (their features, titles and
//! durations, which serving and the ranker read when the data folder does not have them yet).
//! The quality gate is not re-run (nothing was trained); the manifest says what was added.

use crate::artifacts::{files, prune, BuildLock, IdMaps, Manifest, Version, VersionBuilder};
use crate::config::Config;
use crate::data::{read_items, write_items, write_vectors, IdVectors, Items};
use crate::error::{Error, Result};
use crate::examples::item_numeric;
use crate::stages::retrieval::model_err;
use index::{Index, ItemVectors, LoadOptions};
use nn::Catalog;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The version file listing every item added since the nightly build (items schema).
pub const ADDED_ITEMS: &str = "added_items.parquet";

/// What `add-items` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddedItems {
    /// The version the items were added to.
    pub from_version: String,
    /// The new version (`None`: nothing new, nothing published).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Items inserted.
    pub added: usize,
    /// Rows of the file whose item the version already had (skipped).
    pub already_known: usize,
    /// Category tokens of the new items that the model's vocabulary lacks (ignored).
    pub unknown_tokens: usize,
    /// Items in the index afterwards.
    pub items: usize,
    /// Seconds: embedding the items, inserting them into the index, writing the version.
    pub seconds: serde_json::Value,
}

/// The new items of `file` (rows whose item the version does not have) as a catalogue in the
/// model's vocabulary, with the number of unknown tokens.
fn new_catalog(new: &Items, rows: &[usize], ids: &IdMaps) -> (Catalog, Vec<Vec<u32>>, usize) {
    let vocab: HashMap<&str, u32> = ids
        .tokens
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let mut unknown = 0;
    let tokens: Vec<Vec<u32>> = rows
        .iter()
        .map(|&r| {
            new.categories[r]
                .iter()
                .filter_map(|c| {
                    let t = vocab.get(c.as_str()).copied();
                    unknown += usize::from(t.is_none());
                    t
                })
                .collect()
        })
        .collect();
    let position: HashMap<i64, u32> = rows
        .iter()
        .enumerate()
        .map(|(k, &r)| (new.item_id[r], k as u32))
        .collect();
    let (duration_seconds, age_days) = item_numeric(
        new,
        |id| position.get(&id).copied(),
        rows.len(),
        ids.reference_time,
    );
    let catalog = Catalog {
        num_items: rows.len(),
        item_tokens: if vocab.is_empty() {
            Vec::new()
        } else {
            tokens.clone()
        },
        num_tokens: vocab.len(),
        duration_seconds,
        age_days,
        reference_time: ids.reference_time,
    };
    (catalog, tokens, unknown)
}

/// The rows `rows` of `items`.
fn select(items: &Items, rows: &[usize]) -> Items {
    let mut out = Items {
        ids: items.ids.clone(),
        ..Items::default()
    };
    for &r in rows {
        out.push(
            items.item_id[r],
            items.duration[r],
            items.published[r],
            items.categories[r].clone(),
            items.title[r].clone(),
        );
    }
    out
}

/// Appends the rows of `more` whose item `items` does not have.
pub fn append(items: &mut Items, more: &Items) {
    let known: std::collections::HashSet<i64> = items.item_id.iter().copied().collect();
    for r in (0..more.len()).filter(|&r| !known.contains(&more.item_id[r])) {
        items.push(
            more.item_id[r],
            more.duration[r],
            more.published[r],
            more.categories[r].clone(),
            more.title[r].clone(),
        );
    }
}

/// The items added to version `v` since its nightly build (empty when none were).
pub fn added_items(v: &Version) -> Result<Items> {
    let path = v.file(ADDED_ITEMS);
    if path.is_file() {
        read_items(&path)
    } else {
        Ok(Items::default())
    }
}

/// Hard-links (or copies) every file of `from` that `to` does not have yet.
fn carry_over(from: &Version, to: &Path) -> Result<()> {
    for f in &from.manifest.files {
        let dest = to.join(&f.name);
        if dest.exists() {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let src = from.file(&f.name);
        if std::fs::hard_link(&src, &dest).is_err() {
            std::fs::copy(&src, &dest).map_err(|e| Error::io(&dest, e))?;
        }
    }
    Ok(())
}

/// Adds the items of `items_path` that the live version of `root` lacks, and publishes the
/// result as a new version (see the module doc).
pub fn add_items(root: &Path, items_path: &Path, config: &Config) -> Result<AddedItems> {
    let t0 = Instant::now();
    // Nothing to add to (and no lock file left behind) before a first build.
    Version::open_current(root, false)?;
    let new = read_items(items_path)?;
    let _lock = BuildLock::acquire(root)?;
    let live = Version::open_current(root, true)?;
    let mut ids = IdMaps::load(&live.file(files::IDS))?;
    let strings = !ids.item_keys.is_empty();
    if new.ids.is_strings() && !strings {
        return Err(Error::input(
            items_path,
            format!(
                "item_id: string ids, but version {} was built from integer item ids",
                live.manifest.version
            ),
        ));
    }
    let rows: Vec<usize> = (0..new.len())
        .filter(|&r| ids.items.get(new.item_id[r]).is_none())
        .collect();
    let mut report = AddedItems {
        from_version: live.manifest.version.clone(),
        version: None,
        added: rows.len(),
        already_known: new.len() - rows.len(),
        unknown_tokens: 0,
        items: ids.items.len(),
        seconds: serde_json::Value::Null,
    };
    if rows.is_empty() {
        return Ok(report);
    }

    let t_embed = Instant::now();
    let mut model = retrieval::load(&live.dir).map_err(model_err)?;
    if model.num_items() != ids.items.len() {
        return Err(Error::input(
            &live.file(files::IDS),
            format!(
                "lists {} items but the model has {}",
                ids.items.len(),
                model.num_items()
            ),
        ));
    }
    let (catalog, tokens, unknown) = new_catalog(&new, &rows, &ids);
    report.unknown_tokens = unknown;
    model.add_items(&catalog).map_err(|e| {
        Error::Input(format!(
            "cannot add items to version {}: {e}",
            live.manifest.version
        ))
    })?;
    let (vectors, biases) = model.item_vectors().map_err(model_err)?;
    let dim = model.dim();
    let first = ids.items.len();
    let embed_seconds = t_embed.elapsed().as_secs_f64();

    let added = select(&new, &rows);
    for (k, &id) in added.item_id.iter().enumerate() {
        ids.items.insert(id);
        if !ids.item_tokens.is_empty() {
            ids.item_tokens.push(tokens[k].clone());
        }
        if strings {
            ids.item_keys.push(new.ids.external(id).to_string());
        }
    }

    let t_index = Instant::now();
    let index_dir = live.file(files::INDEX_DIR);
    let mut index = Index::load(&index_dir, &LoadOptions::default())
        .map_err(|e| Error::Input(format!("{}: {e}", index_dir.display())))?;
    let fresh = ItemVectors::new(
        added.item_id.clone(),
        dim,
        vectors[first * dim..].to_vec(),
        biases[first..].to_vec(),
    )
    .map_err(Error::index("new item vectors"))?;
    index
        .insert(fresh, &|_, _| {})
        .map_err(Error::index("index insert"))?;
    let index_seconds = t_index.elapsed().as_secs_f64();

    let t_write = Instant::now();
    let builder = VersionBuilder::start(root)?;
    let dir = builder.dir().to_path_buf();
    model.save(&dir).map_err(model_err)?;
    crate::output::write_json(&dir.join(files::IDS), &ids)?;
    let all = IdVectors {
        ids: ids.items.ids.clone(),
        dim,
        data: vectors,
        bias: biases,
    };
    write_vectors(&dir.join(files::ITEM_VECTORS), "item_id", &all)?.commit()?;
    index
        .save(dir.join(files::INDEX_DIR))
        .map_err(Error::index("index save"))?;
    let mut since_build = added_items(&live)?;
    append(&mut since_build, &added);
    write_items(&dir.join(ADDED_ITEMS), &since_build)?.commit()?;
    carry_over(&live, &dir)?;
    report.items = ids.items.len();
    report.seconds = serde_json::json!({
        "embed": embed_seconds,
        "index_insert": index_seconds,
        "write": t_write.elapsed().as_secs_f64(),
        "total": t0.elapsed().as_secs_f64(),
    });

    let mut inputs = live.manifest.inputs.clone();
    inputs["added_items"] = serde_json::json!({
        "file": std::fs::canonicalize(items_path).unwrap_or_else(|_| items_path.to_path_buf()),
        "from_version": live.manifest.version,
        "added": report.added,
        "already_known": report.already_known,
        "unknown_tokens": report.unknown_tokens,
        "added_since_build": since_build.len(),
        "quality_gate": "not re-run: add-items trains nothing",
    });
    let mut metrics = live.manifest.metrics.clone();
    metrics["add_items"] =
        serde_json::to_value(&report).map_err(|e| Error::Other(format!("metrics: {e}")))?;
    let manifest: Manifest = builder.publish(inputs, live.manifest.config.clone(), metrics)?;
    report.version = Some(manifest.version);
    prune(root, config.build.keep_versions)?;
    Ok(report)
}
