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

/// Wall time and peak resident memory of one stage of a job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageFigures {
    /// The stage's name (as given to [`stage`]).
    pub name: String,
    /// Wall seconds.
    pub seconds: f64,
    /// The process's peak resident set during the stage, in MiB (`None` where the operating
    /// system does not tell: outside Linux).
    pub peak_rss_mib: Option<f64>,
}

/// Times a job stage by stage: [`StageLog::start`] ends the running stage and begins the next
/// (announced with [`stage`]); the peak resident set is reset at each start (Linux
/// `/proc/self/clear_refs`), so each stage reports its own peak.
#[derive(Debug, Default)]
pub struct StageLog {
    done: Vec<StageFigures>,
    running: Option<(String, std::time::Instant)>,
}

/// The process's peak resident set since the last reset, in MiB (`VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn reset_peak_rss() {
    // "5" resets the peak resident set to the current one (Linux 4.0+); harmless elsewhere.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

impl StageLog {
    /// Ends the running stage, if any, and starts `name`.
    pub fn start(&mut self, name: &str) {
        self.end();
        reset_peak_rss();
        stage(name);
        self.running = Some((name.to_string(), std::time::Instant::now()));
    }

    /// Ends the running stage.
    pub fn end(&mut self) {
        if let Some((name, t)) = self.running.take() {
            self.done.push(StageFigures {
                name,
                seconds: t.elapsed().as_secs_f64(),
                peak_rss_mib: peak_rss_mib(),
            });
        }
    }

    /// The stages ended so far.
    pub fn stages(&self) -> &[StageFigures] {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_reports_its_own_time_and_peak() {
        let mut log = StageLog::default();
        log.start("small");
        let small = vec![1u8; 1 << 20];
        log.start("big");
        // Touch 256 MiB so that the peak moves.
        let mut big = vec![0u8; 256 << 20];
        for i in (0..big.len()).step_by(4096) {
            big[i] = 1;
        }
        std::hint::black_box((&small, &big));
        drop(big);
        log.start("after");
        log.end();
        let names: Vec<&str> = log.stages().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["small", "big", "after"]);
        if let (Some(b), Some(a)) = (log.stages()[1].peak_rss_mib, log.stages()[2].peak_rss_mib) {
            assert!(b >= 256.0, "big stage peak {b} MiB");
            assert!(
                a < b - 200.0,
                "after {a} MiB, big {b} MiB: the peak was not reset"
            );
        }
    }
}
