//! Ranking metrics of EVAL.md section 3, over scored impressions grouped into pages (one user,
//! one day).
//!
//! - Weighted per-user loss (Covington et al. 2016): over all (positive p, negative n) pairs of
//!   a page, T_p is mispredicted when score(n) > score(p), half when they tie;
//!   loss = sum of mispredicted T_p / sum of T_p over all pairs. Lower is better.
//! - GAUC: AUC of clicked against unclicked impressions within each page (ties count half),
//!   averaged with weights = the page's number of impressions. Pages with only clicked or only
//!   unclicked impressions have no AUC and are skipped (neither in the sum nor in the weights).
//! - XAUC: among pairs of clicked impressions of the same page with different watch times, the
//!   share ordered correctly by score (a score tie counts half), pooled over all pages.
//! - Watch time @k: per page, the watch time of the top k by score over the best possible top
//!   k; the mean over pages whose best is positive. A group of tied scores straddling the cut
//!   contributes its expected share (random order within the tie).
//!
//! Conventions: a positive is a clicked impression and its watch time is T; an unclicked
//! impression has watch time 0 whatever its row says; a NaN, infinite or negative watch time of
//! a clicked impression counts as 0; a NaN score ranks below every other score, and -0.0 ties
//! with 0.0. Every metric is `None` when nothing is measurable (no pairs, no page). Each page is
//! measured in O(n log n).
//!
//! Plain std code (plus serde for [`RankingMetrics`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// One scored impression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredImpression {
    /// The user the item was shown to.
    pub user: i64,
    /// The day of the impression (any day number: a page is one (user, day)).
    pub day: i64,
    /// The ranker's score; higher ranks first.
    pub score: f32,
    /// Whether the impression was clicked (watched).
    pub clicked: bool,
    /// Watch time in seconds (used for clicked impressions only).
    pub watch_time: f32,
}

/// Every metric of EVAL.md section 3 for one set of scored impressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingMetrics {
    /// Weighted per-user loss; lower is better.
    pub weighted_user_loss: Option<f64>,
    /// Impression-weighted mean per-page AUC.
    pub gauc: Option<f64>,
    /// Share of correctly ordered clicked pairs with different watch times.
    pub xauc: Option<f64>,
    /// Mean per-page watch time of the top 10 over the best top 10.
    pub watch_time_at_10: Option<f64>,
    /// Impressions measured.
    pub impressions: usize,
    /// Pages (user, day).
    pub pages: usize,
    /// (positive, negative) pairs within pages.
    pub pairs: u64,
}

/// Area under the ROC curve of `scores` for `labels` over all rows (ties count half: the
/// Mann-Whitney statistic with mid-ranks); `None` when every label is the same.
pub fn auc(labels: &[bool], scores: &[f32]) -> Option<f64> {
    let mut order: Vec<usize> = (0..labels.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0f64, 0u64);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i + 1 ..= j + 1 share their mean.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum += mid;
                positives += 1;
            }
        }
        i = j + 1;
    }
    let negatives = order.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Computes every metric (watch time at k = 10).
pub fn ranking_metrics(rows: &[ScoredImpression]) -> RankingMetrics {
    let pages = pages(rows);
    let pairs = pages
        .iter()
        .map(|page| {
            let positives = page.iter().filter(|r| r.clicked).count() as u64;
            positives * (page.len() as u64 - positives)
        })
        .sum();
    RankingMetrics {
        weighted_user_loss: weighted_loss_of(&pages),
        gauc: gauc_of(&pages),
        xauc: xauc_of(&pages),
        watch_time_at_10: watch_time_at_k_of(&pages, 10),
        impressions: rows.len(),
        pages: pages.len(),
        pairs,
    }
}

/// Weighted per-user loss (see the module doc).
pub fn weighted_user_loss(rows: &[ScoredImpression]) -> Option<f64> {
    weighted_loss_of(&pages(rows))
}

/// GAUC (see the module doc; single-class pages are skipped).
pub fn gauc(rows: &[ScoredImpression]) -> Option<f64> {
    gauc_of(&pages(rows))
}

/// XAUC (see the module doc).
pub fn xauc(rows: &[ScoredImpression]) -> Option<f64> {
    xauc_of(&pages(rows))
}

/// Watch time @k (see the module doc).
pub fn watch_time_at_k(rows: &[ScoredImpression], k: usize) -> Option<f64> {
    watch_time_at_k_of(&pages(rows), k)
}

/// One page's impressions as (score key, clicked, watch time).
type Page = Vec<Impression>;

#[derive(Debug, Clone, Copy)]
struct Impression {
    key: f32,
    clicked: bool,
    watch_time: f64,
}

/// A comparable score: NaN becomes -inf, -0.0 becomes 0.0.
fn score_key(score: f32) -> f32 {
    if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score + 0.0
    }
}

fn by_key(a: &f32, b: &f32) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// Groups rows into pages by (user, day).
fn pages(rows: &[ScoredImpression]) -> Vec<Page> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].user, rows[i].day));
    let mut pages: Vec<Page> = Vec::new();
    let mut last = None;
    for i in order {
        let row = &rows[i];
        if last != Some((row.user, row.day)) {
            pages.push(Vec::new());
            last = Some((row.user, row.day));
        }
        let t = f64::from(row.watch_time);
        let watch_time = if row.clicked && t.is_finite() && t > 0.0 {
            t
        } else {
            0.0
        };
        if let Some(page) = pages.last_mut() {
            page.push(Impression {
                key: score_key(row.score),
                clicked: row.clicked,
                watch_time,
            });
        }
    }
    pages
}

/// Sorted score keys of a page's unclicked impressions.
fn negative_keys(page: &Page) -> Vec<f32> {
    let mut keys: Vec<f32> = page.iter().filter(|r| !r.clicked).map(|r| r.key).collect();
    keys.sort_by(by_key);
    keys
}

/// (number of keys below `key`, number equal to it) in sorted `keys`.
fn below_and_equal(keys: &[f32], key: f32) -> (usize, usize) {
    let below = keys.partition_point(|&k| k < key);
    let not_above = keys.partition_point(|&k| k <= key);
    (below, not_above - below)
}

fn weighted_loss_of(pages: &[Page]) -> Option<f64> {
    let (mut mispredicted, mut total) = (0f64, 0f64);
    for page in pages {
        let negatives = negative_keys(page);
        for positive in page.iter().filter(|r| r.clicked) {
            let (below, equal) = below_and_equal(&negatives, positive.key);
            let above = negatives.len() - below - equal;
            mispredicted += positive.watch_time * (above as f64 + 0.5 * equal as f64);
            total += positive.watch_time * negatives.len() as f64;
        }
    }
    (total > 0.0).then(|| mispredicted / total)
}

fn gauc_of(pages: &[Page]) -> Option<f64> {
    let (mut weighted_auc, mut weight) = (0f64, 0f64);
    for page in pages {
        let negatives = negative_keys(page);
        let positives = page.len() - negatives.len();
        if positives == 0 || negatives.is_empty() {
            continue;
        }
        let correct: f64 = page
            .iter()
            .filter(|r| r.clicked)
            .map(|r| {
                let (below, equal) = below_and_equal(&negatives, r.key);
                below as f64 + 0.5 * equal as f64
            })
            .sum();
        let auc = correct / (positives * negatives.len()) as f64;
        weighted_auc += page.len() as f64 * auc;
        weight += page.len() as f64;
    }
    (weight > 0.0).then(|| weighted_auc / weight)
}

/// Counts over score ranks (a Fenwick tree).
struct RankCounts(Vec<u64>);

impl RankCounts {
    fn add(&mut self, rank: usize) {
        let mut i = rank + 1;
        while i < self.0.len() {
            self.0[i] += 1;
            i += i & i.wrapping_neg();
        }
    }

    /// How many added ranks are below `rank`.
    fn below(&self, rank: usize) -> u64 {
        let (mut i, mut sum) = (rank, 0);
        while i > 0 {
            sum += self.0[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

fn xauc_of(pages: &[Page]) -> Option<f64> {
    let (mut correct, mut total) = (0f64, 0f64);
    for page in pages {
        let mut clicked: Vec<Impression> = page.iter().filter(|r| r.clicked).copied().collect();
        clicked.sort_by(|a, b| a.watch_time.total_cmp(&b.watch_time));
        let mut keys: Vec<f32> = clicked.iter().map(|r| r.key).collect();
        keys.sort_by(by_key);
        keys.dedup();
        let rank = |key: f32| keys.partition_point(|&k| k < key);
        let mut counts = RankCounts(vec![0; keys.len() + 1]);
        let mut inserted = 0u64;
        let mut start = 0;
        while start < clicked.len() {
            let t = clicked[start].watch_time;
            let end = start
                + clicked[start..]
                    .iter()
                    .take_while(|r| r.watch_time == t)
                    .count();
            // Every earlier impression has a strictly lower watch time: ordered correctly when
            // its score is lower, half when equal.
            for r in &clicked[start..end] {
                let rank = rank(r.key);
                let below = counts.below(rank);
                let equal = counts.below(rank + 1) - below;
                correct += below as f64 + 0.5 * equal as f64;
                total += inserted as f64;
            }
            for r in &clicked[start..end] {
                counts.add(rank(r.key));
            }
            inserted += (end - start) as u64;
            start = end;
        }
    }
    (total > 0.0).then(|| correct / total)
}

fn watch_time_at_k_of(pages: &[Page], k: usize) -> Option<f64> {
    let (mut ratio_sum, mut measured) = (0f64, 0usize);
    for page in pages {
        let mut times: Vec<f64> = page.iter().map(|r| r.watch_time).collect();
        times.sort_by(|a, b| b.total_cmp(a));
        let best: f64 = times.iter().take(k).sum();
        if best <= 0.0 {
            continue;
        }
        let mut ranked = page.clone();
        ranked.sort_by(|a, b| by_key(&b.key, &a.key));
        let (mut actual, mut slots, mut start) = (0f64, k, 0);
        while start < ranked.len() && slots > 0 {
            let key = ranked[start].key;
            let end = start + ranked[start..].iter().take_while(|r| r.key == key).count();
            let group = end - start;
            let sum: f64 = ranked[start..end].iter().map(|r| r.watch_time).sum();
            let taken = group.min(slots);
            actual += sum * taken as f64 / group as f64;
            slots -= taken;
            start = end;
        }
        ratio_sum += actual / best;
        measured += 1;
    }
    (measured > 0).then(|| ratio_sum / measured as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half_and_is_none_for_one_class() {
        // Pairs (p, n): (0.9, 0.5) right, (0.9, 0.2) right, (0.2, 0.5) wrong, (0.2, 0.2) tie.
        let labels = [true, false, true, false];
        assert_eq!(auc(&labels, &[0.9, 0.5, 0.2, 0.2]), Some(2.5 / 4.0));
        assert_eq!(auc(&[true, true], &[0.1, 0.2]), None);
    }

    fn row(user: i64, day: i64, score: f32, clicked: bool, watch_time: f32) -> ScoredImpression {
        ScoredImpression {
            user,
            day,
            score,
            clicked,
            watch_time,
        }
    }

    /// Page (1, 1): positives 0.9 (10 s), 0.2 (30 s); negatives 0.5, 0.2.
    /// Page (1, 2): clicked only: 0.4 (5 s), 0.4 (8 s), 0.7 (8 s).
    /// Page (2, 1): positive 0.1 (20 s), negative 0.3.
    fn hand_case() -> Vec<ScoredImpression> {
        vec![
            row(1, 1, 0.9, true, 10.0),
            row(2, 1, 0.1, true, 20.0),
            row(1, 1, 0.5, false, 7.0),
            row(1, 2, 0.4, true, 5.0),
            row(1, 1, 0.2, true, 30.0),
            row(1, 2, 0.4, true, 8.0),
            row(1, 1, 0.2, false, 0.0),
            row(2, 1, 0.3, false, 0.0),
            row(1, 2, 0.7, true, 8.0),
        ]
    }

    fn close(value: Option<f64>, expected: f64) -> bool {
        value.is_some_and(|v| (v - expected).abs() < 1e-12)
    }

    #[test]
    fn weighted_loss_on_hand_case() {
        // Page (1, 1): mispredicted 30 (0.5 > 0.2) + 15 (tie) of 2 * 10 + 2 * 30 = 80.
        // Page (2, 1): mispredicted 20 of 20. Loss = 65 / 100.
        assert!(close(weighted_user_loss(&hand_case()), 0.65));
        let metrics = ranking_metrics(&hand_case());
        assert_eq!(
            (metrics.impressions, metrics.pages, metrics.pairs),
            (9, 3, 5)
        );
    }

    #[test]
    fn gauc_skips_single_class_pages() {
        // Page (1, 1): AUC (2 + 0.5) / 4, weight 4; page (2, 1): AUC 0, weight 2.
        assert!(close(gauc(&hand_case()), 2.5 / 6.0));
        assert_eq!(gauc(&[row(1, 1, 0.5, true, 3.0)]), None);
    }

    #[test]
    fn xauc_on_hand_case() {
        // Page (1, 1): the 30 s impression scores lower than the 10 s one: 0 of 1.
        // Page (1, 2): (5 s, 8 s) tied 0.4: 0.5; (5 s at 0.4, 8 s at 0.7): 1; the 8 s pair is
        // not compared. Total 1.5 of 3.
        assert!(close(xauc(&hand_case()), 0.5));
    }

    #[test]
    fn watch_time_at_k_on_hand_case() {
        // k = 2. Page (1, 1): top 2 = 0.9 (10 s), 0.5 (unclicked: 0 s) over best 40 s.
        // Page (1, 2): 0.7 (8 s) then one of the tied 0.4s: (5 + 8) / 2, over best 16 s.
        // Page (2, 1): 20 of 20.
        let expected = (10.0 / 40.0 + (8.0 + 6.5) / 16.0 + 1.0) / 3.0;
        assert!(close(watch_time_at_k(&hand_case(), 2), expected));
        // k = 1, page (2, 1) puts the negative first: 0.
        let expected = (10.0 / 30.0 + 8.0 / 8.0 + 0.0) / 3.0;
        assert!(close(watch_time_at_k(&hand_case(), 1), expected));
        // Pages without positive watch time are not measured.
        assert_eq!(watch_time_at_k(&[row(1, 1, 0.5, false, 9.0)], 10), None);
    }

    #[test]
    fn nan_scores_rank_last_and_bad_watch_times_count_zero() {
        let rows = [
            row(1, 1, f32::NAN, true, 10.0),
            row(1, 1, -1.0, false, 0.0),
            row(1, 1, 0.0, true, f32::NAN),
        ];
        assert!(close(weighted_user_loss(&rows), 1.0));
        assert_eq!(ranking_metrics(&[]).weighted_user_loss, None);
    }

    /// Pair-by-pair definitions, to check the O(n log n) versions on random pages.
    fn brute_force(rows: &[ScoredImpression]) -> (f64, f64) {
        let (mut mis, mut total, mut correct, mut pairs) = (0.0, 0.0, 0.0, 0.0);
        let t = |r: &ScoredImpression| {
            if r.clicked {
                f64::from(r.watch_time)
            } else {
                0.0
            }
        };
        for p in rows {
            for q in rows {
                if (p.user, p.day) != (q.user, q.day) {
                    continue;
                }
                if p.clicked && !q.clicked {
                    total += t(p);
                    mis += t(p)
                        * if q.score > p.score {
                            1.0
                        } else if q.score == p.score {
                            0.5
                        } else {
                            0.0
                        };
                }
                if p.clicked && q.clicked && t(p) > t(q) {
                    pairs += 1.0;
                    correct += if p.score > q.score {
                        1.0
                    } else if p.score == q.score {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        (mis / total, correct / pairs)
    }

    #[test]
    fn fast_versions_match_pairwise_definitions() {
        let mut state = 7u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let rows: Vec<ScoredImpression> = (0..600)
            .map(|_| {
                row(
                    next(5) as i64,
                    next(3) as i64,
                    next(8) as f32,
                    next(3) == 0,
                    next(6) as f32,
                )
            })
            .collect();
        let (loss, xauc_expected) = brute_force(&rows);
        assert!(close(weighted_user_loss(&rows), loss));
        assert!(close(xauc(&rows), xauc_expected));
    }
}
