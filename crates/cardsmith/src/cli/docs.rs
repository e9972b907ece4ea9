//! `cardsmith completions` and `cardsmith man`: the shell completion scripts and manual
//! pages, generated from the same clap definition the command line parses with
//! (clap_complete, clap_mangen), so they never disagree with it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use clap_complete::Shell;

use super::Stopped;
use crate::job::Failure;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write cardsmith.1 and a page for each verb (cardsmith-write.1, cardsmith-os-list.1,
    /// …) into DIR instead of printing cardsmith.1
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for the shell asked for.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<(), Stopped> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "cardsmith", &mut out);
    out.flush()
        .map_err(|e| Failure::Refused(format!("standard output: {e}")))?;
    Ok(())
}

/// Prints cardsmith.1, or writes every page into the folder asked for.
pub fn man(args: ManArgs, command: clap::Command) -> Result<(), Stopped> {
    let failed = |what: String| Failure::Refused(what);
    let command = command.version(env!("CARGO_PKG_VERSION"));
    let Some(dir) = args.dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(command)
            .render(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| failed(format!("standard output: {e}")))?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let mut pages = Vec::new();
    pages_of(command, "cardsmith", &mut pages);
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut text)
            .map_err(|e| failed(format!("{name}: {e}")))?;
        std::fs::write(&path, text).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// `command` and every verb under it, each named as its page is (`cardsmith-os-list`),
/// its synopsis as it is typed (`cardsmith os list`).
fn pages_of(command: clap::Command, typed: &str, pages: &mut Vec<(String, clap::Command)>) {
    let name = typed.replace(' ', "-");
    let command = command.name(name.clone()).bin_name(typed.to_owned());
    let verbs: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|verb| verb.get_name() != "help")
        .cloned()
        .collect();
    pages.push((name, command));
    for verb in verbs {
        let typed = format!("{typed} {}", verb.get_name());
        pages_of(verb, &typed, pages);
    }
}
