//! `make install`: the binary, completions and man pages where a system looks for them.
//! Host only: the VM suite has no `make`.

use std::process::Command;

use crate::common::*;

/// `make install-files` installs the binary, a completion script per shell that knows
/// every command, and a man page per command (made from the same definitions as --help).
#[test]
fn make_install_puts_binary_completions_and_man_pages_in_place() {
    let (_keep, tmp) = temp_dir();
    let status = Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .arg("install-files")
        .arg(format!("BIN={BIN}"))
        .arg(format!("DESTDIR={}", tmp.display()))
        .arg("PREFIX=/usr")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running make");
    assert!(status.success(), "make install-files: {status}");
    let usr = tmp.join("usr");
    assert!(usr.join("bin/fingerprint").is_file());
    let commands = [
        "learn", "merge", "export", "diff", "show", "enforce", "status", "stop",
    ];
    for script in [
        "share/bash-completion/completions/fingerprint",
        "share/zsh/site-functions/_fingerprint",
        "share/fish/vendor_completions.d/fingerprint.fish",
    ] {
        let text = std::fs::read_to_string(usr.join(script)).unwrap();
        for command in commands {
            assert!(
                text.contains(command),
                "{script} does not complete {command}"
            );
        }
        assert!(text.contains("include-host"), "{script}: export's flags");
    }
    let man = usr.join("share/man/man1");
    for command in commands {
        let page = std::fs::read_to_string(man.join(format!("fingerprint-{command}.1")))
            .unwrap_or_else(|e| panic!("man page of {command}: {e}"));
        assert!(page.contains(".SH NAME"), "{command}: {page}");
        assert!(
            page.contains(&format!("fingerprint {command}")),
            "{command}"
        );
    }
    assert!(man.join("fingerprint.1").is_file());
}
