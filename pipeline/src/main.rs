//! The `recpipe` binary: parses the command line and reports failures in one line.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // candle's element-wise thread pool spins while it waits on busy cores; one thread there
    // trained 3.4x faster on 2 cores with identical results (matmuls still use every core).
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = recpipe::args::Cli::parse();
    if let Err(e) = recpipe::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
