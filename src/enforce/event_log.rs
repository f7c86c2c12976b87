//! Where violation events go as JSON lines: stdout, or the --events file. Writing
//! them never ends enforcement: a line that cannot be written (a full disk) is kept
//! and retried, oldest first, and counted; the file is reopened on request (SIGHUP,
//! after logrotate moved or removed it).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Lines kept while they cannot be written (about 10 MB of typical events); past
/// this, the oldest are given up, and counted as lost.
const BACKLOG_LINES: usize = 10_000;

pub struct EventLog {
    /// None: stdout.
    path: Option<PathBuf>,
    out: Box<dyn Write>,
    /// Lines not written yet, oldest first; the first may be written in part.
    backlog: VecDeque<Vec<u8>>,
    /// Bytes of the first backlog line already written.
    written: usize,
    /// Lines given up because the backlog was full.
    lost: u64,
    /// Why the last write failed; None once a write succeeds again.
    error: Option<String>,
}

impl EventLog {
    /// Append to `path` (created if missing), else write to stdout.
    pub fn open(path: Option<&Path>) -> Result<EventLog> {
        let out: Box<dyn Write> = match path {
            None => Box::new(std::io::stdout()),
            Some(path) => Box::new(append(path)?),
        };
        Ok(EventLog {
            path: path.map(Path::to_path_buf),
            out,
            backlog: VecDeque::new(),
            written: 0,
            lost: 0,
            error: None,
        })
    }

    /// What events are written to, for messages.
    pub fn name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "stdout".into(),
        }
    }

    /// Write one line (after every line kept from before), or keep it.
    pub fn write_line(&mut self, mut line: Vec<u8>) {
        line.push(b'\n');
        if self.backlog.len() >= BACKLOG_LINES {
            // Keep the line being written, so that no line is torn.
            let oldest = if self.written > 0 { 1 } else { 0 };
            self.backlog.remove(oldest);
            self.lost += 1;
        }
        self.backlog.push_back(line);
        self.retry();
    }

    /// Write the lines kept, as far as they go.
    pub fn retry(&mut self) {
        while let Some(line) = self.backlog.front() {
            match self.out.write(&line[self.written..]) {
                Ok(0) => {
                    self.error = Some("the output accepts no more bytes".into());
                    return;
                }
                Ok(n) => {
                    self.written += n;
                    if self.written == line.len() {
                        self.backlog.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(e.to_string());
                    return;
                }
            }
        }
        match self.out.flush() {
            Ok(()) => self.error = None,
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Open the file again at its path (logrotate moved or removed it): lines from
    /// now on, and those kept, go to the file found (or created) there.
    pub fn reopen(&mut self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.out = Box::new(append(path)?);
        self.retry();
        Ok(())
    }

    /// Lines not written: kept for a retry, or given up.
    pub fn unwritten(&self) -> u64 {
        self.backlog.len() as u64 + self.lost
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

fn append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening --events {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A writer that takes at most `room` more bytes, then fails as a full disk does.
    #[derive(Clone, Default)]
    struct Disk {
        bytes: Rc<RefCell<Vec<u8>>>,
        room: Rc<RefCell<usize>>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut room = self.room.borrow_mut();
            if *room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.bytes.borrow_mut().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_on(disk: &Disk) -> EventLog {
        EventLog {
            path: None,
            out: Box::new(disk.clone()),
            backlog: VecDeque::new(),
            written: 0,
            lost: 0,
            error: None,
        }
    }

    #[test]
    fn lines_that_do_not_fit_are_kept_and_written_whole_later() {
        let disk = Disk::default();
        *disk.room.borrow_mut() = 8;
        let mut log = log_on(&disk);
        log.write_line(b"first".to_vec());
        log.write_line(b"second".to_vec());
        log.write_line(b"third".to_vec());
        assert_eq!(log.unwritten(), 2, "the second line fit in part");
        assert!(log.error().is_some_and(|e| e.contains("No space")));
        *disk.room.borrow_mut() = 100;
        log.retry();
        assert_eq!(log.unwritten(), 0);
        assert_eq!(log.error(), None);
        assert_eq!(&disk.bytes.borrow()[..], b"first\nsecond\nthird\n");
    }

    #[test]
    fn a_full_backlog_gives_up_the_oldest_whole_lines() {
        let disk = Disk::default();
        *disk.room.borrow_mut() = 3;
        let mut log = log_on(&disk);
        for i in 0..BACKLOG_LINES + 5 {
            log.write_line(format!("line {i}").into_bytes());
        }
        assert_eq!(log.unwritten(), BACKLOG_LINES as u64 + 5);
        assert_eq!(log.lost, 5);
        *disk.room.borrow_mut() = usize::MAX;
        log.retry();
        let bytes = disk.bytes.borrow();
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("line 0"), "the torn line is completed");
        assert_eq!(lines.next(), Some("line 6"), "lines 1 to 5 were given up");
        assert_eq!(log.unwritten(), 5);
    }
}
