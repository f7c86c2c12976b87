//! Shell completions and man pages, generated from the command-line definitions in
//! `cli.rs`, so they never say something `--help` does not.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Print the completion script for `shell` on stdout.
pub fn print_completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "fingerprint", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")
}

/// Write `fingerprint.1` and `fingerprint-<command>.1` for every command into `dir`;
/// returns the files written. Each page is written beside its name, then renamed.
pub fn write_manpages(dir: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let top = Cli::command();
    let mut pages = vec![("fingerprint".to_string(), top.clone())];
    for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("fingerprint-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("fingerprint {}", sub.get_name()));
        pages.push((name, page));
    }
    let mut written = Vec::new();
    for (name, command) in pages {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .with_context(|| format!("rendering the man page of {name}"))?;
        let file = format!("{name}.1");
        let temp = dir.join(format!(".{file}.tmp"));
        fs::write(&temp, &page).with_context(|| format!("writing {}", temp.display()))?;
        fs::rename(&temp, dir.join(&file))
            .with_context(|| format!("renaming {} into place", temp.display()))?;
        written.push(file);
    }
    Ok(written)
}
