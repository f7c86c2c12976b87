//! The `fingerprint` binary: parse the command line, call the library, print the
//! result, and map the outcome to an exit status (0 success, 1 a finding such as a
//! difference, 2 an error).

mod cli;
mod manual;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{
    CheckArgs, Cli, Color, Command, DiffArgs, EnforceArgs, ExportArgs, FailOn, LearnArgs,
    MergeArgs, OutputFormat, ShowArgs, StatusArgs, StopArgs,
};
use fingerprint::bpf::pinned;
use fingerprint::check;
use fingerprint::convergence;
use fingerprint::diff;
use fingerprint::enforce::run::{EnforceOptions, EnforceSummary, Signals};
use fingerprint::learn::{self, LearnOptions, LearnSummary};
use fingerprint::peer_formats::{self, Labels, PeerFormat};
use fingerprint::profile::{self, write_file_set, ExportOptions, ProfileSet, WriteReport};
use fingerprint::readiness;
use fingerprint::show;
use fingerprint::storage::{self, Database};
use fingerprint::workload::kubeapi::ApiReader;

/// Exit status for errors (diff(1) convention: 0 same, 1 different, 2 trouble).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // A reader that closes early (`fingerprint show | head`) ends the command as it
    // ends `yes | head`: by SIGPIPE, quietly, instead of a panic on the next print.
    reset_sigpipe(libc::SIG_DFL);
    let cli = Cli::parse();
    if matches!(cli.command, Command::Enforce(_)) {
        // Enforcement must outlive its reporting: a closed stdout is an I/O error that
        // the reporter survives, never a signal that ends enforcement.
        reset_sigpipe(libc::SIG_IGN);
    }
    fingerprint::bpf::set_debug(cli.debug);
    let result = match cli.command {
        Command::Learn(args) => learn_command(args),
        Command::Merge(args) => merge_command(args),
        Command::Show(args) => show_command(args),
        Command::Enforce(args) => enforce_command(args),
        Command::Export(args) => match args.format.peer() {
            Some(format) => export_peer_command(args, format),
            None if args.from_profiles.is_some() => Err(anyhow::anyhow!(
                "--from-profiles converts profiles to another tool's policies: add --format \
                 tetragon, kubearmor or falco (profiles are merged with `fingerprint merge`)"
            )),
            None => export_command(args),
        },
        Command::Diff(args) => diff_command(args),
        Command::Check(args) => check_command(args),
        Command::Status(args) => status_command(args),
        Command::Stop(args) => stop_command(args),
        Command::Completions(args) => {
            manual::print_completions(args.shell).map(|_| ExitCode::SUCCESS)
        }
        Command::Manpages(args) => manpages_command(&args.out),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fingerprint: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn reset_sigpipe(disposition: libc::sighandler_t) {
    // SAFETY: setting a disposition (default or ignore, no handler) before any thread
    // of ours exists.
    unsafe { libc::signal(libc::SIGPIPE, disposition) };
}

fn manpages_command(dir: &std::path::Path) -> Result<ExitCode> {
    let written = manual::write_manpages(dir)?;
    println!("wrote {} man pages to {}", written.len(), dir.display());
    Ok(ExitCode::SUCCESS)
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
        engines: args.engines.settings(),
        kube_api: args.kube.settings(),
        metrics_addr: args.metrics_addr,
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
    println!(
        "{} executable(s) of processes already running when learning started were \
         recorded as seen running",
        s.running
    );
    println!(
        "content: {} file version(s) hashed ({:.1} MiB, {} ms of hashing); {} exec(s) with \
         content unknown, recorded by path only (the file was gone or had changed before \
         it could be hashed, or a script seen at sched_process_exec)",
        s.hashing.versions,
        s.hashing.bytes as f64 / (1024.0 * 1024.0),
        s.hashing.busy.as_millis(),
        s.content_unknown
    );
    if s.unnamed_cgroups > 0 {
        println!(
            "note: {} cgroups were gone before they could be named; their execs are kept \
             under cgroup-id:N",
            s.unnamed_cgroups
        );
    }
    if s.metadata_fallbacks > 0 {
        println!(
            "note: {} lookups of container metadata found nothing (are --containerd-state, \
             --docker-root, --containers-storage right?); those containers were named from their cgroup path",
            s.metadata_fallbacks
        );
    }
    if s.api_fallbacks > 0 {
        println!(
            "note: {} containers were named from their pod names because the Kubernetes \
             API failed (see the message above); their owner_source is \"pod-name\"",
            s.api_fallbacks
        );
    }
    if s.undecodable > 0 {
        println!("warning: {} events could not be decoded", s.undecodable);
    }
}

fn merge_command(args: MergeArgs) -> Result<ExitCode> {
    let databases = args
        .sources
        .iter()
        .filter(|p| storage::is_database_file(p))
        .count();
    if databases == args.sources.len() {
        merge_databases(&args)
    } else if databases == 0 {
        merge_profiles(&args)
    } else {
        anyhow::bail!(
            "merge takes either databases or profiles, not both: merge the databases first, \
             then export"
        )
    }
}

fn merge_databases(args: &MergeArgs) -> Result<ExitCode> {
    for (source, report) in storage::merge_into(&args.into, &args.sources)? {
        println!(
            "{}: {} sessions added, {} already present",
            source.display(),
            report.sessions_added,
            report.sessions_already_present
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn merge_profiles(args: &MergeArgs) -> Result<ExitCode> {
    let sets = args
        .sources
        .iter()
        .map(|p| ProfileSet::load(p).with_context(|| format!("loading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let merged = ProfileSet::merge(&sets)?;
    let report = merged.write_dir(&args.into)?;
    println!(
        "{} profiles merged into {}: {} written, {} unchanged",
        merged.len(),
        args.into.display(),
        report.written.len(),
        report.unchanged.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn export_command(args: ExportArgs) -> Result<ExitCode> {
    let mut learned = Database::open_read_only(&args.db)?.learned_workloads()?;
    if let Some(window) = args.stable_for {
        let (stable, learning) = convergence::split_stable(&learned, learn::now_ms(), window);
        for (name, quiet) in &learning {
            eprintln!(
                "note: workload `{}` not exported: still learning (a new executable {} ago, \
                 less than --stable-for {})",
                profile::escape_bytes(name.as_bytes()),
                humantime::format_duration(round_to_seconds(*quiet)),
                humantime::format_duration(window)
            );
        }
        learned = stable;
    }
    let options = ExportOptions {
        mode: args.mode,
        with_stats: args.with_stats,
        include_host: args.include_host,
    };
    let (exported, report) = ProfileSet::from_learned_with(&learned, options);
    if !report.is_empty() {
        eprint!("{report}");
    }
    eprint!("{}", report.without_content_notes());
    let out = args.out.unwrap_or_else(|| PathBuf::from("profiles"));
    let existing = match out.is_dir() && !args.replace {
        true => ProfileSet::load(&out)?,
        false => ProfileSet::new(),
    };
    // Keep what reviewers set by hand (modes, patterns): merge, then write.
    let set = ProfileSet::merge(&[existing, exported])?;
    let written = set.write_dir(&out)?;
    println!(
        "exported {} workloads to {}: {} files written, {} unchanged",
        set.len(),
        out.display(),
        written.written.len(),
        written.unchanged.len()
    );
    print_not_exported(&written);
    Ok(ExitCode::SUCCESS)
}

fn print_not_exported(written: &WriteReport) {
    for stale in &written.not_exported {
        eprintln!(
            "note: {} is not part of this export (remove it if the workload is gone)",
            stale.display()
        );
    }
}

/// `export --format tetragon|kubearmor|falco`: the profiles (learned, or read with
/// --from-profiles) as another tool's policies, written all or nothing.
fn export_peer_command(args: ExportArgs, format: PeerFormat) -> Result<ExitCode> {
    if args.with_stats || args.replace {
        anyhow::bail!(
            "--with-stats and --replace apply to profiles only; --format {} writes whole \
             policies from them (remove the flag)",
            format.name()
        );
    }
    let set = match &args.from_profiles {
        Some(path) => {
            ProfileSet::load(path).with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            let learned = Database::open_read_only(&args.db)?.learned_workloads()?;
            let options = ExportOptions {
                mode: args.mode,
                with_stats: false,
                include_host: args.include_host,
            };
            let (set, report) = ProfileSet::from_learned_with(&learned, options);
            eprint!("{report}");
            set
        }
    };
    let api = ApiReader::open(&args.kube.settings());
    let labels = Labels::from_opened(&api);
    let export = peer_formats::export(&set, format, labels)
        .with_context(|| format!("rendering the {} policies", format.name()))?;
    eprint!("{export}");
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-policies", format.name())));
    let written = write_file_set(&out, &export.files, &format.file_suffix())?;
    println!(
        "exported {} {} policies (of {} profiles) to {}: {} files written, {} unchanged",
        export.files.len(),
        format.name(),
        set.len(),
        out.display(),
        written.written.len(),
        written.unchanged.len()
    );
    print_not_exported(&written);
    Ok(ExitCode::SUCCESS)
}

/// Whole seconds: enough for a person, and no "123ms 456us" noise.
fn round_to_seconds(duration: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(duration.as_secs())
}

fn diff_command(args: DiffArgs) -> Result<ExitCode> {
    let (a, a_report) = diff::load_side_reported(&args.a)?;
    let (b, b_report) = diff::load_side_reported(&args.b)?;
    for (side, set) in [(&args.a, &a), (&args.b, &b)] {
        if let Some(note) = set.content_coverage().path_only_note() {
            eprintln!("fingerprint: note: {}: {note}", side.display());
        }
    }
    for report in [a_report, b_report] {
        if !report.is_empty() {
            eprint!("{report}");
        }
    }
    let result = diff::diff(&a, &b);
    match args.output {
        OutputFormat::Json => println!("{:#}", result.to_json()),
        OutputFormat::Text => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::IsTerminal::is_terminal(&std::io::stdout())
                        && std::env::var_os("NO_COLOR").is_none()
                }
            };
            print!("{}", result.render_text(color));
        }
    }
    let failed = match args.fail_on {
        FailOn::Any => !result.is_empty(),
        FailOn::Added => result.has_added(),
    };
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn show_command(args: ShowArgs) -> Result<ExitCode> {
    let db = Database::open_read_only(&args.db)?;
    let sessions = db.sessions()?;
    let workloads = db.learned_workloads()?;
    match args.output {
        OutputFormat::Text => print!(
            "{}",
            show::render_text(&sessions, &workloads, learn::now_ms())
        ),
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
        coalesce_window: args.coalesce_window,
        db: (!args.no_db).then_some(args.db),
        lock_file: args.lock_file,
        max_cgroups: args.max_cgroups,
        allow_capacity: args.allow_capacity,
        pin_dir: (args.pin || args.detach).then_some(args.pin_dir),
        detach: args.detach,
        engines: args.engines.settings(),
        kube_api: args.kube.settings(),
        container_scopes: args.container_scopes,
        metrics_addr: args.metrics_addr,
    };
    let summary = fingerprint::enforce::run::run(&opts, &signals()?)?;
    if opts.detach {
        eprintln!(
            "fingerprint: detached; `fingerprint status` shows it, `fingerprint stop` ends it"
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_enforce_summary(&summary);
    if summary.counters.dropped > 0 {
        eprintln!(
            "fingerprint: {} violation events were DROPPED (ring buffer full): the decisions \
             were still enforced, but not all were reported",
            summary.counters.dropped
        );
    }
    if summary.unwritten.any() {
        eprintln!(
            "fingerprint: {} violation events and {} database rows could not be written ({}): \
             the decisions were still enforced, but not all were reported",
            summary.unwritten.events,
            summary.unwritten.rows,
            summary.write_error.as_deref().unwrap_or("given up earlier")
        );
    }
    if summary.counters.dropped > 0 || summary.unwritten.any() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_enforce_summary(s: &EnforceSummary) {
    eprintln!(
        "fingerprint: enforced {} profiles for {:.1}s with the {} mechanism: {} execs checked, \
         {} violations ({} reported one by one, {} as repeats, {} dropped), {} cgroups bound \
         at creation, {} reloads",
        s.profiles,
        s.elapsed.as_secs_f64(),
        s.mechanism.name(),
        s.counters.checks,
        s.counters.violations,
        s.reported,
        s.repeats,
        s.counters.dropped,
        s.counters.bound_at_mkdir,
        s.reloads
    );
    if s.counters.cgroup_moves > 0 {
        eprintln!(
            "fingerprint: {} of the violations were tasks trying to leave their workload's cgroups",
            s.counters.cgroup_moves
        );
    }
    if s.held > 0 {
        eprintln!(
            "fingerprint: {} execs were held until decided (first execs in new containers, first \
             execs of unknown file versions of pinned paths; {} killed)",
            s.held, s.held_killed
        );
    }
}

fn check_command(args: CheckArgs) -> Result<ExitCode> {
    let opts = check::CheckOptions {
        profiles: args.profile,
        db: args.db,
        since: args.since,
    };
    let report = check::run(&opts, learn::now_ms())?;
    match args.output {
        OutputFormat::Json => println!("{:#}", report.to_json()),
        OutputFormat::Text => print!("{}", report.render_text()),
    }
    Ok(match report.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// Each audit-mode profile of the pinned enforcement with its violations in `db`, or
/// why they cannot be read; `None` without --db. Never an error: what is pinned is
/// what `status` is for.
fn audit_readiness(
    state: Option<&pinned::PinnedState>,
    db: Option<&std::path::Path>,
) -> Option<Result<Vec<readiness::AuditReadiness>, String>> {
    let (state, db) = (state?, db?);
    Some(readiness::audit_profiles(&state.profiles, db).map_err(|e| format!("{e:#}")))
}

fn status_command(args: StatusArgs) -> Result<ExitCode> {
    let Some(status) = pinned::status(&args.pin_dir)? else {
        match args.output {
            OutputFormat::Json => println!("{{\"enforcing\": false}}"),
            OutputFormat::Text => println!(
                "not enforcing: nothing pinned at {}",
                args.pin_dir.display()
            ),
        }
        return Ok(ExitCode::from(1));
    };
    let audit = audit_readiness(status.state.as_ref(), args.db.as_deref());
    match args.output {
        OutputFormat::Json => println!(
            "{:#}",
            serde_json::json!({"enforcing": true, "status": status, "audit": match &audit {
                Some(Ok(profiles)) => serde_json::json!(profiles),
                Some(Err(error)) => serde_json::json!({ "error": error }),
                None => serde_json::Value::Null,
            }})
        ),
        OutputFormat::Text => {
            if let Some(state) = &status.state {
                println!(
                    "enforcing {} profiles from {} at {} ({} mechanism), since {} (pid {})",
                    state.profile_names.len(),
                    state.profiles.display(),
                    state.hook,
                    state.mechanism,
                    state.started_at,
                    state.pid
                );
            }
            println!(
                "pinned at {}: links {}; {} profiles loaded, {} cgroups bound ({} at creation)\n\
                 {} execs checked, {} violations ({} coalesced into repeat counts, {} cgroup \
                 moves), {} violation events dropped",
                args.pin_dir.display(),
                status.links.join(", "),
                status.profiles_loaded,
                status.cgroups_bound,
                status.bound_at_mkdir,
                status.checks,
                status.violations,
                status.folded,
                status.cgroup_moves,
                status.dropped
            );
            let reporting = status.state.as_ref().map(|s| &s.reporting);
            if let Some(r) = reporting.filter(|r| r.events_unwritten + r.rows_unwritten > 0) {
                println!(
                    "{} violation events and {} database rows could not be written{}",
                    r.events_unwritten,
                    r.rows_unwritten,
                    r.error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            match &audit {
                Some(Ok(profiles)) if !profiles.is_empty() => {
                    println!("profiles in audit mode (violations from the database):");
                    for profile in profiles {
                        println!("  {}", profile.render_text());
                    }
                }
                Some(Ok(_)) => println!("no profile is in audit mode"),
                Some(Err(error)) => println!("audit-mode violations unknown: {error}"),
                None => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_command(args: StopArgs) -> Result<ExitCode> {
    // unpin() removes the directory: only ever one that fingerprint pinned into.
    let dir = &args.pin_dir;
    let holds_pins = pinned::LINKS
        .iter()
        .chain(pinned::MAPS)
        .any(|name| dir.join(name).exists())
        || pinned::state_file(dir).exists();
    if dir.exists() && !holds_pins {
        println!(
            "nothing was pinned at {}: it holds no pins of fingerprint, left as it is",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if pinned::unpin(dir)? {
        println!(
            "stopped: the enforcement pinned at {} is removed",
            args.pin_dir.display()
        );
    } else {
        println!("nothing was pinned at {}", args.pin_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
