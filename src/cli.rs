//! Command-line definitions. Every flag is documented here, where it is defined; the
//! handlers in main.rs only parse and call into the library.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use fingerprint::bpf::learn::HookChoice;

/// Learn which executables every workload runs, review them as profiles, lock them.
#[derive(Debug, Parser)]
#[command(name = "fingerprint", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record every exec, per workload, into a SQLite database.
    ///
    /// Attaches one BPF program and names each cgroup as the workload it belongs to
    /// (systemd unit, container, Kubernetes pod container, else the cgroup path).
    /// An existing database is appended to. Stop with Ctrl-C or SIGTERM: events
    /// already produced are drained and written before exit.
    ///
    /// Examples:
    ///   fingerprint learn --duration 10m
    ///   fingerprint learn --db /var/lib/fingerprint/learn.db --cgroup /system.slice/nginx.service
    #[command(verbatim_doc_comment)]
    Learn(LearnArgs),
    /// Merge learning databases from several nodes or replicas into one.
    ///
    /// Sessions are copied with their provenance (host, kernel, source file); merging
    /// the same database twice changes nothing, and the order does not matter.
    ///
    /// Example:
    ///   fingerprint merge --into fleet.db node-a.db node-b.db
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Show what a learning database holds: sessions, workloads, executables.
    ///
    /// Example:
    ///   fingerprint show --db fingerprint.db -o json
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
}

/// Output formats for commands that report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For machines: one JSON document on stdout.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Database to read.
    #[arg(long, default_value = "fingerprint.db", value_name = "PATH")]
    pub db: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// Database to record into; created if missing, appended to if present.
    #[arg(long, default_value = "fingerprint.db", value_name = "PATH")]
    pub db: PathBuf,
    /// Stop after this long (e.g. 30s, 10m, 2h). Default: until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Learn only this cgroup and everything below it; repeatable. A path under the
    /// cgroup v2 mount, or relative to it (e.g. /system.slice/nginx.service).
    /// Default: every cgroup on the node.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,
    /// Hook to learn at: `lsm` records exactly what enforcement checks (needs a kernel
    /// that allows BPF LSM programs); `tracepoint` works wherever BTF does; `auto`
    /// tries the LSM first and says which one it uses.
    #[arg(long, value_enum, default_value_t = HookChoice::Auto)]
    pub hook: HookChoice,
    /// No live display and no summary; errors are still printed.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Database to merge into; created if missing.
    #[arg(long, value_name = "PATH")]
    pub into: PathBuf,
    /// Databases to merge from.
    #[arg(required = true, value_name = "DB")]
    pub sources: Vec<PathBuf>,
}

/// Durations like `500ms`, `30s`, `10m`, `2h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 30s, 10m or 2h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use ms, s, m or h"
            ))
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
