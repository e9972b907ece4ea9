//! An X server of the test's own (Xvfb), for the wizard's window.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// A process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Xvfb on a display it picked; stopped when dropped.
pub struct Xvfb {
    /// `:N`, for DISPLAY.
    pub name: String,
    _server: Running,
    log: tempfile::NamedTempFile,
}

impl Xvfb {
    /// Xvfb picks a free display itself and writes its number once it accepts clients
    /// (-displayfd), so neither a stale socket nor a slow start can race the test. It never
    /// resets (-noreset): by default it resets whenever its last client leaves, and a
    /// window opening while a screenshot (xwd) leaves failed with XOpenDisplayFailed
    /// (10 of 300 connections failed so here; none with -noreset).
    pub fn start(screen: &str) -> Xvfb {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                screen,
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("Xvfb is needed (the test command installs xvfb)");
        let mut number = String::new();
        std::io::BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut number)
            .unwrap();
        let server = Running(xvfb);
        assert!(
            !number.trim().is_empty(),
            "Xvfb did not start (it wrote no display number)"
        );
        Xvfb {
            name: format!(":{}", number.trim()),
            _server: server,
            log,
        }
    }

    /// What the server said on its standard error, for a failing test's message.
    pub fn said(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}
