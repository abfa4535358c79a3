//! `recpipe leaderboard`: every chosen retriever trained with its settings on EVAL.md section 1
//! (leave-last-out, exact scores over the full catalogue), beside two reference orders that
//! need no model: most popular, and the "next unseen ids after the last watch" canary (a model
//! that needs the catalogue's numbering to look good has learnt it, not its users). One table,
//! a JSON file and an SVG chart of HR@K for K = 1..100.

use std::path::Path;
use std::time::Instant;

use retrieval::{target_rank, RankMetrics};
use serde::Serialize;

use crate::error::Result;
use crate::examples::RetrievalInputs;
use crate::stages::retrieval::{model_err, train_on, RetrievalMetrics, CUTOFFS};
use retrieval::RetrievalSettings;

/// Largest K of the HR@K curve.
pub const CURVE_K: usize = 100;

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Model name, or the reference order's name.
    pub model: String,
    /// Whether the row is a reference order rather than a trained model.
    pub reference: bool,
    /// Test target, exact scores.
    pub test: RetrievalMetrics,
    /// Validation target (trained models only).
    pub validation: Option<RetrievalMetrics>,
    /// HR@K for K = 1..=100 on the test target.
    pub hr_curve: Vec<f64>,
    /// Training seconds (trained models only).
    pub train_seconds: Option<f64>,
    /// Epoch kept and epochs run.
    pub epochs: Option<(usize, usize)>,
    /// Peak resident memory while this model trained and was evaluated, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
}

fn curve(m: &RankMetrics) -> Vec<f64> {
    (0..CURVE_K).map(|i| m.hit_rate(i)).collect()
}

fn cutoffs() -> Vec<usize> {
    (1..=CURVE_K).collect()
}

/// Trains `model` (a registry name) with `settings` on `inputs` and measures it; hands the
/// inputs back for the next model.
pub fn model_entry(
    inputs: RetrievalInputs,
    settings: &RetrievalSettings,
    model: &str,
) -> Result<(Entry, RetrievalInputs)> {
    let settings = settings.with_model(model);
    let measured = super::reset_peak_rss();
    let t = Instant::now();
    let trained = train_on(inputs, &settings, None)?;
    let seconds = t.elapsed().as_secs_f64();
    let m = trained
        .model
        .evaluate(
            &trained.inputs.test,
            trained.inputs.features.as_ref(),
            &cutoffs(),
        )
        .map_err(model_err)?;
    let entry = Entry {
        model: model.to_string(),
        reference: false,
        test: trained.test,
        validation: Some(trained.validation),
        hr_curve: curve(&m),
        train_seconds: Some(seconds),
        epochs: Some((trained.report.best_epoch, trained.report.epochs.len())),
        peak_rss_mib: if measured {
            super::peak_rss_mib()
        } else {
            None
        },
    };
    Ok((entry, trained.inputs))
}

/// The two reference orders on the test target of `inputs`.
pub fn reference_entries(inputs: &RetrievalInputs) -> Vec<Entry> {
    let n = inputs.catalog.num_items;
    // Popularity over every known watch before the test targets (training + validation).
    let mut counts = vec![0f32; n];
    for case in &inputs.test {
        case.history.iter().for_each(|&i| counts[i as usize] += 1.0);
    }
    // Item indices in raw-id order, for the canary.
    let mut by_id: Vec<u32> = (0..n as u32).collect();
    by_id.sort_by_key(|&i| inputs.items.ids[i as usize]);
    let mut position = vec![0usize; n];
    by_id
        .iter()
        .enumerate()
        .for_each(|(p, &i)| position[i as usize] = p);

    let mut popular = RankMetrics::new(&cutoffs());
    let mut canary = RankMetrics::new(&cutoffs());
    let mut scores = vec![0f32; n];
    for case in &inputs.test {
        popular.add(target_rank(&counts, case.target, &case.exclude));
        // The unseen items with the next ids after the last watch score highest, wrapping.
        let last = case.history.last().map_or(0, |&i| position[i as usize]);
        for (i, s) in scores.iter_mut().enumerate() {
            let ahead = (position[i] + n - last - 1) % n;
            *s = -(ahead as f32);
        }
        canary.add(target_rank(&scores, case.target, &case.exclude));
    }
    let entry = |name: &str, m: &RankMetrics| {
        let cut: Vec<usize> = CUTOFFS.iter().map(|k| k - 1).collect();
        Entry {
            model: name.to_string(),
            reference: true,
            test: RetrievalMetrics {
                users: m.users,
                hr: [0, 1, 2].map(|j| m.hit_rate(cut[j])),
                ndcg: [0, 1, 2].map(|j| m.ndcg_at(cut[j])),
            },
            validation: None,
            hr_curve: curve(m),
            train_seconds: None,
            epochs: None,
            peak_rss_mib: None,
        }
    };
    vec![
        entry("most popular", &popular),
        entry("next ids (canary)", &canary),
    ]
}

/// The table: one line per entry.
pub fn table(entries: &[Entry]) -> String {
    let mut s = format!(
        "{:<20} {:>6} {:>7} {:>7} {:>7} {:>8} {:>9} {:>8} {:>9}\n",
        "model", "users", "HR@10", "HR@50", "HR@100", "NDCG@10", "train s", "epochs", "peak MiB"
    );
    for e in entries {
        let opt = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |v| format!("{v:.p$}"));
        s.push_str(&format!(
            "{:<20} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>8.4} {:>9} {:>8} {:>9}\n",
            e.model,
            e.test.users,
            e.test.hr[0],
            e.test.hr[1],
            e.test.hr[2],
            e.test.ndcg[0],
            opt(e.train_seconds, 1),
            e.epochs.map_or("-".into(), |(b, n)| format!("{b}/{n}")),
            opt(e.peak_rss_mib, 0),
        ));
    }
    s
}

/// An SVG line chart of HR@K (K = 1..=100) per entry; reference orders dashed.
pub fn svg(entries: &[Entry], title: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 440.0;
    const L: f64 = 60.0;
    const R: f64 = 190.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    const COLOURS: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    ];
    let top = entries
        .iter()
        .flat_map(|e| e.hr_curve.iter().copied())
        .fold(0.0f64, f64::max);
    let y_max = ((top * 10.0).ceil() / 10.0).clamp(0.1, 1.0);
    let x = |k: usize| L + (k as f64 - 1.0) / (CURVE_K as f64 - 1.0) * (W - L - R);
    let y = |v: f64| H - B - v / y_max * (H - T - B);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{L}\" y=\"24\" font-size=\"15\">{}</text>\n",
        escape(title)
    );
    for i in 0..=5 {
        let v = y_max * i as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>\n",
            W - R,
            y(v),
            y(v),
            L - 6.0,
            y(v) + 4.0
        ));
    }
    for k in [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100] {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{k}</text>\n",
            x(k),
            H - B + 16.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">K</text><text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">HR@K (test, exact)</text>\n",
        (L + W - R) / 2.0,
        H - 12.0,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    ));
    for (n, e) in entries.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let points: Vec<String> = e
            .hr_curve
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i + 1), y(v)))
            .collect();
        let dash = if e.reference {
            " stroke-dasharray=\"5,4\""
        } else {
            ""
        };
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{} ({:.3})</text>\n",
            points.join(" "),
            W - R + 8.0,
            T + 16.0 + 18.0 * n as f64,
            escape(&e.model),
            e.test.hr[0]
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `text` to `path` under a temporary name, renamed into place when complete.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let (file, mut handle) = crate::output::AtomicFile::create(path)?;
    handle
        .write_all(text.as_bytes())
        .map_err(|e| crate::Error::io(path, e))?;
    drop(handle);
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(model: &str, curve: Vec<f64>) -> Entry {
        Entry {
            model: model.into(),
            reference: false,
            test: RetrievalMetrics::default(),
            validation: None,
            hr_curve: curve,
            train_seconds: None,
            epochs: None,
            peak_rss_mib: None,
        }
    }

    #[test]
    fn svg_has_one_line_per_entry_and_escapes_names() {
        let c: Vec<f64> = (1..=CURVE_K).map(|k| k as f64 / 200.0).collect();
        let s = svg(&[entry("a<b", c.clone()), entry("mf", c)], "t");
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a&lt;b") && !s.contains("a<b"));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }
}
