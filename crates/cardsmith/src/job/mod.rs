//! Jobs: what both faces run. A [`WriteJob`], [`ReadJob`] or [`EraseJob`] is a typed
//! description of one piece of work (source, target, checksums, verify, eject, settings,
//! cache folder); `run(cancel, sink)` does it and returns a [`Report`] or an [`Error`] that
//! says what the target was left as. Everything that happens on the way reaches the
//! [`Sink`] as a typed [`Event`]; a question before a drive is changed reaches it as an
//! [`Ask`]. The command line turns its clap arguments into jobs and its sink prints (a bar,
//! lines, or the events serialised as JSON); the wizard turns its choices into jobs and its
//! sink forwards events to the window and answers only for the drive the user confirmed.
//! No clap and no iced in here.

pub mod checks;
mod custom;
mod drive;
mod erase;
mod read;
mod shrink;
mod source;
mod write;

use std::path::PathBuf;
use std::time::Instant;

use cardsmith_drives::Identity;
use cardsmith_engine::{Error as EngineError, Leftover, Phase, Progress};
use serde::Serialize;

pub use custom::{advance_preset, apply, customised, for_card, made_private, readable};
pub use drive::{list, open_drive, open_drives, Incoming, Needed, Permission, Wanted};
pub use erase::EraseJob;
pub use read::{ReadJob, ShrinkJob};
pub use shrink::Shrink;
pub use source::{cache_notes, catalog_hashes, is_url, open_arg, open_cache};
pub use write::{choose_map, Blocks, Destination, MapChoice, Source, WriteJob};

/// Where a job's events and questions go.
pub trait Sink {
    /// Something happened: progress, a drive unmounted, a download cached…
    fn event(&mut self, event: Event);

    /// A person must agree before a drive (or an existing file) is changed. `Ok` is consent;
    /// `Err` says why not (no terminal, another answer, not the drive that was confirmed).
    fn consent(&mut self, ask: &Ask) -> Result<(), String>;

    /// Download news from other threads (a retry, a resume): a callback that may be called
    /// from any thread. By default it is lost.
    fn news(&self) -> cardsmith_catalog::Say {
        std::sync::Arc::new(|_: &str| {})
    }

    /// The job watches its cancel token from here on (`true`), or waits for something that
    /// does not (`false`, such as a question). The terminal lets Ctrl-C cancel in the
    /// first case and end the process in the second.
    fn watching_cancel(&mut self, _watching: bool) {}

    /// Something happened to card `card` (`target`) of a job over several cards. By
    /// default the event alone.
    fn card_event(&mut self, card: usize, target: &std::path::Path, event: Event) {
        let _ = (card, target);
        self.event(event);
    }
}

/// A question before something is changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The whole question: what, where, the drive's size, model, serial, what is mounted.
    pub question: String,
    /// What answers it: "yes", or the drive's name typed.
    pub needed: Needed,
    /// The drives it is about (none for an existing image file).
    pub drives: Vec<Identity>,
    /// The drive's kernel name, to be typed when `needed` is [`Needed::Name`].
    pub name: String,
    /// What is done to it, as the prompt says it ("erase", "change", "replace").
    pub verb: &'static str,
}

/// Something a job did or found, as it happens. Serialised, it is the `--json` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// How far the phase is; `rate` in bytes per second over the phase so far.
    Progress {
        #[serde(serialize_with = "phase_name")]
        phase: Phase,
        bytes_done: u64,
        bytes_total: Option<u64>,
        rate: u64,
    },
    /// A filesystem of the drive was unmounted before writing.
    Unmounted { mountpoint: PathBuf },
    /// Something the user should know that does not stop the job.
    Warning {
        warning: String,
        /// What holds the drive open (a backup of a mounted card).
        #[serde(skip_serializing_if = "Option::is_none")]
        in_use: Option<Vec<String>>,
    },
    /// Which catalog is used, and how old it is.
    Catalog {
        source: String,
        description: String,
        fetched_at: Option<u64>,
    },
    /// The image comes from the download cache.
    Cached { url: String, path: PathBuf },
    /// A checksum file beside the image is checked.
    ChecksumFile { path: PathBuf, sha256: String },
    /// Only the blocks a map names are written and verified.
    BlockMap {
        /// A `.bmap` file, or "the image's filesystems".
        from: String,
        mapped_bytes: u64,
        image_bytes: u64,
    },
    /// An image file was made private before it got secrets.
    MadePrivate { path: PathBuf, mode_was: u32 },
    /// The first-boot settings are on the boot partition.
    Customized(Box<Customised>),
    /// A preset's host-name counter moved on (or could not).
    PresetCounter { preset: String, text: String },
    /// The drive was powered off and can be removed.
    Ejected { drive: PathBuf },
    /// The drive could not be powered off; the job stands.
    EjectFailed { drive: PathBuf, error: String },
    /// One card of several is done, or failed (the others carry on).
    CardDone {
        result: CardResult,
        error: Option<String>,
    },
    /// Anything else worth a line.
    Note { text: String },
}

/// What customising did, for the event and for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customised {
    pub init_format: &'static str,
    pub detected: bool,
    pub why: String,
    pub disagreement: Option<String>,
    pub notes: Vec<String>,
    pub effects: Vec<cardsmith_customize::Effect>,
    pub files: Vec<String>,
    pub hostname: Option<String>,
    pub password_hash: Option<&'static str>,
    /// The whole of it as a paragraph for people.
    #[serde(skip)]
    pub text: String,
}

fn phase_name<S: serde::Serializer>(phase: &Phase, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(phase.name())
}

impl Event {
    /// A note with just a sentence.
    pub fn note(text: impl Into<String>) -> Event {
        Event::Note { text: text.into() }
    }

    /// A warning.
    pub fn warning(text: impl Into<String>) -> Event {
        Event::Warning {
            warning: text.into(),
            in_use: None,
        }
    }

    /// The event as a line for people (`None` for progress, which is a bar or a line of
    /// its own).
    pub fn sentence(&self) -> Option<String> {
        Some(match self {
            Event::Progress { .. } => return None,
            Event::Unmounted { mountpoint } => format!("Unmounted {}", mountpoint.display()),
            Event::Warning { warning, .. } => format!("Warning: {warning}"),
            Event::Catalog { description, .. } => description.clone(),
            Event::Cached { url, path } => {
                format!("Using the cached download of {url} ({})", path.display())
            }
            Event::ChecksumFile { path, sha256 } => format!(
                "Checking the image against {} (SHA-256 {}…)",
                path.display(),
                sha256.get(..12).unwrap_or(sha256)
            ),
            Event::BlockMap {
                from,
                mapped_bytes,
                image_bytes,
            } => format!(
                "Only the blocks the image's filesystems use: {} of {} (map: {from})",
                cardsmith_engine::units::bytes(*mapped_bytes),
                cardsmith_engine::units::bytes(*image_bytes)
            ),
            Event::MadePrivate { path, mode_was } => format!(
                "{} could be read by others (mode {mode_was:o}); it is to hold password hashes \
                 and the Wi-Fi key, so only its owner may read it now (mode {:o})",
                path.display(),
                mode_was & 0o7700
            ),
            Event::Customized(c) => c.text.clone(),
            Event::PresetCounter { text, .. } | Event::Note { text } => text.clone(),
            Event::Ejected { drive } => {
                format!("Powered off {}: it can be removed.", drive.display())
            }
            Event::EjectFailed { error, .. } => format!("Not ejected: {error}"),
            Event::CardDone { error: None, .. } => "Done.".to_owned(),
            Event::CardDone {
                error: Some(error), ..
            } => format!("FAILED: {error}. The other cards carry on."),
        })
    }
}

/// What a job that failed or was cancelled left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Left {
    /// Refused or stopped before anything was written.
    Untouched,
    /// A card's first MiB was zeroed after a write or erase that did not finish.
    Zeroed,
    /// The unfinished image file was removed.
    FileRemoved,
    /// The image file that was to be replaced was emptied.
    FileEmptied,
    /// Cleaning up after a failure failed too: the target may hold part of the image.
    PartlyWritten,
    /// The image is on the target, but the first-boot settings are not (or not all).
    WithoutSettings,
    /// customize stopped while it wrote: the boot partition may hold part of the settings.
    PartlyCustomised,
    /// A backup: the card was only read; no unfinished file was kept.
    NothingKept,
}

impl Left {
    /// What a failed write left, as the engine tells it.
    pub fn after_write(leftover: Leftover) -> Left {
        match leftover {
            Leftover::Untouched => Left::Untouched,
            Leftover::FirstMibZeroed => Left::Zeroed,
            Leftover::FileRemoved => Left::FileRemoved,
            Leftover::FileEmptied => Left::FileEmptied,
            Leftover::PartlyWritten => Left::PartlyWritten,
        }
    }

    /// The stable name scripts (and the window) match on.
    pub fn code(self) -> &'static str {
        match self {
            Left::Untouched => "untouched",
            Left::Zeroed => "zeroed",
            Left::FileRemoved => "file_removed",
            Left::FileEmptied => "file_emptied",
            Left::PartlyWritten => "partly_written",
            Left::WithoutSettings => "without_settings",
            Left::PartlyCustomised => "partly_customised",
            Left::NothingKept => "nothing_kept",
        }
    }

    /// The sentence the command line prints after the error.
    pub fn sentence(self) -> &'static str {
        match self {
            Left::Untouched => "Nothing was written: what the target holds is as it was.",
            Left::Zeroed => {
                "The card was left with its first MiB zeroed, so it boots nothing half-written; \
                 write or erase it again before using it."
            }
            Left::PartlyWritten => {
                "Cleaning up failed too: the card or file may hold part of what was being \
                 written. Write or erase it again before using it."
            }
            Left::FileRemoved => "The unfinished image file was removed.",
            Left::FileEmptied => "The image file was emptied: it held an unfinished image.",
            Left::WithoutSettings => {
                "The image is on the target, but its first-boot settings are missing or \
                 incomplete: run `cardsmith customize` on it, or write it again."
            }
            Left::PartlyCustomised => {
                "The boot partition may hold part of the settings: run `cardsmith customize` on \
                 it again before using it."
            }
            Left::NothingKept => {
                "The card was only read and is unchanged; no unfinished backup was kept (an \
                 earlier file of that name is as it was)."
            }
        }
    }
}

/// Exit code when the target differs from the image.
pub const EXIT_VERIFY_FAILED: u8 = 3;
/// Exit code when the image's SHA-256 is not the expected one.
pub const EXIT_CHECKSUM_MISMATCH: u8 = 4;
/// Exit code when some cards of several failed and the others were written.
pub const EXIT_SOME_CARDS_FAILED: u8 = 5;
/// Exit code after Ctrl-C, as shells report a SIGINT death.
pub const EXIT_CANCELLED: u8 = 130;

/// Why a job (or a verb) failed: an engine error, or a refusal of its own.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Drive(#[from] cardsmith_drives::Error),
    #[error(transparent)]
    Catalog(#[from] cardsmith_catalog::Error),
    #[error(transparent)]
    Customize(#[from] cardsmith_customize::Error),
    /// A request that does not hold together (a command line clap cannot check by itself).
    #[error("{0}")]
    Usage(String),
    /// Refused, with the reason.
    #[error("{0}")]
    Refused(String),
    /// What was written did not read back the same.
    #[error(
        "{0}. The card did not keep what was written to it (a failing or counterfeit card, or \
         a bad reader or cable): try another card or reader"
    )]
    NotKept(EngineError),
}

impl Failure {
    /// The process exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Engine(
                EngineError::VerifyMismatch { .. } | EngineError::VerifyUnreadable { .. },
            )
            | Failure::NotKept(_) => EXIT_VERIFY_FAILED,
            Failure::Engine(
                EngineError::ChecksumMismatch { .. }
                | EngineError::PublishedChecksumMismatch { .. },
            ) => EXIT_CHECKSUM_MISMATCH,
            Failure::Engine(EngineError::Cancelled) => EXIT_CANCELLED,
            Failure::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Where the target first differed, for a failed verify.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Failure::Engine(EngineError::VerifyMismatch { offset, .. })
            | Failure::NotKept(EngineError::VerifyMismatch { offset, .. }) => *offset,
            Failure::Engine(
                EngineError::VerifyUnreadable { offset, .. }
                | EngineError::Write { offset, .. }
                | EngineError::StoppedAnswering { offset, .. },
            ) => Some(*offset),
            _ => None,
        }
    }
}

/// A job that did not finish: why, and what its target was left as.
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct Error {
    /// Why it stopped.
    pub failure: Failure,
    /// What the target holds now.
    pub left: Left,
}

impl Error {
    /// Whether the user cancelled it.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.failure, Failure::Engine(EngineError::Cancelled))
    }
}

/// A finished job. Serialised (with `"event": "result", "ok": true`), it is the last
/// `--json` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Report {
    Write(Box<write::WriteReport>),
    Read(Box<read::ReadReport>),
    Erase(erase::EraseReport),
    /// A job over several cards: each card's row.
    Cards(CardsReport),
}

impl Report {
    /// What was done, for people.
    pub fn summary(&self) -> String {
        match self {
            Report::Write(r) => r.summary(),
            Report::Read(r) => r.summary(),
            Report::Erase(r) => r.summary(),
            Report::Cards(r) => r.summary(),
        }
    }
}

/// How one card of several came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardResult {
    /// Done (written and verified, erased, customised).
    Written,
    /// Left out before anything was written to it (`--skip-refused`).
    Refused,
    /// Failed on the way: its error says why, `left` what it holds.
    Failed,
}

/// One card's row of a job over several cards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Card {
    pub target: PathBuf,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// The host name it got (or was to get).
    pub hostname: Option<String>,
    pub result: CardResult,
    pub error: Option<String>,
    /// The exit code this card's failure alone would have given.
    pub exit_code: Option<u8>,
    pub left: Option<Left>,
    pub bytes_written: u64,
    /// Bytes written per second, from the start of the writing to this card's end.
    pub rate: u64,
    pub seconds: f64,
    /// The card's own report, when it was done.
    pub report: Option<Box<write::WriteReport>>,
}

impl Card {
    /// The row of the card at `target`: done (with the write's report, if it was one) or
    /// why not.
    pub fn of(
        target: &std::path::Path,
        drive: Option<&cardsmith_drives::Drive>,
        hostname: Option<String>,
        outcome: Result<Option<write::WriteReport>, Error>,
        seconds: f64,
    ) -> Card {
        let base = Card {
            target: target.to_owned(),
            model: drive.map(|d| d.description()),
            serial: drive.and_then(|d| d.serial.clone()),
            hostname,
            result: CardResult::Written,
            error: None,
            exit_code: None,
            left: None,
            bytes_written: 0,
            rate: 0,
            seconds,
            report: None,
        };
        match outcome {
            Ok(None) => base,
            Ok(Some(report)) => Card {
                bytes_written: report.bytes_written,
                rate: (report.bytes_written as f64 / seconds.max(1e-3)) as u64,
                report: Some(Box::new(report)),
                ..base
            },
            Err(e) => Card {
                result: match e.left {
                    Left::Untouched => CardResult::Refused,
                    _ => CardResult::Failed,
                },
                exit_code: Some(e.failure.exit_code()),
                error: Some(e.failure.to_string()),
                left: Some(e.left),
                ..base
            },
        }
    }
}

/// A job over several cards. Serialised, it is the `--json` result, with `ok` false when a
/// card failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardsReport {
    /// "write", "erase" or "customize".
    pub verb: &'static str,
    pub cards: Vec<Card>,
    pub succeeded: usize,
    pub failed: usize,
}

impl CardsReport {
    pub fn new(verb: &'static str, cards: Vec<Card>) -> CardsReport {
        let succeeded = cards
            .iter()
            .filter(|c| c.result == CardResult::Written)
            .count();
        CardsReport {
            verb,
            failed: cards.len() - succeeded,
            succeeded,
            cards,
        }
    }

    /// The exit code: 0 when every card was done, [`EXIT_SOME_CARDS_FAILED`] when some
    /// were, 1 when none was.
    pub fn exit_code(&self) -> u8 {
        match (self.succeeded, self.failed) {
            (_, 0) => 0,
            (0, _) => 1,
            _ => EXIT_SOME_CARDS_FAILED,
        }
    }

    /// "4 cards written." or "2 of 4 cards written; 2 failed.", then the table.
    pub fn summary(&self) -> String {
        let done = match self.verb {
            "erase" => "erased",
            "customize" => "customised",
            _ => "written",
        };
        let head = if self.failed == 0 {
            format!("{} cards {done}.", self.succeeded)
        } else {
            format!(
                "{} of {} cards {done}; {} failed.",
                self.succeeded,
                self.cards.len(),
                self.failed
            )
        };
        format!("{head}\n{}", self.table())
    }

    /// card, serial, host name, result, MB/s, time; each failure's reason below.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 6]> = self
            .cards
            .iter()
            .map(|c| {
                [
                    c.target.display().to_string(),
                    c.serial.clone().unwrap_or_else(|| "-".into()),
                    c.hostname.clone().unwrap_or_else(|| "-".into()),
                    match c.result {
                        CardResult::Written => "ok".to_owned(),
                        CardResult::Refused => "refused".to_owned(),
                        CardResult::Failed => "FAILED".to_owned(),
                    },
                    match c.result {
                        CardResult::Written if c.bytes_written > 0 => {
                            format!("{:.1}", c.rate as f64 / 1e6)
                        }
                        _ => "-".to_owned(),
                    },
                    format!("{}:{:02}", c.seconds as u64 / 60, c.seconds as u64 % 60),
                ]
            })
            .collect();
        let head = ["CARD", "SERIAL", "HOST NAME", "RESULT", "MB/s", "TIME"];
        let widths: Vec<usize> = (0..6)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([head[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: [&str; 6]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                text += &format!("{cell:<w$}  ", w = widths[i]);
            }
            text.trim_end().to_owned()
        };
        let mut out = vec![line(head)];
        for row in &rows {
            out.push(line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]));
        }
        for c in &self.cards {
            if let Some(error) = &c.error {
                out.push(format!("{}: {error}", c.target.display()));
                if let Some(left) = c.left {
                    out.push(format!("  {}", left.sentence()));
                }
            }
        }
        out.join("\n")
    }
}

/// A job under way: its sink, and what its target holds should it fail now.
pub struct Run<'a> {
    pub sink: &'a mut dyn Sink,
    pub left: Left,
    pace: Pace,
    /// Each card's pace, in a job over several cards.
    paces: Vec<Pace>,
}

impl<'a> Run<'a> {
    /// A job that has touched nothing yet; `left` is what a failure now leaves.
    pub fn new(sink: &'a mut dyn Sink, left: Left) -> Run<'a> {
        Run {
            sink,
            left,
            pace: Pace::new(),
            paces: Vec::new(),
        }
    }

    /// Tells the sink.
    pub fn event(&mut self, event: Event) {
        self.sink.event(event);
    }

    /// Engine progress, with its rate over the phase so far.
    pub fn progress(&mut self, p: Progress) {
        let rate = self.pace.rate(p);
        self.sink.event(Event::Progress {
            phase: p.phase,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            rate,
        });
    }

    /// Engine progress of card `card` in a job over several cards.
    pub fn card_progress(&mut self, card: usize, target: &std::path::Path, p: Progress) {
        if self.paces.len() <= card {
            self.paces.resize_with(card + 1, Pace::new);
        }
        let rate = self.paces[card].rate(p);
        self.sink.card_event(
            card,
            target,
            Event::Progress {
                phase: p.phase,
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
                rate,
            },
        );
    }

    /// Tells the sink about card `card` of several.
    pub fn card_event(&mut self, card: usize, target: &std::path::Path, event: Event) {
        self.sink.card_event(card, target, event);
    }

    /// Ends the job: its outcome, with what the target was left as on failure.
    pub fn end<T>(self, outcome: Result<T, Failure>) -> Result<T, Error> {
        outcome.map_err(|failure| Error {
            failure,
            left: self.left,
        })
    }
}

/// The rate of a phase: bytes over the time since it started (where the previous one
/// ended).
struct Pace {
    phase: Option<Phase>,
    started: Instant,
    last: Instant,
}

impl Pace {
    fn new() -> Pace {
        let now = Instant::now();
        Pace {
            phase: None,
            started: now,
            last: now,
        }
    }

    fn rate(&mut self, p: Progress) -> u64 {
        let now = Instant::now();
        if self.phase != Some(p.phase) {
            self.phase = Some(p.phase);
            self.started = self.last;
        }
        self.last = now;
        let elapsed = now.duration_since(self.started).as_secs_f64();
        if elapsed > 0.0 {
            (p.bytes_done as f64 / elapsed).round() as u64
        } else {
            0
        }
    }
}

/// The person behind `sudo cardsmith …`: files cardsmith creates (image files, backups)
/// are handed to them, not left to root in their home folder.
pub fn invoking_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |name| std::env::var(name).ok()?.parse::<u32>().ok();
    Some((id("SUDO_UID")?, id("SUDO_GID")?)).filter(|&(uid, _)| uid != 0)
}

/// Powers the drive off after a job that succeeded. A drive that cannot be powered off is
/// reported, but the job stands.
pub fn eject(drive: &cardsmith_drives::Drive, run: &mut Run<'_>) -> bool {
    match cardsmith_drives::power_off(drive) {
        Ok(()) => {
            run.event(Event::Ejected {
                drive: drive.path.clone(),
            });
            true
        }
        Err(e) => {
            run.event(Event::EjectFailed {
                drive: drive.path.clone(),
                error: e.to_string(),
            });
            false
        }
    }
}

#[cfg(test)]
mod tests;
