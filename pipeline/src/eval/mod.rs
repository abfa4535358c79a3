//! Quality measurement exactly as `EVAL.md` fixes it.

pub mod leaderboard;
pub mod ncf;
pub mod ranking;
pub mod rating;
pub mod side_features;

/// Resets the process's peak resident set size (Linux: `clear_refs` 5), so that the next
/// reading is the next model's. Returns whether it could.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size since the last reset, MiB.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
