//! `cardsmith drives`: the drives an image can be written to, and with `--all` every other
//! drive with the reason it is not offered.

use std::fmt::Write as _;

use cardsmith_drives::{Drive, Snapshot, Volume};
use clap::Args;
use serde::Serialize;

use super::Failure;
use crate::job::list;

/// Version of the `--json` document; bumped only when a field changes meaning or goes away.
pub const SCHEMA: u32 = 1;

/// What `cardsmith drives --json` prints.
#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    drives: Vec<&'a Drive>,
}

#[derive(Args)]
pub struct DrivesArgs {
    /// Also list fixed, system, virtual and read-only drives, each with why it is not offered
    #[arg(long)]
    all: bool,
    /// Print the list as one JSON document (schema in the README)
    #[arg(long)]
    json: bool,
}

pub fn run(args: DrivesArgs) -> Result<(), Failure> {
    let snapshot = Snapshot::capture()?;
    let shown: Vec<&Drive> = snapshot
        .drives()
        .iter()
        .filter(|d| args.all || d.offered)
        .collect();
    if args.json {
        let doc = Document {
            schema: SCHEMA,
            drives: shown,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("drives serialize")
        );
        return Ok(());
    }
    let mut out = String::new();
    for drive in &shown {
        describe(&mut out, drive);
    }
    let hidden = snapshot.drives().len() - shown.len();
    if shown.is_empty() {
        out += "No removable drive found: insert an SD card or a USB drive.\n";
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{hidden} more drive{} not offered; `cardsmith drives --all` lists {} and why.",
            if hidden == 1 { " is" } else { "s are" },
            if hidden == 1 { "it" } else { "them" },
        );
    }
    print!("{out}");
    Ok(())
}

/// A drive in a few lines: what it is, then its partitions, then why it is not offered.
pub fn describe(out: &mut String, drive: &Drive) {
    let _ = write!(
        out,
        "{}  {}  {}  {}",
        drive.path.display(),
        drive.size_human,
        drive.bus,
        drive.description()
    );
    if let Some(serial) = &drive.serial {
        let _ = write!(out, "  serial {serial}");
    }
    if drive.read_only {
        out.push_str("  read-only");
    }
    out.push('\n');
    if let Some(volume) = &drive.filesystem {
        volume_line(out, "(whole drive)", None, volume);
    }
    for part in &drive.partitions {
        volume_line(out, &part.name, Some(part.size), &part.volume);
    }
    for reason in &drive.not_offered {
        let _ = writeln!(out, "    not offered: {reason}");
    }
    for warning in &drive.warnings {
        let _ = writeln!(out, "    warning: {warning}");
    }
}

fn volume_line(out: &mut String, name: &str, size: Option<u64>, volume: &Volume) {
    let _ = write!(out, "    {name}");
    if let Some(size) = size {
        let _ = write!(out, "  {}", cardsmith_drives::human_size(size));
    }
    let _ = write!(out, "  {}", volume.fs.as_deref().unwrap_or("unknown"));
    if let Some(label) = &volume.label {
        let _ = write!(out, "  \"{label}\"");
    }
    if !volume.mountpoints.is_empty() {
        let _ = write!(out, "  mounted at {}", list(&volume.mountpoints));
    }
    if !volume.used_by.is_empty() {
        let _ = write!(out, "  used by {}", volume.used_by.join(", "));
    }
    out.push('\n');
}
