//! A backup: a card (or any device or file) read back into a raw or compressed image with
//! its SHA-256.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use cardsmith_drives::Identity;
use cardsmith_engine::{self as engine, units, CancelToken, Target};
use serde::Serialize;

use super::{invoking_user, Error, Event, Failure, Left, Report, Run, Sink};

/// Read a card into an image file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadJob {
    /// The card, device or file to read (opened read-only; nothing on it changes).
    pub source: PathBuf,
    /// The image to create; its extension picks the format (.img, .img.zst, .img.xz,
    /// .img.gz).
    pub output: PathBuf,
    /// Only up to the end of the last partition.
    pub allocated_only: bool,
    /// Replace an existing output file (and its .sha256 and .bmap).
    pub force: bool,
    /// Read every block, not only those the card's filesystems use.
    pub all_blocks: bool,
    /// The drive the user chose, and no other (the window's choice).
    pub confirmed: Option<Identity>,
    /// Keep going past unreadable blocks (zeros in the image, listed in OUT.badblocks).
    pub rescue: bool,
}

/// What a backup did. Serialised, it is the `--json` result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadReport {
    pub source: PathBuf,
    pub output: PathBuf,
    pub format: &'static str,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
    pub sha256_file: PathBuf,
    pub source_bytes: u64,
    pub allocated_only: bool,
    pub table: Option<&'static str>,
    pub partitions_end: Option<u64>,
    /// Bytes read from the card.
    pub bytes_read: u64,
    /// Bytes not read (unused by the card's filesystems), zeros in the image.
    pub bytes_skipped: u64,
    /// The block map written beside the image.
    pub bmap_file: Option<PathBuf>,
    /// With a rescue: the ranges that could not be read (zeros in the image), with what
    /// each belongs to.
    pub unreadable: Vec<Unreadable>,
    /// With a rescue that met unreadable blocks: the ddrescue mapfile beside the image.
    pub badblocks_file: Option<PathBuf>,
}

/// Bytes a rescue could not read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreadable {
    pub start: u64,
    pub end: u64,
    /// Where it lies and what it held, in one line: "partition 2 (ext2/3/4):
    /// /home/pi/notes.txt, the inode of /etc/hosts".
    pub belongs_to: String,
    /// Where it lies: "partition 2 (ext2/3/4)", "the partition table (before the first
    /// partition)".
    pub place: String,
    /// What it held: file paths, "the folder /etc", "the journal", "free space", ...
    pub held: Vec<String>,
}

impl ReadReport {
    /// What was read, where it went, its SHA-256 and how to restore it.
    pub fn summary(&self) -> String {
        let mut summary = format!(
            "Read {} from {} into {}",
            units::bytes(self.bytes),
            self.source.display(),
            self.output.display(),
        );
        if self.format != engine::OutputFormat::Raw.name() {
            summary += &format!(
                " ({}, {} stored)",
                self.format,
                units::bytes(self.stored_bytes)
            );
        }
        if let (Some(table), Some(end)) = (self.table, self.partitions_end) {
            summary += &format!(
                ".\nOnly the partitions: the {table} partitions end at {} of {}",
                units::bytes(end),
                units::bytes(self.source_bytes)
            );
        }
        if self.bytes_skipped > 0 {
            summary += &format!(
                ".\nRead the {} its filesystems use; {} unused, zeros in the image",
                units::bytes(self.bytes_read),
                units::bytes(self.bytes_skipped)
            );
        }
        if let Some(bmap) = &self.bmap_file {
            summary += &format!(" (block map: {})", bmap.display());
        }
        if let Some(map) = &self.badblocks_file {
            let lost: u64 = self.unreadable.iter().map(|u| u.end - u.start).sum();
            summary += &format!(
                ".\nThe backup is INCOMPLETE: {} could not be read and are zeros in the image \
                 (listed in {}, a GNU ddrescue mapfile)",
                units::bytes(lost),
                map.display()
            );
            // A dying card can have thousands: the first ones here, all in --json.
            const LISTED: usize = 20;
            for u in self.unreadable.iter().take(LISTED) {
                summary += &format!("\n  bytes {}..{}: {}", u.start, u.end, u.belongs_to);
            }
            if self.unreadable.len() > LISTED {
                summary += &format!(
                    "\n  and {} more ranges (--json lists them all)",
                    self.unreadable.len() - LISTED
                );
            }
        }
        summary += &format!(
            ".\nSHA-256 of the image: {} (in {}).\nRestore it with `cardsmith write {} DEVICE`; \
             compare a card with it with `cardsmith verify {} DEVICE`.",
            self.sha256,
            self.sha256_file.display(),
            self.output.display(),
            self.output.display(),
        );
        summary
    }
}

impl ReadJob {
    /// Reads; `cancel` stops it, and no unfinished file is kept.
    pub fn run(self, cancel: &CancelToken, sink: &mut dyn Sink) -> Result<Report, Error> {
        let mut run = Run::new(sink, Left::NothingKept);
        let outcome = self.go(cancel, &mut run);
        run.end(outcome.map(|r| Report::Read(Box::new(r))))
    }

    fn go(self, cancel: &CancelToken, run: &mut Run<'_>) -> Result<ReadReport, Failure> {
        let is_device =
            std::fs::metadata(&self.source).is_ok_and(|m| m.file_type().is_block_device());
        let source = if is_device {
            let handle = cardsmith_drives::open_for_reading(&self.source, self.confirmed.as_ref())?;
            if !handle.exclusive {
                let warning = format!(
                    "{} is in use ({}); a mounted filesystem may change while it is read, so \
                     the backup may not be consistent. Unmount it first for a clean backup.",
                    self.source.display(),
                    handle.in_use.join(", ")
                );
                run.event(Event::Warning {
                    warning,
                    in_use: Some(handle.in_use.clone()),
                });
            }
            Target::reading_device(&self.source, handle.file)?
        } else {
            Target::open_for_read(&self.source)?
        };
        run.sink.watching_cancel(true);
        let options = engine::ReadOptions {
            force: self.force,
            allocated_only: self.allocated_only,
            used_only: !self.all_blocks,
            owner: invoking_user(),
            rescue: self.rescue,
        };
        let report = engine::read(&source, &self.output, &options, cancel, &mut |p| {
            run.progress(p)
        })?;
        Ok(ReadReport {
            source: self.source,
            output: self.output,
            format: report.format.name(),
            bytes: report.bytes,
            stored_bytes: report.stored,
            sha256: report.sha256,
            sha256_file: report.checksum_file,
            source_bytes: report.source_size,
            allocated_only: self.allocated_only,
            table: report.allocated.map(|(t, _)| t.name()),
            partitions_end: report.allocated.map(|(_, end)| end),
            bytes_read: report.read_bytes,
            bytes_skipped: report.bytes.saturating_sub(report.read_bytes),
            bmap_file: report.bmap_file,
            unreadable: report
                .unreadable
                .into_iter()
                .map(|(start, end, held)| Unreadable {
                    start,
                    end,
                    belongs_to: held.to_string(),
                    place: held.place,
                    held: held.what,
                })
                .collect(),
            badblocks_file: report.badblocks_file,
        })
    }
}
