//! The `fingerprint` binary: parse the command line, call the library, print the
//! result, and map the outcome to an exit status (0 success, 1 a finding such as a
//! difference, 2 an error).

mod cli;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, LearnArgs, MergeArgs, OutputFormat, ShowArgs};
use fingerprint::learn::{self, LearnOptions, LearnSummary};
use fingerprint::show;
use fingerprint::storage::Database;

/// Exit status for errors (diff(1) convention: 0 same, 1 different, 2 trouble).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Learn(args) => learn_command(args),
        Command::Merge(args) => merge_command(args),
        Command::Show(args) => show_command(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fingerprint: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// A flag set by Ctrl-C and SIGTERM, for loops that must stop cleanly.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;
    Ok(stop)
}

fn learn_command(args: LearnArgs) -> Result<ExitCode> {
    let opts = LearnOptions {
        db: args.db,
        duration: args.duration,
        cgroups: args.cgroups,
        hook: args.hook,
        quiet: args.quiet,
    };
    let summary = learn::run(&opts, stop_flag()?)?;
    if !opts.quiet {
        print_learn_summary(&summary);
    }
    if summary.counters.dropped > 0 {
        eprintln!(
            "fingerprint: {} exec events were DROPPED (ring buffer full); the profile may \
             be incomplete: learn again, or learn fewer cgroups at once",
            summary.counters.dropped
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_learn_summary(s: &LearnSummary) {
    println!(
        "learned for {:.1}s at {}: {} execs seen, {} dropped, {} executables recorded \
         across {} workloads ({} distinct workload/executable pairs)",
        s.elapsed.as_secs_f64(),
        s.hook,
        s.counters.events,
        s.counters.dropped,
        s.recorded,
        s.workloads,
        s.executables
    );
    if s.unnamed_cgroups > 0 {
        println!(
            "note: {} cgroups were gone before they could be named; their execs are kept \
             under cgroup-id:N",
            s.unnamed_cgroups
        );
    }
    if s.undecodable > 0 {
        println!("warning: {} events could not be decoded", s.undecodable);
    }
}

fn merge_command(args: MergeArgs) -> Result<ExitCode> {
    let mut into =
        Database::open(&args.into).with_context(|| format!("opening {}", args.into.display()))?;
    for source in &args.sources {
        let report = into.merge_from(source).with_context(|| {
            format!("merging {} into {}", source.display(), args.into.display())
        })?;
        println!(
            "{}: {} sessions added, {} already present",
            source.display(),
            report.sessions_added,
            report.sessions_already_present
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show_command(args: ShowArgs) -> Result<ExitCode> {
    let db = Database::open_existing(&args.db)?;
    let sessions = db.sessions()?;
    let workloads = db.learned_workloads()?;
    match args.output {
        OutputFormat::Text => print!("{}", show::render_text(&sessions, &workloads)),
        OutputFormat::Json => println!("{:#}", show::render_json(&sessions, &workloads)),
    }
    Ok(ExitCode::SUCCESS)
}
