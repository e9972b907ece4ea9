//! cardsmith writes OS images to SD cards and USB drives, verifies them, reads them back,
//! and sets up a Raspberry Pi's first boot.
//!
//! This binary is a thin face over the crates that do the work: `cli` turns arguments into
//! their calls and their progress into terminal output; `gui` is the wizard, which runs the
//! same `cli` verbs on a worker thread. It holds no imaging logic of its own.

rust_i18n::i18n!("../../locales", fallback = "en");

mod cli;
mod gui;
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
