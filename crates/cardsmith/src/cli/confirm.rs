//! Asking a person before erasing their disk.

use std::io::{self, BufRead, IsTerminal, Write};

/// What the person must type to consent.
pub enum Consent<'a> {
    /// "y" or "yes".
    Yes,
    /// The drive's name (as `sdb` or `/dev/sdb`): asked before erasing (or otherwise
    /// changing: the second word) a system drive or a fixed disk, which "yes" out of habit
    /// must not do.
    Name(&'a str, &'a str),
}

/// Prints `question` on standard error and reads the answer from the terminal. `Err` holds
/// what to tell the person: no terminal to ask on (and `no_terminal`, why that matters), or
/// an answer that was not consent.
pub fn obtain(question: &str, consent: Consent<'_>, no_terminal: &str) -> Result<(), String> {
    if !io::stdin().is_terminal() {
        return Err(format!(
            "{question}\nNot without confirmation: {no_terminal}"
        ));
    }
    let prompt = match consent {
        Consent::Yes => "Type yes to continue: ".to_owned(),
        Consent::Name(name, verb) => format!("Type the drive's name ({name}) to {verb} it: "),
    };
    let mut stderr = io::stderr();
    let _ = write!(stderr, "{question}\n{prompt}");
    let _ = stderr.flush();
    let mut answer = String::new();
    let read = io::stdin().lock().read_line(&mut answer).is_ok();
    let given = read
        && match consent {
            Consent::Yes => is_consent(&answer),
            Consent::Name(name, _) => names(&answer, name),
        };
    if given {
        Ok(())
    } else {
        Err("cancelled: nothing was written".to_owned())
    }
}

/// The terminal settings to put back should Ctrl-C end cardsmith while a secret is typed
/// with echo off (the handler exits the process, which would leave the shell blind).
static QUIET_TERMINAL: std::sync::Mutex<Option<(i32, libc::termios)>> = std::sync::Mutex::new(None);

/// Puts the terminal's echo back if a hidden prompt switched it off; for the Ctrl-C
/// handler, right before the process ends.
pub fn restore_terminal() {
    let saved = QUIET_TERMINAL.lock().ok().and_then(|mut q| q.take());
    if let Some((fd, termios)) = saved {
        // SAFETY: restores what tcgetattr returned for the same descriptor.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &termios) };
        let _ = writeln!(io::stderr());
    }
}

/// Reads a secret from the terminal without echoing it: one line, without its line end.
/// `None` without a terminal.
pub fn read_secret(prompt: &str) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let fd = stdin.as_raw_fd();
    // SAFETY: termios calls on standard input with a zeroed struct they fill in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_termios {
        if let Ok(mut quiet) = QUIET_TERMINAL.lock() {
            *quiet = Some((fd, saved));
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut stderr = io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut line = Vec::new();
    let read = stdin.lock().read_until(b'\n', &mut line);
    if have_termios {
        restore_terminal();
    } else {
        let _ = writeln!(stderr);
    }
    read.ok()?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Some(line)
}

fn names(answer: &str, name: &str) -> bool {
    let answer = answer.trim();
    answer == name || answer.strip_prefix("/dev/") == Some(name)
}

fn is_consent(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::{is_consent, names};

    #[test]
    fn only_yes_consents() {
        assert!(is_consent("yes\n"));
        assert!(is_consent(" Y "));
        assert!(!is_consent("\n"));
        assert!(!is_consent("no"));
        assert!(!is_consent("yes please"));
    }

    #[test]
    fn only_the_drive_name_consents_to_erasing_a_system_drive() {
        assert!(names("sda\n", "sda"));
        assert!(names(" /dev/sda ", "sda"));
        assert!(!names("yes", "sda"));
        assert!(!names("sdb", "sda"));
        assert!(!names("/dev/sda1", "sda"));
    }
}
