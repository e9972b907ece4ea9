//! Asking a person before erasing their disk.

use std::io::{self, BufRead, Write};

/// Prints `question` on standard error and reads an answer from the terminal. Only "y" or
/// "yes" counts as consent.
pub fn ask(question: &str) -> bool {
    let mut stderr = io::stderr();
    let _ = write!(stderr, "{question}\nType yes to continue: ");
    let _ = stderr.flush();
    let mut answer = String::new();
    if io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    is_consent(&answer)
}

/// Prints `question` and asks for the drive's name (as `sdb` or `/dev/sdb`): the consent
/// asked before erasing a system drive, which "yes" out of habit must not give.
pub fn ask_name(question: &str, name: &str) -> bool {
    let mut stderr = io::stderr();
    let _ = write!(
        stderr,
        "{question}\nType the drive's name ({name}) to erase it: "
    );
    let _ = stderr.flush();
    let mut answer = String::new();
    if io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    names(&answer, name)
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
