//! Interleaved rounds: every measured configuration (an "arm": one point's exec
//! program(s), or nothing on the hook) gets one block of execs per round, in a fresh
//! random order each round. A slow minute on a shared machine then lands on every arm
//! alike, and a ratio between two arms taken within the same round cancels it.
//!
//! BPF time is sampled exec by exec: the kernel's run time and run count of the arm's
//! programs are read just before and just after each accounted exec. A sample where
//! the programs ran more often than one exec makes them run (another process exec'd
//! in between) is set aside, and the block's figure is the median of the rest, so
//! neither other processes' execs nor a program run stretched by an interrupt or a
//! preemption on a busy machine moves it.

use std::os::fd::RawFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use libbpf_rs::libbpf_sys;
use serde_json::{json, Value};

use super::support::BpfStatsSysctl;
use super::{exec_loop, run_target, BenchCgroup, Config, WARMUP_EXECS};

/// One block of one arm in one round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Block {
    /// Median wall time of the block's timed execs (kernel accounting off).
    pub median_ns: u64,
    /// Median and mean BPF run time of the accounted execs' clean samples.
    pub bpf_ns_per_exec: f64,
    pub bpf_mean_ns: f64,
    /// Accounted execs set aside because other processes' execs ran the programs too.
    pub foreign: usize,
}

/// What the rounds put on the exec hook and take off again.
pub type Hook<'a> = Box<dyn FnMut(bool) -> Result<()> + 'a>;

pub struct Arm<'a> {
    pub label: String,
    /// Attach (true) or detach (false) this arm's program(s); `None`: the baseline.
    hook: Option<Hook<'a>>,
    /// Fds of the programs whose run time is this arm's BPF time (open for as long
    /// as the arm lives), and how many of them one exec runs.
    progs: Vec<RawFd>,
    runs_per_exec: u64,
    pub blocks: Vec<Block>,
    /// Every timed exec of every round.
    pub samples: Vec<u64>,
}

impl<'a> Arm<'a> {
    pub fn baseline() -> Arm<'a> {
        Arm {
            label: "no program".into(),
            hook: None,
            progs: Vec::new(),
            runs_per_exec: 0,
            blocks: Vec::new(),
            samples: Vec::new(),
        }
    }

    pub fn hooked(label: String, hook: Hook<'a>, progs: Vec<RawFd>, runs_per_exec: u64) -> Arm<'a> {
        Arm {
            label,
            hook: Some(hook),
            progs,
            runs_per_exec,
            blocks: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// Attach, warm up, time `config.execs` execs, account `config.stats_execs()`
    /// more with `kernel.bpf_stats_enabled=1` (it adds two clock reads to every
    /// program run, which would tax the N-program design N times), detach.
    fn block(&mut self, config: &Config, target: &Path) -> Result<()> {
        if let Some(hook) = self.hook.as_mut() {
            hook(true)?;
        }
        exec_loop(target, WARMUP_EXECS)?;
        let mut wall = exec_loop(target, config.execs)?;
        wall.sort_unstable();
        let mut block = Block {
            median_ns: wall[wall.len() / 2],
            ..Block::default()
        };
        if !self.progs.is_empty() {
            let stats = BpfStatsSysctl::enable("bench-scale")?;
            let mut samples = Vec::with_capacity(config.stats_execs());
            for _ in 0..config.stats_execs() {
                let (time, runs) = prog_runs(&self.progs)?;
                run_target(target)?;
                let (time_after, runs_after) = prog_runs(&self.progs)?;
                if runs_after - runs == self.runs_per_exec {
                    samples.push((time_after - time) as f64);
                }
            }
            drop(stats);
            // No clean sample (NaN) leaves this round out of the arm's figures.
            block.foreign = config.stats_execs() - samples.len();
            block.bpf_ns_per_exec = match samples.len() {
                0 => f64::NAN,
                _ => Summary::of(samples.iter().copied()).median,
            };
            block.bpf_mean_ns = samples.iter().sum::<f64>() / samples.len() as f64;
        }
        if let Some(hook) = self.hook.as_mut() {
            hook(false)?;
        }
        self.samples.extend(wall);
        self.blocks.push(block);
        Ok(())
    }
}

/// What the kernel says of one program: its name, run time and run count.
pub struct ProgInfo {
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

pub fn prog_info(fd: RawFd) -> Result<ProgInfo> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `fd` is a program fd its owner keeps open; `info` is a writable
    // bpf_prog_info of `len` bytes, which is all the kernel writes.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    if ret != 0 {
        bail!(
            "reading a program's information: {}",
            std::io::Error::from_raw_os_error(-ret)
        );
    }
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(ProgInfo {
        name: String::from_utf8_lossy(&name).into_owned(),
        run_time_ns: info.run_time_ns,
        run_cnt: info.run_cnt,
    })
}

/// Summed run time and run count of the programs behind `fds`.
pub fn prog_runs(fds: &[RawFd]) -> Result<(u64, u64)> {
    let mut total = (0, 0);
    for &fd in fds {
        let info = prog_info(fd)?;
        total.0 += info.run_time_ns;
        total.1 += info.run_cnt;
    }
    Ok(total)
}

/// `rounds` rounds over `arms`, inside the measured cgroup.
pub fn interleave(
    arms: &mut [Arm<'_>],
    rounds: usize,
    config: &Config,
    cgroup: &BenchCgroup,
    target: &Path,
) -> Result<()> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut rng = XorShift(seed | 1);
    let mut order: Vec<usize> = (0..arms.len()).collect();
    let inside = cgroup.enter()?;
    for round in 0..rounds {
        rng.shuffle(&mut order);
        for &i in &order {
            arms[i].block(config, target)?;
        }
        let line: Vec<String> = arms
            .iter()
            .filter_map(|arm| {
                let last = arm.blocks.last()?;
                Some(if arm.progs.is_empty() {
                    format!("{} {:.0} us", arm.label, last.median_ns as f64 / 1e3)
                } else {
                    format!(
                        "{} {:.0} us, BPF {:.0} ns",
                        arm.label,
                        last.median_ns as f64 / 1e3,
                        last.bpf_ns_per_exec
                    )
                })
            })
            .collect();
        eprintln!("  round {}/{rounds}: {}", round + 1, line.join("; "));
    }
    drop(inside);
    Ok(())
}

/// xorshift64: the shuffle only has to differ from round to round.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Median, quartiles, extremes and a distribution-free 95% confidence interval of the
/// median of per-round values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub rounds: usize,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    pub min: f64,
    pub max: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    /// The interval's actual coverage (order statistics give discrete levels).
    pub ci_level: f64,
}

impl Summary {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let quantile = |q: f64| {
            let at = (n - 1) as f64 * q;
            let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
        };
        // [x(k), x(n+1-k)] holds the median with probability 1 - 2 P(B <= k-1),
        // B ~ Binomial(n, 1/2): the largest k that keeps that at 95% or more.
        let (mut k, mut level) = (0, 1.0);
        let mut cdf = 0.0; // P(B <= j - 1)
        let mut pmf = 0.5f64.powi(n as i32); // P(B = j)
        for j in 1..=n / 2 {
            cdf += pmf;
            pmf *= (n - (j - 1)) as f64 / j as f64;
            if 1.0 - 2.0 * cdf < 0.95 {
                break;
            }
            (k, level) = (j, 1.0 - 2.0 * cdf);
        }
        if k == 0 {
            // Too few rounds for 95%: the widest interval there is, at its own level.
            (k, level) = (1, 1.0 - 2.0 * 0.5f64.powi(n as i32));
        }
        let (ci_lo, ci_hi) = (v[k - 1], v[n - k]);
        Summary {
            rounds: n,
            median: quantile(0.5),
            q1: quantile(0.25),
            q3: quantile(0.75),
            min: v[0],
            max: v[n - 1],
            ci_lo,
            ci_hi,
            ci_level: level,
        }
    }

    pub fn to_json(self) -> Value {
        json!({"rounds": self.rounds, "median": self.median, "q1": self.q1, "q3": self.q3,
               "min": self.min, "max": self.max, "ci_lo": self.ci_lo, "ci_hi": self.ci_hi,
               "ci_level": self.ci_level})
    }
}
