//! A backup: a card (or any device or file) read back into a raw or compressed image with
//! its SHA-256.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use cardsmith_drives::Identity;
use cardsmith_engine::{self as engine, units, CancelToken, Target};
use serde::Serialize;

use super::shrink::{shrunk_backup, Shrink, ShrinkReport};
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
    /// Shrink the backup's last ext2/3/4 partition to fit smaller cards.
    pub shrink: Option<Shrink>,
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
    /// With `--shrink`: what was cut and what grows it back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shrink: Option<ShrinkReport>,
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
        if let Some(shrink) = &self.shrink {
            summary += &format!(".\n{}", shrink.summary());
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

impl ReadReport {
    /// The report of the engine's read of `source` into `output`.
    fn of(
        source: PathBuf,
        output: PathBuf,
        allocated_only: bool,
        report: engine::ReadReport,
        shrink: Option<ShrinkReport>,
    ) -> ReadReport {
        ReadReport {
            source,
            output,
            format: report.format.name(),
            bytes: report.bytes,
            stored_bytes: report.stored,
            sha256: report.sha256,
            sha256_file: report.checksum_file,
            source_bytes: report.source_size,
            allocated_only,
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
            shrink,
        }
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
        let (report, shrunk) = match &self.shrink {
            Some(how) => {
                let whose = format!("the card {}", self.source.display());
                let (report, shrunk) =
                    shrunk_backup(&source, &self.output, self.force, how, &whose, cancel, run)?;
                (report, Some(shrunk))
            }
            None => {
                let report = engine::read(&source, &self.output, &options, cancel, &mut |p| {
                    run.progress(p)
                })?;
                (report, None)
            }
        };
        Ok(ReadReport::of(
            self.source,
            self.output,
            self.allocated_only || shrunk.is_some(),
            report,
            shrunk,
        ))
    }
}

/// Shrink an existing image file (raw or compressed): [`ReadJob`] with `--shrink` for a
/// file already made.
#[derive(Debug, Clone, PartialEq)]
pub struct ShrinkJob {
    /// The image to shrink (not changed unless it is also the output).
    pub image: PathBuf,
    /// Where the shrunk image goes; its extension picks the format. `None`: replaces
    /// `image` (and its .sha256 and .bmap) once the shrunk one is complete.
    pub output: Option<PathBuf>,
    /// Replace an existing output.
    pub force: bool,
    pub shrink: Shrink,
}

impl ShrinkJob {
    /// Shrinks; `cancel` stops it, and no unfinished file is kept.
    pub fn run(self, cancel: &CancelToken, sink: &mut dyn Sink) -> Result<Report, Error> {
        let mut run = Run::new(sink, Left::NothingKept);
        let outcome = self.go(cancel, &mut run);
        run.end(outcome.map(|r| Report::Read(Box::new(r))))
    }

    fn go(self, cancel: &CancelToken, run: &mut Run<'_>) -> Result<ReadReport, Failure> {
        run.sink.watching_cancel(true);
        let in_place = self.output.is_none();
        let output = self.output.clone().unwrap_or_else(|| self.image.clone());
        let whose = format!("the image {}", self.image.display());
        // A compressed image is decoded into the temporary folder first: the shrink works
        // on a raw copy either way.
        let parent = self.shrink.folder_for(&output);
        let decoded = super::shrink::Scratch::new(&parent)?;
        let image = engine::Image::open(
            &engine::Input::Path(self.image.clone()),
            engine::OpenAs::Detect,
        )?;
        // Kept open while it is read: an unnamed file, gone when closed.
        let mut unpacked = None;
        let source = if image.format() == engine::Format::Raw {
            Target::open_for_read(&self.image)?
        } else {
            run.event(Event::note(format!(
                "Decoding {} into a temporary image",
                self.image.display()
            )));
            let file = engine::unpack(image, &decoded.dir, cancel)?;
            let name = file.path();
            unpacked = Some(file);
            Target::open_for_read(&name)?
        };
        // In place: the new image is made beside, then takes the old one's name.
        let made = if in_place {
            decoded.dir.join(output.file_name().unwrap_or_default())
        } else {
            output.clone()
        };
        let shrink = Shrink {
            tmp: Some(parent),
            ..self.shrink.clone()
        };
        let (report, shrunk) = super::shrink::shrunk_backup(
            &source,
            &made,
            self.force || in_place,
            &shrink,
            &whose,
            cancel,
            run,
        )?;
        let mut report = report;
        if in_place {
            let beside = |path: &std::path::Path| -> Vec<(PathBuf, PathBuf)> {
                let name = path.file_name().unwrap_or_default();
                let mut sums = name.to_os_string();
                sums.push(".sha256");
                let mut moves = vec![(path.to_owned(), output.clone())];
                moves.push((path.with_file_name(&sums), output.with_file_name(&sums)));
                moves
            };
            for (from, to) in beside(&made) {
                std::fs::rename(&from, &to).map_err(|e| {
                    Failure::Refused(format!("cannot put {} in place: {e}", to.display()))
                })?;
            }
            if let Some(bmap) = report.bmap_file.take() {
                let to = output.with_file_name(bmap.file_name().unwrap_or_default());
                std::fs::rename(&bmap, &to).map_err(|e| {
                    Failure::Refused(format!("cannot put {} in place: {e}", to.display()))
                })?;
                report.bmap_file = Some(to);
            }
            report.checksum_file = engine::checksum_path(&output);
        }
        drop(source);
        drop(unpacked);
        drop(decoded);
        Ok(ReadReport::of(
            self.image,
            output,
            true,
            report,
            Some(shrunk),
        ))
    }
}
