//! Human-readable summaries printed by the commands.

use crate::artifacts::Manifest;
use crate::serving::{Recommendation, Source};
use crate::stages::ranking::RankingFigures;
use crate::stages::retrieval::RetrievalMetrics;
use std::fmt::Write;

fn metrics(m: &serde_json::Value) -> Option<RetrievalMetrics> {
    let f = |k: &str, i: usize| m[k][i].as_f64();
    Some(RetrievalMetrics {
        users: m["users"].as_u64()? as usize,
        hr: [f("hr", 0)?, f("hr", 1)?, f("hr", 2)?],
        ndcg: [f("ndcg", 0)?, f("ndcg", 1)?, f("ndcg", 2)?],
    })
}

/// The one-screen summary of a build.
pub fn build_summary(m: &Manifest, seconds: f64) -> String {
    let mut s = String::new();
    let x = &m.metrics;
    let _ = writeln!(
        s,
        "published version {} ({} files) in {:.1} s",
        m.version,
        m.files.len(),
        seconds
    );
    let _ = writeln!(
        s,
        "data: {} ({} events, {} items, {} users)",
        m.inputs["data"].as_str().unwrap_or("?"),
        m.inputs["events"],
        m.inputs["items"],
        m.inputs["users"]
    );
    let _ = writeln!(
        s,
        "retrieval: {} examples, best epoch {} of {}{}",
        x["train_examples"],
        x["best_epoch"],
        x["epochs"],
        if x["stopped_by_time_budget"].as_bool() == Some(true) {
            " (stopped by [build] train_seconds)"
        } else {
            ""
        }
    );
    let ev = &m.inputs["evaluation"];
    if ev["sampled"].as_bool() == Some(true) {
        let _ = writeln!(
            s,
            "evaluation: a seeded sample of {} of {} evaluable users ([examples] eval_users)",
            ev["users"], ev["evaluable_users"]
        );
    }
    let _ = writeln!(s, "{}", RetrievalMetrics::header());
    for (label, key) in [
        ("validation (exact)", &x["validation_exact"]),
        ("test (exact)", &x["test_exact"]),
        ("test (served, index)", &x["index"]["test_served"]),
    ] {
        if let Some(r) = metrics(key) {
            let _ = writeln!(s, "{}", r.row(label));
        }
    }
    let _ = writeln!(
        s,
        "index: {}, recall@100 vs exact {:.4}, built in {:.1} s",
        x["index"]["kind"].as_str().unwrap_or("?"),
        x["index"]["recall_at_100"].as_f64().unwrap_or(f64::NAN),
        x["index"]["build_seconds"].as_f64().unwrap_or(f64::NAN)
    );
    let choice = &x["index"]["search_ef_choice"];
    if let (Some(ef), Some(r)) = (choice["ef"].as_u64(), choice["recall"].as_f64()) {
        let _ = writeln!(
            s,
            "index search ef {ef}: validation recall@100 {r:.4} (target {}{})",
            choice["target"],
            match (
                choice["reached"].as_bool(),
                x["index"]["exact_fallback"].as_bool(),
            ) {
                (Some(false), Some(true)) => {
                    ", not reached at any ef tried: exact search serves ([build] exact_fallback)"
                }
                (Some(false), _) => ", not reached at the largest ef tried",
                _ => "",
            }
        );
    }
    if let Ok(stages) =
        serde_json::from_value::<Vec<crate::progress::StageFigures>>(x["stages"].clone())
    {
        let parts: Vec<String> = stages
            .iter()
            .map(|st| match st.peak_rss_mib {
                Some(m) => format!("{} {:.1} s / {:.0} MiB", st.name, st.seconds, m),
                None => format!("{} {:.1} s", st.name, st.seconds),
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(s, "stages (wall time / peak RSS): {}", parts.join(", "));
        }
    }
    if let Some(r) = x.get("ranking") {
        let figures = serde_json::from_value::<RankingFigures>(r.clone());
        match (r["skipped"].as_str(), figures) {
            (Some(reason), _) => {
                let _ = writeln!(s, "ranking: skipped ({reason})");
            }
            (None, Ok(f)) => s.push_str(&f.table()),
            (None, Err(_)) => {
                let _ = writeln!(s, "ranking: {r}");
            }
        }
    }
    s
}

/// A recommendation as a table.
pub fn recommendation_table(r: &Recommendation, user: Option<&crate::ids::ExternalId>) -> String {
    let mut s = String::new();
    let who = user.map_or("ad-hoc history".to_string(), |u| format!("user {u}"));
    let how = match r.source {
        Source::Personal => "personal",
        Source::PopularFresh => "unknown user: popular fresh items",
    };
    let _ = writeln!(s, "{who} ({how}), version {}", r.version);
    let ranked = r.items.iter().any(|it| it.expected_watch_time.is_some());
    if ranked {
        let _ = writeln!(
            s,
            "{:>4} {:>10} {:>10} {:>10} {:>9}  title",
            "rank", "item", "exp. watch", "retr. rank", "score"
        );
    } else {
        let _ = writeln!(s, "{:>4} {:>10} {:>9}  title", "rank", "item", "score");
    }
    for (pos, it) in r.items.iter().enumerate() {
        let title = it.title.as_deref().unwrap_or("");
        match it.expected_watch_time {
            Some(t) if ranked => {
                let _ = writeln!(
                    s,
                    "{:>4} {:>10} {:>9.1}s {:>10} {:>9.4}  {title}",
                    pos + 1,
                    it.item_id,
                    t,
                    it.retrieval_rank,
                    it.retrieval_score
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "{:>4} {:>10} {:>9.4}  {title}",
                    it.retrieval_rank, it.item_id, it.retrieval_score
                );
            }
        }
    }
    s
}
