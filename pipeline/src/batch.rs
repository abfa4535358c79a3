//! The offline batch path: candidates for many users into `candidates.parquet`, in parallel,
//! streamed in blocks so memory stays bounded.

use crate::data::{Candidate, CandidatesWriter};
use crate::error::{Error, Result};
use crate::progress::bar;
use crate::serving::LiveModel;
use rayon::prelude::*;
use std::path::Path;

/// Users per block: searched in parallel, then written.
const BLOCK: usize = 4_096;

/// Reads user ids, one per line as the data spells them (blank lines and `#` comments
/// skipped), as `live`'s internal ids.
pub fn read_user_list(path: &Path, live: &LiveModel) -> Result<Vec<i64>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        out.push(
            live.spellings()
                .users
                .parse(t, "user id")
                .map_err(|e| Error::input(path, format!("line {}: {e}", n + 1)))?,
        );
    }
    Ok(out)
}

/// Writes the top `k` candidates of each user (seen items excluded) to `out`; returns rows.
pub fn write_candidates(
    live: &LiveModel,
    users: &[i64],
    k: usize,
    ef: Option<usize>,
    out: &Path,
) -> Result<usize> {
    let mut w = CandidatesWriter::create(out, false, live.spellings().string_ids())?;
    let pb = bar(users.len() as u64, "candidates");
    for block in users.chunks(BLOCK) {
        let lists: Vec<Result<Vec<Candidate>>> = block
            .par_iter()
            .map(|&u| {
                let r = live.recommend(Some(u), &[], k, ef)?;
                Ok(r.items
                    .iter()
                    .map(|it| Candidate {
                        user_id: u,
                        item_id: it.item,
                        retrieval_score: it.retrieval_score,
                        retrieval_rank: it.retrieval_rank,
                    })
                    .collect())
            })
            .collect();
        let mut rows = Vec::new();
        for l in lists {
            rows.extend(l?);
        }
        let ids = live.spellings();
        w.write(&rows, &[], ids.users.keys(), ids.items.keys())?;
        pb.inc(block.len() as u64);
    }
    pb.finish_and_clear();
    let n = w.rows;
    w.finish()?.commit()?;
    Ok(n)
}
