//! cardsmith writes OS images to SD cards and USB drives, verifies them, and hashes them.
//!
//! This binary is a thin face over `cardsmith-engine`: `cli` turns arguments into engine
//! calls and engine progress into terminal output. It holds no imaging logic of its own.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
