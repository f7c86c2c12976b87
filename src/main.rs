//! The `fingerprint` binary: parse the command line, call the library, print the
//! result, and map the outcome to an exit status (0 success, 1 a finding such as a
//! difference, 2 an error).

mod cli;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, EnforceArgs, LearnArgs, MergeArgs, OutputFormat, ShowArgs};
use fingerprint::enforce::run::{EnforceOptions, EnforceSummary, Signals};
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
        Command::Enforce(args) => enforce_command(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fingerprint: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Flags for loops that must stop cleanly: SIGINT and SIGTERM stop, SIGHUP reloads.
fn signals() -> Result<Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signals = Signals {
        stop: Arc::new(AtomicBool::new(false)),
        reload: Arc::new(AtomicBool::new(false)),
    };
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&signals.stop))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(&signals.reload))
        .context("installing the SIGHUP handler")?;
    Ok(signals)
}

fn learn_command(args: LearnArgs) -> Result<ExitCode> {
    let opts = LearnOptions {
        db: args.db,
        duration: args.duration,
        cgroups: args.cgroups,
        hook: args.hook,
        quiet: args.quiet,
    };
    let summary = learn::run(&opts, signals()?.stop)?;
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

fn enforce_command(args: EnforceArgs) -> Result<ExitCode> {
    let opts = EnforceOptions {
        profiles: args.profile,
        mechanism: args.mechanism,
        mode: args.mode,
        default_deny_scope: match args.default {
            cli::DefaultPolicy::Allow => None,
            cli::DefaultPolicy::Deny => Some(args.default_scope),
        },
        events: args.events,
        db: (!args.no_db).then_some(args.db),
        max_cgroups: args.max_cgroups,
        allow_capacity: args.allow_capacity,
    };
    let summary = fingerprint::enforce::run::run(&opts, &signals()?)?;
    print_enforce_summary(&summary);
    if summary.counters.dropped > 0 {
        eprintln!(
            "fingerprint: {} violation events were DROPPED (ring buffer full): the decisions \
             were still enforced, but not all were reported",
            summary.counters.dropped
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_enforce_summary(s: &EnforceSummary) {
    eprintln!(
        "fingerprint: enforced {} profiles for {:.1}s with the {} mechanism: {} execs checked, \
         {} violations ({} reported, {} dropped), {} cgroups bound at creation, {} reloads",
        s.profiles,
        s.elapsed.as_secs_f64(),
        s.mechanism.name(),
        s.counters.checks,
        s.counters.violations,
        s.reported,
        s.counters.dropped,
        s.counters.bound_at_mkdir,
        s.reloads
    );
}
