//! Command-line definitions. Every flag is documented here, where it is defined; the
//! handlers in main.rs only parse and call into the library.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use fingerprint::bpf::enforce::MechanismChoice;
use fingerprint::bpf::learn::HookChoice;
use fingerprint::bpf::pinned::DEFAULT_PIN_DIR;
use fingerprint::enforce::lock::DEFAULT_LOCK_FILE;
use fingerprint::peer_formats::PeerFormat;
use fingerprint::profile::Mode;
use fingerprint::workload::kubeapi::{ApiChoice, ApiSettings, DEFAULT_CA_FILE, DEFAULT_TOKEN_FILE};
use fingerprint::workload::runtime::{ContainerNames, EngineSettings};

/// Learn which executables every workload runs, review them as profiles, lock them.
#[derive(Debug, Parser)]
#[command(name = "fingerprint", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print libbpf's whole log on stderr, with the kernel verifier's log of each BPF
    /// program loaded: its full trace if refused, its statistics if accepted (like
    /// bpftool -d). For reporting a program a kernel refuses.
    #[arg(long, short, global = true)]
    pub debug: bool,
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
    /// Merge what several nodes or replicas learned: databases, or profile sets.
    ///
    /// Databases: sessions are copied into --into with their provenance (host,
    /// kernel, source file). Profiles (files or directories): the union of each
    /// workload's executables and patterns, the stricter mode, written to the --into
    /// directory. Either way, merging is commutative and idempotent.
    ///
    /// Examples:
    ///   fingerprint merge --into fleet.db node-a.db node-b.db
    ///   fingerprint merge --into profiles/ profiles/ node-c-profiles/
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Write one reviewable JSON profile per learned workload.
    ///
    /// Profiles already in --out are merged with what was learned (hand-set modes
    /// and patterns are kept) unless --replace. Output is deterministic: the same
    /// data gives byte-identical files. Paths that cannot be allowlisted (memfd,
    /// deleted, incomplete) are reported, never written. See docs/profile-format.md.
    ///
    /// With --stable-for, only workloads whose learning has converged (nothing new
    /// for that long) are written; the others are named on stderr.
    ///
    /// Examples:
    ///   fingerprint export --db fingerprint.db --out profiles/
    ///   fingerprint export --db fleet.db --out profiles/ --stable-for 24h
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Show how two sets of profiles differ; exit 0 if they do not, 1 if they do, 2 on an error.
    ///
    /// A and B may each be a learning database, a profile file or a directory of
    /// profiles. As a CI gate, --fail-on added fails only on new executables,
    /// patterns or workloads (what a reviewer must look at).
    ///
    /// Examples:
    ///   fingerprint diff profiles/ fingerprint.db
    ///   fingerprint diff profiles/ learned.db --fail-on added -o json
    #[command(verbatim_doc_comment)]
    Diff(DiffArgs),
    /// Show what a learning database holds: sessions, workloads, executables.
    ///
    /// Per workload, over every session and merged node: when learning first saw it,
    /// when it last ran an executable it had not run before (how long ago), its execs
    /// and distinct executables. A workload quiet for long enough is ready to export
    /// (export --stable-for). Executables of processes that were already running
    /// when learning started are marked "running".
    ///
    /// Example:
    ///   fingerprint show --db fingerprint.db -o json
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
    /// Lock each workload to its profile with ONE BPF program for all workloads.
    ///
    /// Loads every profile into the maps of one program on the exec path: the cost of
    /// an exec does not grow with the number of workloads. Cgroups of profiled
    /// workloads are bound when enforcement starts and, for cgroups created later,
    /// inside mkdir (before any process can enter them). Each violation is one JSON
    /// line on stdout (or --events) and a row in the database. SIGHUP reloads the
    /// profiles in place; SIGINT/SIGTERM stop.
    ///
    /// Exit status: 0 when stopped; 1 when violation events were dropped (the
    /// decisions were enforced, not all were reported); 2 on an error.
    ///
    /// Examples:
    ///   fingerprint enforce --profile profiles/ --mode audit
    ///   fingerprint enforce --profile profiles/ --mechanism lsm --events /var/log/fingerprint.jsonl
    ///   fingerprint enforce --profile profiles/ --default deny --default-scope /kubepods
    #[command(verbatim_doc_comment)]
    Enforce(EnforceArgs),
    /// What enforcing these profiles would refuse, from what a database recorded;
    /// exit 0 if nothing, 1 if something, 2 on an error.
    ///
    /// Replays every executable the database holds (learned execs, processes seen
    /// running, and violations an enforcer wrote with --db, e.g. in audit mode)
    /// through enforcement's own decision code, run in the kernel, so patterns and
    /// everything else enforcement checks agree by construction. Nothing is
    /// attached: no exec on this node is affected. Lists per workload each
    /// executable that would be refused, how often it ran and when last.
    ///
    /// Use it before switching a profile from audit to enforce, and in CI for a
    /// profile change against a node's history (see "When is a profile ready?" in
    /// the README).
    ///
    /// Examples:
    ///   fingerprint check --profile profiles/ --db fingerprint.db
    ///   fingerprint check --profile profiles/ --db fleet.db --since 7d -o json
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
    /// Show the pinned enforcement (enforce --pin/--detach): profiles, cgroups bound,
    /// execs checked, violations. Exit 0 if enforcing, 1 if nothing is pinned.
    ///
    /// With the database enforcement writes (--db), each profile in audit mode is
    /// listed with how many violations it had and since when: a profile with none
    /// for long enough is ready to enforce (check it with `fingerprint check`).
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
    /// Remove the pinned enforcement: its programs detach and its maps are freed.
    /// A directory that holds no pins of fingerprint is left as it is.
    Stop(StopArgs),
    /// Print a completion script for a shell.
    ///
    /// Examples:
    ///   fingerprint completions bash > /usr/share/bash-completion/completions/fingerprint
    ///   fingerprint completions zsh > /usr/local/share/zsh/site-functions/_fingerprint
    ///   fingerprint completions fish > ~/.config/fish/completions/fingerprint.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// Write a man page for fingerprint and for each of its commands.
    ///
    /// The pages say what --help says (they come from the same definitions):
    /// fingerprint.1, fingerprint-learn.1, ... `make install` installs them.
    ///
    /// Example:
    ///   fingerprint manpages --out /usr/local/share/man/man1
    #[command(verbatim_doc_comment)]
    Manpages(ManpagesArgs),
}

/// What happens to workloads without a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultPolicy {
    /// Leave them alone.
    Allow,
    /// Deny every exec in them (fail closed), within --default-scope.
    Deny,
}

#[derive(Debug, clap::Args)]
pub struct EnforceArgs {
    /// A profile file or a directory of profiles (as written by `fingerprint export`).
    #[arg(long, value_name = "PATH")]
    pub profile: PathBuf,
    /// `lsm` denies the exec (EPERM); `kill` lets it happen and kills the new image
    /// before it runs (for kernels without BPF LSM); `auto` uses the LSM where the
    /// kernel allows it, else kill mode with a loud warning.
    #[arg(long, value_enum, default_value_t = MechanismChoice::Auto)]
    pub mechanism: MechanismChoice,
    /// Put every profile in this mode, whatever the files say (e.g. a dry run with
    /// `audit`). Default: each profile's own `mode`.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Workloads without a profile: left alone, or denied every exec.
    #[arg(long, value_enum, default_value_t = DefaultPolicy::Allow)]
    pub default: DefaultPolicy,
    /// With --default deny: only cgroups at or below this cgroup path fail closed.
    #[arg(long, default_value = "/", value_name = "CGROUP")]
    pub default_scope: String,
    /// Append violation events (JSON lines) to this file instead of stdout. SIGHUP
    /// reopens it (logrotate: move or remove it, then send SIGHUP; events then go to
    /// a new file at FILE). If it cannot be written (a full disk), events are kept,
    /// retried every second and counted; enforcement goes on. Each line carries
    /// `schema_version`, and the Kubernetes facts known (namespace, pod, container,
    /// owner; the node from $FINGERPRINT_NODE_NAME): see docs/events.md.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Coalesce repeated violations in the kernel: the first of a kind (one cgroup
    /// running one version of one file, against one profile, with one outcome) is
    /// sent at once; the same violation again within this long after it is only
    /// counted, and the count is reported every second as one line with `repeats`
    /// (a flood costs one event per distinct exec). 0s sends every violation. Held
    /// execs are never coalesced.
    #[arg(long, default_value = "10s", value_parser = parse_window, value_name = "DURATION")]
    pub coalesce_window: Duration,
    /// Database to record violations in.
    #[arg(long, default_value = "fingerprint.db", value_name = "PATH")]
    pub db: PathBuf,
    /// Do not record violations in a database.
    #[arg(long)]
    pub no_db: bool,
    /// Most cgroups that can be bound at once (memory is used only for those bound).
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub max_cgroups: u32,
    /// Allowlist entries the map holds. Default: the profiles' entries plus a quarter
    /// (at least 1024) for reloads.
    #[arg(long, value_name = "N")]
    pub allow_capacity: Option<u32>,
    /// Pin the programs and maps under bpffs (--pin-dir): enforcement survives this
    /// process exiting or crashing, until `fingerprint stop`. If an enforcement is
    /// pinned there already, take it over with no gap: attach first, then replace
    /// its pins, and report the events it left unread (how a restarted pod resumes).
    /// An enforcer still running there is asked to hand over (SIGTERM) first; its
    /// pinned programs enforce until this one takes over.
    #[arg(long)]
    pub pin: bool,
    /// Pin (as --pin), then exit: enforcement runs on in the kernel. Violations are
    /// counted (see `fingerprint status`) but not reported while nobody runs; those
    /// an enforcement taken over left unread are reported before this exits. With
    /// nobody to decide held execs, entries pinned to content are checked by path
    /// only, and in kill mode a `#!` script is judged by its interpreter only.
    #[arg(long)]
    pub detach: bool,
    /// Where --pin and --detach pin.
    #[arg(long, default_value = DEFAULT_PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,
    /// Without --pin: the file locked while this enforcer runs. A second enforcer on
    /// the same lock refuses to start (two would both act on every exec). With --pin
    /// the pin directory is the lock, and a new enforcer takes over from the one there.
    #[arg(long, default_value = DEFAULT_LOCK_FILE, value_name = "FILE",
          conflicts_with_all = ["pin", "detach"])]
    pub lock_file: PathBuf,
    #[command(flatten)]
    pub engines: EngineArgs,
    #[command(flatten)]
    pub kube: KubeApiArgs,
    /// Cgroups where new containers start (e.g. /kubepods.slice); repeatable. A new
    /// cgroup below one is held unclassified: its first exec is stopped until the
    /// container is named from its runtime metadata and checked against its profile,
    /// so replicas started after enforcement began are covered from their first exec.
    /// A scope given that does not exist yet is held from when it is made. Default:
    /// those of /kubepods, /kubepods.slice, /docker, /libpod_parent, /machine.slice
    /// that exist (Docker's systemd driver needs /system.slice given).
    #[arg(long = "container-scope", value_name = "CGROUP")]
    pub container_scopes: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health probe at
    /// /healthz (200 while the program is attached and its events are being read,
    /// else 503), e.g. 0.0.0.0:9101; port 0 picks a free port (the address is said
    /// on stderr). See docs/metrics.md.
    #[arg(long, value_name = "ADDR", conflicts_with = "detach")]
    pub metrics_addr: Option<String>,
}

/// Where the owners of Kubernetes pods come from (learn and enforce), and the pod
/// labels of workloads (export --format).
#[derive(Debug, clap::Args)]
pub struct KubeApiArgs {
    /// Kubernetes API server to name pod owners from: the pod's controller
    /// (ownerReferences), followed from ReplicaSet to Deployment and from Job to
    /// CronJob. `auto`: the cluster's API when running in a pod (KUBERNETES_SERVICE_HOST
    /// and _PORT, the service account's token and ca.crt), else pod names; `off`:
    /// pod names only (the controllers' naming conventions); or an https:// URL, with
    /// --kube-token-file and --kube-ca-file. If the API fails, pods are named from their
    /// names instead (said once on stderr, never fatal); each workload records which
    /// was used as owner_source ("kubernetes-api" or "pod-name"). For export --format:
    /// where the workloads' label selectors are read (a placeholder without it).
    #[arg(long, default_value = "auto", value_name = "auto|off|URL")]
    pub kube_api: ApiChoice,
    /// File holding the bearer token for --kube-api (re-read at each request, as
    /// projected service account tokens rotate).
    #[arg(long, default_value = DEFAULT_TOKEN_FILE, value_name = "FILE")]
    pub kube_token_file: PathBuf,
    /// PEM bundle of the CA(s) that signed the API server's certificate.
    #[arg(long, default_value = DEFAULT_CA_FILE, value_name = "FILE")]
    pub kube_ca_file: PathBuf,
}

impl KubeApiArgs {
    pub fn settings(self) -> ApiSettings {
        ApiSettings {
            api: self.kube_api,
            token_file: self.kube_token_file,
            ca_file: self.kube_ca_file,
        }
    }
}

/// Where container engines keep the metadata containers are named from, and how
/// (learn and enforce; give both the same). All read-only, no socket: when nothing
/// is found, a container is named from its cgroup path (docs/containers.md).
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// containerd state directory (its OCI bundles' labels); repeatable.
    /// Default: $FINGERPRINT_CONTAINERD_STATE (':'-separated), else /run/containerd.
    #[arg(long = "containerd-state", value_name = "DIR")]
    pub containerd_state: Vec<PathBuf>,
    /// dockerd's data root (its containers/<id>/config.v2.json); repeatable.
    /// Default: $FINGERPRINT_DOCKER_ROOT (':'-separated), else /var/lib/docker.
    #[arg(long = "docker-root", value_name = "DIR")]
    pub docker_roots: Vec<PathBuf>,
    /// containers/storage root of Podman or CRI-O (graph root and run root);
    /// repeatable. Default: $FINGERPRINT_CONTAINERS_STORAGE (':'-separated), else
    /// /var/lib/containers/storage and /run/containers/storage.
    #[arg(long = "containers-storage", value_name = "DIR")]
    pub storage_roots: Vec<PathBuf>,
    /// How Docker and Podman containers outside Kubernetes are named: by their name
    /// (docker/web) or by their image's repository (docker/image/nginx, one profile
    /// for every container of the image).
    #[arg(long = "container-names", value_enum, default_value_t = ContainerNames::Name)]
    pub container_names: ContainerNames,
}

impl EngineArgs {
    pub fn settings(self) -> EngineSettings {
        EngineSettings {
            containerd_state: self.containerd_state,
            docker_roots: self.docker_roots,
            storage_roots: self.storage_roots,
            names: self.container_names,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Profiles to check: a directory of profiles, or one profile file.
    #[arg(long, value_name = "PATH")]
    pub profile: PathBuf,
    /// Database whose recorded execs are replayed: what `learn` wrote, what `enforce
    /// --db` wrote, or a merge of several nodes' databases.
    #[arg(long, default_value = "fingerprint.db", value_name = "PATH")]
    pub db: PathBuf,
    /// Replay only what ran this recently (e.g. 24h, 7d); default: everything.
    #[arg(long, value_parser = parse_period, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Where the enforcement is pinned.
    #[arg(long, default_value = DEFAULT_PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,
    /// The database enforcement writes violations to (enforce --db): each profile in
    /// audit mode is shown with its violations and since when. Read only.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Where the enforcement is pinned.
    #[arg(long, default_value = DEFAULT_PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,
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
    /// Print nothing unless something is wrong: no start-up lines, no live display,
    /// no summary (errors and dropped events are still reported).
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub engines: EngineArgs,
    #[command(flatten)]
    pub kube: KubeApiArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health probe at
    /// /healthz (200 while the program is attached and its events are being read,
    /// else 503), e.g. 0.0.0.0:9101; port 0 picks a free port (the address is said
    /// on stderr). See docs/metrics.md.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Database (created if missing) or profile directory to merge into.
    #[arg(long, value_name = "PATH")]
    pub into: PathBuf,
    /// Databases, or profile files and directories, to merge from (not mixed).
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<PathBuf>,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// fingerprint's own JSON profiles (docs/profile-format.md).
    Profiles,
    /// A Tetragon TracingPolicyNamespaced per Kubernetes workload.
    Tetragon,
    /// A KubeArmorPolicy per Kubernetes workload.
    Kubearmor,
    /// A Falco rules file (a list and a rule) per Kubernetes workload.
    Falco,
}

impl ExportFormat {
    /// The other tool's format, or None for fingerprint's profiles.
    pub fn peer(self) -> Option<PeerFormat> {
        match self {
            ExportFormat::Profiles => None,
            ExportFormat::Tetragon => Some(PeerFormat::Tetragon),
            ExportFormat::Kubearmor => Some(PeerFormat::KubeArmor),
            ExportFormat::Falco => Some(PeerFormat::Falco),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Learning database to export.
    #[arg(long, default_value = "fingerprint.db", value_name = "PATH")]
    pub db: PathBuf,
    /// Directory to write (created if missing). Default: profiles, or for another
    /// tool's format <format>-policies (e.g. tetragon-policies).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// What to write: fingerprint's profiles, or per Kubernetes workload the equivalent
    /// policy of Tetragon, KubeArmor or Falco (YAML, one file each). What those cannot
    /// express (patterns, content digests, paths that are not UTF-8, workloads outside
    /// Kubernetes) is said on stderr per workload; see docs/export-formats.md. Pod
    /// labels come from the Kubernetes API (--kube-api), else a placeholder label.
    #[arg(long, value_enum, default_value_t = ExportFormat::Profiles)]
    pub format: ExportFormat,
    /// With --format tetragon|kubearmor|falco: convert these profiles (a file or a
    /// directory, e.g. the reviewed ones) instead of what the database learned.
    #[arg(long, value_name = "PATH")]
    pub from_profiles: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeApiArgs,
    /// Mode of newly created profiles. Review before choosing enforce.
    #[arg(long, value_enum, default_value_t = Mode::Audit)]
    pub mode: Mode,
    /// Also write counts and first/last-seen times (a separate "stats" object).
    #[arg(long)]
    pub with_stats: bool,
    /// Overwrite existing profiles instead of merging into them.
    #[arg(long)]
    pub replace: bool,
    /// Also export the root cgroup `/` and interactive login sessions
    /// (`session-N.scope`), which are left out by default: the root's profile would
    /// lock whatever an administrator runs there, and a session's name changes at
    /// every login. Each one left out is named on stderr.
    #[arg(long)]
    pub include_host: bool,
    /// Write only workloads that ran nothing new for this long (e.g. 24h): their
    /// learning has converged. Each workload still finding new executables is named
    /// on stderr and left out. `fingerprint show` prints when each last found one.
    #[arg(long, value_parser = parse_period, value_name = "DURATION")]
    pub stable_for: Option<Duration>,
}

/// What makes `diff` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any difference.
    Any,
    /// Only additions: new executables, patterns or workloads.
    Added,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The reference: database, profile file or directory (e.g. reviewed profiles/).
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The candidate: database, profile file or directory (e.g. a new learn).
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// What makes the exit status 1.
    #[arg(long, value_enum, default_value_t = FailOn::Any)]
    pub fail_on: FailOn,
    /// Colour the text output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// Durations like `500ms`, `30s`, `10m`, `2h`, `7d`, or a plain number of seconds; longer
/// than zero (a zero-length session would record nothing) and representable.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_positive(
        text,
        "leave --duration out to learn until Ctrl-C or SIGTERM",
    )
}

/// `--since` and `--stable-for`: a duration as `parse_duration` reads it, a limit on
/// what is taken (leaving the option out takes everything).
pub fn parse_period(text: &str) -> Result<Duration, String> {
    parse_positive(text, "leave the option out for no limit")
}

/// A duration longer than 0; `without` says what leaving the option out does.
fn parse_positive(text: &str, without: &str) -> Result<Duration, String> {
    match parse_span(text)? {
        Some(duration) if duration.is_zero() => Err(format!(
            "{:?} must be longer than 0; {without}",
            text.trim()
        )),
        Some(duration) => Ok(duration),
        None => Err(format!("{:?} is too long; {without}", text.trim())),
    }
}

/// `--coalesce-window`: a duration as `parse_duration` reads it, where 0 turns
/// coalescing off.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    parse_span(text)?.ok_or_else(|| format!("{:?} is too long; use e.g. 10s", text.trim()))
}

/// A duration with its unit; None when it is too long to represent.
fn parse_span(text: &str) -> Result<Option<Duration>, String> {
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
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::try_from_secs_f64(seconds).ok())
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
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("0").unwrap_err().contains("longer than 0"));
        assert!(parse_duration("0").unwrap_err().contains("--duration"));
        assert!(!parse_period("0").unwrap_err().contains("--duration"));
        assert!(parse_duration("99999999999999999999s")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManpagesArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}
