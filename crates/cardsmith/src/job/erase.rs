//! Erasing a card: one FAT32 partition over all of it, as a new card comes.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use cardsmith_drives::Identity;
use cardsmith_engine::CancelToken;
use serde::Serialize;

use super::drive::{open_drive, Incoming, Permission};
use super::{eject, Error, Failure, Left, Report, Run, Sink};

/// Erase a card.
#[derive(Debug, Clone, PartialEq)]
pub struct EraseJob {
    /// The card (a block device).
    pub target: PathBuf,
    /// The drive the user confirmed, and no other (the window's choice).
    pub confirmed: Option<Identity>,
    /// What the user allowed.
    pub permission: Permission,
    /// Power the drive off when done.
    pub eject: bool,
}

/// What erasing did. Serialised, it is the `--json` result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EraseReport {
    pub target: PathBuf,
    pub partition_offset: u64,
    pub partition_bytes: u64,
    pub partition_table_reread: bool,
    pub unmounted: Vec<PathBuf>,
    pub ejected: Option<bool>,
}

impl EraseReport {
    /// "Erased /dev/sdb: one FAT partition of 31.9 GB (labelled BOOTFS)."
    pub fn summary(&self) -> String {
        format!(
            "Erased {}: one FAT partition of {} (labelled BOOTFS).",
            self.target.display(),
            cardsmith_drives::human_size(self.partition_bytes)
        )
    }
}

impl EraseJob {
    /// Erases. Formatting takes seconds: a cancel then lets it finish rather than leave the
    /// card half-formatted (`cancel` is not consulted once it started).
    pub fn run(self, _cancel: &CancelToken, sink: &mut dyn Sink) -> Result<Report, Error> {
        let mut run = Run::new(sink, Left::Untouched);
        let outcome = self.go(&mut run);
        run.end(outcome.map(Report::Erase))
    }

    fn go(self, run: &mut Run<'_>) -> Result<EraseReport, Failure> {
        let is_device =
            std::fs::metadata(&self.target).is_ok_and(|m| m.file_type().is_block_device());
        if !is_device {
            return Err(Failure::Refused(format!(
                "{} is not a block device: erase formats a card",
                self.target.display()
            )));
        }
        let opened = open_drive(
            &self.permission,
            &self.target,
            self.confirmed.as_ref(),
            &Incoming::erase(),
            run,
        )?;
        let target = opened.target;
        let size = target.size().unwrap_or(0);
        run.sink.watching_cancel(true);
        let formatted = target
            .prepare()
            .map_err(Failure::from)
            .and_then(|()| {
                cardsmith_customize::format_card(target.file(), size).map_err(|e| {
                    Failure::Refused(format!("formatting {} failed: {e}", self.target.display()))
                })
            })
            .inspect_err(|_| {
                target.scrub_after_failure();
                run.left = Left::after_write(target.leftover());
            })?;
        let reread = target.reread_partitions();
        drop(target);
        let ejected = self.eject.then(|| eject(&opened.drive, run));
        Ok(EraseReport {
            target: self.target,
            partition_offset: formatted.offset,
            partition_bytes: formatted.len,
            partition_table_reread: reread,
            unmounted: opened.unmounted,
            ejected,
        })
    }
}
