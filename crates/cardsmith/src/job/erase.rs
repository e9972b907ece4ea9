//! Erasing a card: one FAT32 partition over all of it, as a new card comes.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Instant;

use cardsmith_engine::CancelToken;
use serde::Serialize;

use super::drive::{open_drive, open_drives, Incoming, OpenedDrive, Permission, Wanted};
use super::{eject, Card, CardsReport, Error, Failure, Left, Report, Run, Sink};

/// Erase a card, or several (one question for all of them, then one after another).
#[derive(Debug, Clone, PartialEq)]
pub struct EraseJob {
    /// The cards (block devices), each with the drive the user confirmed (the window's
    /// choice), when there is one.
    pub targets: Vec<Wanted>,
    /// What the user allowed.
    pub permission: Permission,
    /// Power each drive off when it is done.
    pub eject: bool,
    /// With several cards: leave out one that is refused rather than refuse the run.
    pub skip_refused: bool,
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
    /// card half-formatted (`cancel` is consulted only between cards).
    pub fn run(self, cancel: &CancelToken, sink: &mut dyn Sink) -> Result<Report, Error> {
        let mut run = Run::new(sink, Left::Untouched);
        if let [want] = self.targets.as_slice() {
            let outcome = check_device(&want.path)
                .and_then(|()| {
                    open_drive(
                        &self.permission,
                        &want.path,
                        want.confirmed.as_ref(),
                        &Incoming::erase(),
                        &mut run,
                    )
                })
                .and_then(|opened| self.erase(opened, &mut run).map_err(|e| e.failure));
            return run.end(outcome.map(Report::Erase));
        }
        let outcome = self.erase_all(cancel, &mut run);
        run.end(outcome.map(|cards| Report::Cards(CardsReport::new("erase", cards))))
    }

    /// Several cards, one after another; a cancel stops before the next card (the ones
    /// erased stay erased, the rest untouched).
    fn erase_all(&self, cancel: &CancelToken, run: &mut Run<'_>) -> Result<Vec<Card>, Failure> {
        for want in &self.targets {
            check_device(&want.path)?;
        }
        let opened = open_drives(
            &self.permission,
            &self.targets,
            &Incoming::erase(),
            self.skip_refused,
            run,
        )?;
        let mut cards = Vec::new();
        for (want, opened) in self.targets.iter().zip(opened) {
            cancel.check()?;
            let started = Instant::now();
            let drive = opened.as_ref().ok().map(|o| o.drive.clone());
            let outcome = opened
                .map_err(|failure| Error {
                    failure,
                    left: Left::Untouched,
                })
                .and_then(|opened| self.erase(opened, run));
            cards.push(Card::of(
                &want.path,
                drive.as_ref(),
                None,
                outcome.map(|_| None),
                started.elapsed().as_secs_f64(),
            ));
        }
        Ok(cards)
    }

    /// Formats one opened card; a failure leaves it unbootable.
    fn erase(&self, opened: OpenedDrive, run: &mut Run<'_>) -> Result<EraseReport, Error> {
        let target = opened.target;
        let path = opened.drive.path.clone();
        let size = target.size().unwrap_or(0);
        run.sink.watching_cancel(true);
        let formatted = target
            .prepare()
            .map_err(Failure::from)
            .and_then(|()| {
                target.start_written_elsewhere();
                cardsmith_customize::format_card(target.file(), size).map_err(|e| {
                    Failure::Refused(format!("formatting {} failed: {e}", path.display()))
                })
            })
            .map_err(|failure| {
                target.scrub_after_failure();
                Error {
                    failure,
                    left: Left::after_write(target.leftover()),
                }
            })?;
        let reread = target.reread_partitions();
        drop(target);
        let ejected = self.eject.then(|| eject(&opened.drive, run));
        Ok(EraseReport {
            target: path,
            partition_offset: formatted.offset,
            partition_bytes: formatted.len,
            partition_table_reread: reread,
            unmounted: opened.unmounted,
            ejected,
        })
    }
}

/// Erase formats cards: a path that is not a block device is refused.
fn check_device(path: &std::path::Path) -> Result<(), Failure> {
    if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
        return Ok(());
    }
    Err(Failure::Refused(format!(
        "{} is not a block device: erase formats a card",
        path.display()
    )))
}
