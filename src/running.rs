//! Processes already running when `learn` starts: which files each one runs.
//!
//! The kernel's task iterator reports each process's executable, parent executable
//! and working directory, resolved by the same path routine as an exec (same bytes,
//! same flags). An interpreter running a `#!` script shows the interpreter as its
//! executable; the script is told apart from the command line, where the kernel put
//! the script's name when it ran it: `interpreter [arg] script ...`. A candidate
//! counts as the script only if it is a regular file starting with `#!` inside the
//! process's root. It is then named by the rule learning uses at sched_process_exec:
//! the name as it was typed, made absolute with the working directory, normalised.
//! (`sh script` typed by hand looks the same; the script is then recorded too, which
//! allows running it directly as well.)

use std::fs::File;
use std::io::Read;

use crate::event::{script_path, ExecEvent, KernelPath};

/// The first bytes of a script the kernel runs through its interpreter.
const SHEBANG: &[u8] = b"#!";
/// How much of a candidate is read: the kernel reads at most this much of a `#!` line.
const SHEBANG_LINE_MAX: usize = 256;

/// The files a running process runs: its executable and, for an interpreter running
/// a script, the script.
pub fn running_files(event: &ExecEvent) -> Vec<KernelPath> {
    let mut files = vec![event.exe.clone()];
    if let Some(script) = script_of(event) {
        files.push(script);
    }
    files
}

/// The script process `event.pid` interprets, if its command line names one.
fn script_of(event: &ExecEvent) -> Option<KernelPath> {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", event.pid)).ok()?;
    let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let candidate = |typed: &[u8]| {
        let filename = KernelPath {
            bytes: typed.to_vec(),
            flags: 0,
        };
        let path = script_path(&filename, &event.cwd);
        let line = (path.flags == 0)
            .then(|| shebang_line(event.pid, &path.bytes))
            .flatten()?;
        Some((path, line))
    };
    // `interpreter script ...`
    if let Some((path, _)) = argv
        .get(1)
        .filter(|a| !a.is_empty())
        .and_then(|a| candidate(a))
    {
        return Some(path);
    }
    // `interpreter arg script ...`, where `arg` is the one the `#!` line gives.
    let (path, line) = candidate(argv.get(2).filter(|a| !a.is_empty())?)?;
    let arg = line
        .splitn(2, |b| b.is_ascii_whitespace())
        .nth(1)
        .map(|rest| rest.trim_ascii());
    (arg == argv.get(1).copied()).then_some(path)
}

/// The `#!` line (after `#!`, trimmed) of the regular file at `path` inside process
/// `pid`'s root; `None` when it is not such a file.
fn shebang_line(pid: u32, path: &[u8]) -> Option<Vec<u8>> {
    let mut file = open_in_root(pid, path)?;
    if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
        return None;
    }
    let mut head = Vec::with_capacity(SHEBANG_LINE_MAX);
    (&mut file)
        .take(SHEBANG_LINE_MAX as u64)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(SHEBANG)?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    Some(line[..end].trim_ascii().to_vec())
}

/// Open `path` as process `pid` would, without blocking on a FIFO or following
/// anything out of its root.
fn open_in_root(pid: u32, path: &[u8]) -> Option<File> {
    crate::content::open_as_task(
        pid,
        path,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{path_flags, Hook};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn event_for(pid: u32, exe: &[u8], cwd: &[u8]) -> ExecEvent {
        let path = |bytes: &[u8], flags| KernelPath {
            bytes: bytes.to_vec(),
            flags,
        };
        ExecEvent {
            cgroup_id: 1,
            ktime_ns: 0,
            pid,
            ppid: 1,
            uid: 0,
            hook: Hook::Running,
            interpreted: false,
            exe: path(exe, 0),
            exe_version: None,
            parent: path(b"/bin/sh", 0),
            filename: path(b"", path_flags::ABSENT),
            cwd: path(cwd, 0),
            verdict: None,
        }
    }

    fn spawn(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(dir)
            .spawn()
            .expect("spawning")
    }

    #[test]
    fn a_script_run_by_its_interpreter_is_told_apart_from_a_plain_argument() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("wait.sh");
        let mut file = File::create(&script).unwrap();
        file.write_all(b"#!/bin/sh\nsleep 30\nexit 0\n").unwrap();
        drop(file);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("data"), b"not a script").unwrap();
        let cwd = dir.path().as_os_str().as_encoded_bytes();

        let mut by_kernel = spawn(dir.path(), &["./wait.sh"]);
        let mut with_data = spawn(dir.path(), &["/bin/sh", "-c", "sleep 30", "data"]);
        let files = running_files(&event_for(by_kernel.id(), b"/bin/dash", cwd));
        let plain = running_files(&event_for(with_data.id(), b"/bin/dash", cwd));
        for child in [&mut by_kernel, &mut with_data] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let expected = [cwd, b"/wait.sh"].concat();
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(
            (files[1].bytes.as_slice(), files[1].flags),
            (&expected[..], 0)
        );
        assert_eq!(plain.len(), 1, "an argument that is no script: {plain:?}");
    }
}
