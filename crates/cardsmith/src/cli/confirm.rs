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

fn is_consent(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::is_consent;

    #[test]
    fn only_yes_consents() {
        assert!(is_consent("yes\n"));
        assert!(is_consent(" Y "));
        assert!(!is_consent("\n"));
        assert!(!is_consent("no"));
        assert!(!is_consent("yes please"));
    }
}
