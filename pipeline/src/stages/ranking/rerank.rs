//! Re-ranking with a saved ranker: features of (user, candidate) pairs as of the end of the
//! data (each user's state after all their events, time = the latest event), scored in
//! batches; `recpipe rerank` streams `candidates.parquet` to `ranked.parquet` user by user.

use crate::data::{Candidate, CandidatesReader, CandidatesWriter};
use crate::error::{Error, Result};
use crate::progress::bar;
use crate::serving::LoadedRanker;
use ranking::RankingExample;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

/// Candidates scored together: complete users are gathered until this many rows.
const CHUNK_ROWS: usize = 64 * 1024;

/// What a re-ranking run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RerankSummary {
    /// Rows read and written.
    pub rows: usize,
    /// Users.
    pub users: usize,
    /// Users without any event in the data (scored with cold user features).
    pub unknown_users: usize,
    /// Rows of those users.
    pub unknown_user_rows: usize,
    /// Rows whose item is outside the ranker's item vocabulary (zero item embedding).
    pub unknown_item_rows: usize,
    /// Wall time.
    pub seconds: f64,
}

impl std::fmt::Display for RerankSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ranked {} candidates of {} users in {:.1} s ({:.0} candidates/s); cold: {} users without events ({} rows), {} rows with an item outside the ranker's vocabulary",
            self.rows,
            self.users,
            self.seconds,
            self.rows as f64 / self.seconds.max(1e-9),
            self.unknown_users,
            self.unknown_user_rows,
            self.unknown_item_rows
        )
    }
}

/// Scores the complete users of `groups` and writes them, each sorted by expected watch time
/// (ties: retrieval rank, then item id), ranks from 1.
fn flush(
    ranker: &LoadedRanker,
    groups: &mut Vec<Vec<Candidate>>,
    writer: &mut CandidatesWriter,
    reader: &CandidatesReader,
    summary: &mut RerankSummary,
) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let per_user: Vec<Vec<RankingExample>> = groups
        .par_iter()
        .map(|g| {
            let items: Vec<i64> = g.iter().map(|c| c.item_id).collect();
            let retrieved: Vec<(f32, u32)> = g
                .iter()
                .map(|c| (c.retrieval_score, c.retrieval_rank))
                .collect();
            ranker.examples(g.first().map(|c| c.user_id), &items, &retrieved)
        })
        .collect();
    let examples: Vec<RankingExample> = per_user.into_iter().flatten().collect();
    let scores = ranker.score_examples(&examples)?;
    let mut rows = Vec::with_capacity(examples.len());
    let mut ranking = Vec::with_capacity(examples.len());
    let mut offset = 0;
    for group in groups.drain(..) {
        let scores = &scores[offset..offset + group.len()];
        offset += group.len();
        let mut order: Vec<usize> = (0..group.len()).collect();
        order.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then(group[a].retrieval_rank.cmp(&group[b].retrieval_rank))
                .then(group[a].item_id.cmp(&group[b].item_id))
        });
        if let Some(first) = group.first() {
            summary.users += 1;
            if !ranker.knows_user(first.user_id) {
                summary.unknown_users += 1;
                summary.unknown_user_rows += group.len();
            }
        }
        summary.unknown_item_rows += group
            .iter()
            .filter(|c| !ranker.knows_item(c.item_id))
            .count();
        for (rank, &i) in order.iter().enumerate() {
            rows.push(group[i]);
            ranking.push((scores[i], rank as u32 + 1));
        }
    }
    summary.rows += rows.len();
    writer.write(&rows, &ranking, reader.user_keys(), reader.item_keys())
}

/// Re-ranks `input` (`candidates.parquet`) into `out` (`ranked.parquet`): each user's
/// candidates ordered by expected watch time, users in the input's order. A user's rows must
/// be contiguous (as `recpipe candidates` writes them); otherwise the run fails and writes
/// nothing. Memory holds one chunk of users at a time.
pub fn rerank_file(ranker: &LoadedRanker, input: &Path, out: &Path) -> Result<RerankSummary> {
    let t = Instant::now();
    let mut reader = CandidatesReader::open(input)?;
    let mut writer = CandidatesWriter::create(out, true, reader.string_ids())?;
    let pb = bar(reader.num_rows() as u64, "rerank");
    let mut summary = RerankSummary::default();
    let mut finished: HashSet<i64> = HashSet::new();
    let mut groups: Vec<Vec<Candidate>> = Vec::new();
    let mut current: Vec<Candidate> = Vec::new();
    let (mut gathered, mut row) = (0usize, 0usize);
    while let Some(batch) = reader.next_batch()? {
        pb.inc(batch.len() as u64);
        for c in batch {
            row += 1;
            if current.last().is_some_and(|p| p.user_id != c.user_id) {
                let group = std::mem::take(&mut current);
                finished.insert(group[0].user_id);
                gathered += group.len();
                groups.push(group);
            }
            if current.is_empty() && finished.contains(&c.user_id) {
                return Err(Error::input(
                    input,
                    format!(
                        "row {row}: the candidates of user {} are not contiguous (sort the file by user_id, as `recpipe candidates` writes it)",
                        crate::ids::key_or_number(reader.user_keys(), c.user_id)
                    ),
                ));
            }
            current.push(c);
        }
        if gathered >= CHUNK_ROWS {
            flush(ranker, &mut groups, &mut writer, &reader, &mut summary)?;
            gathered = 0;
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    flush(ranker, &mut groups, &mut writer, &reader, &mut summary)?;
    pb.finish_and_clear();
    writer.finish()?.commit()?;
    summary.seconds = t.elapsed().as_secs_f64();
    Ok(summary)
}
