//! Progress bars on standard error (drawn only when it is a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `total` units of `what`.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(what.to_string());
    pb
}

/// Marks the start of a named stage of a long job: logged at info level. For crash tests, when
/// the environment variable `RECPIPE_PAUSE_AT` names this stage, the process says
/// `paused at <stage>` on standard error and sleeps for a minute, so that a test can kill it at
/// exactly this point.
pub fn stage(name: &str) {
    tracing::info!(stage = name, "stage");
    if std::env::var("RECPIPE_PAUSE_AT").is_ok_and(|v| v == name) {
        eprintln!("paused at {name}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}
