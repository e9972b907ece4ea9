//! cardsmith writes OS images to SD cards and USB drives, verifies them, reads them back,
//! and sets up a Raspberry Pi's first boot.
//!
//! This binary is two faces over the crates that do the work, joined by `job`: typed
//! write, read and erase jobs that report typed events to a sink. `cli` turns arguments
//! into jobs (and other calls) and events into terminal output; `gui` is the wizard, which
//! turns the user's choices into the same jobs and runs them on a worker thread. Neither
//! face holds imaging logic of its own.

rust_i18n::i18n!("../../locales", fallback = "en");

mod cli;
mod gui;
mod job;
#[cfg(test)]
mod testing;

fn main() -> std::process::ExitCode {
    if std::env::args_os().len() > 1 {
        return cli::run();
    }
    if !gui::has_display() {
        eprintln!("No display: the wizard needs a desktop. The command line works anywhere:\n");
        cli::print_help();
        return std::process::ExitCode::SUCCESS;
    }
    match gui::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardsmith: the window could not open: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
