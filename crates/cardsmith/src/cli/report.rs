//! How progress and results reach the user: an indicatif bar on a terminal, a plain line
//! every few seconds otherwise, or one JSON object per line with `--json`.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use cardsmith_engine::{units, Leftover, Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

/// How a result reads for people.
pub enum Said<'a> {
    /// A sentence about what was done, on standard error.
    Note(&'a str),
    /// The answer itself (a checksum line), on standard output for pipes.
    Answer(&'a str),
}

enum Mode {
    Bar(Option<ProgressBar>),
    Plain,
    Json,
    /// Events for a window (the wizard runs a verb on a worker thread).
    Channel(Sender<Event>),
}

/// What a verb reports to a window instead of a terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Progress {
        phase: Phase,
        done: u64,
        total: Option<u64>,
        /// Bytes per second in this phase.
        rate: f64,
    },
    /// A sentence about something that happened (unmounted, cached, customised…).
    Note(String),
    /// The verb ended: what to tell the user, and the result fields for the done screen.
    Finished {
        ok: bool,
        text: String,
        fields: Value,
    },
}

/// What a job that failed or was cancelled left behind, so its last words say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Turns engine progress events into output; throttles so output costs nothing measurable.
pub struct Reporter {
    mode: Mode,
    /// What the job has left on its target so far, should it fail now.
    left: Option<Left>,
    phase: Option<Phase>,
    phase_started: Instant,
    last_event: Instant,
    last_emit: Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(2);
const JSON_EVERY: Duration = Duration::from_millis(250);

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(None)
        } else {
            Mode::Plain
        };
        let now = Instant::now();
        Reporter {
            mode,
            left: None,
            phase: None,
            phase_started: now,
            last_event: now,
            last_emit: now,
        }
    }

    /// Reports to a window through `events`.
    pub fn channel(events: Sender<Event>) -> Reporter {
        let now = Instant::now();
        Reporter {
            mode: Mode::Channel(events),
            left: None,
            phase: None,
            phase_started: now,
            last_event: now,
            last_emit: now,
        }
    }

    pub fn progress(&mut self, p: Progress) {
        let now = Instant::now();
        let new_phase = self.phase != Some(p.phase);
        if new_phase {
            // A phase starts where the previous one ended, which is the last event.
            self.phase = Some(p.phase);
            self.phase_started = self.last_event;
        }
        self.last_event = now;
        let elapsed = now.duration_since(self.phase_started).as_secs_f64();
        let rate = if elapsed > 0.0 {
            p.bytes_done as f64 / elapsed
        } else {
            0.0
        };
        let finished = p.bytes_total == Some(p.bytes_done);
        match &mut self.mode {
            Mode::Bar(bar) => {
                if new_phase {
                    if let Some(old) = bar.take() {
                        old.finish();
                    }
                    *bar = Some(new_bar(p));
                }
                if let Some(bar) = bar {
                    bar.set_position(p.bytes_done);
                }
            }
            Mode::Plain => {
                if new_phase || finished || now.duration_since(self.last_emit) >= PLAIN_EVERY {
                    self.last_emit = now;
                    eprintln!("{}", plain_line(p, rate));
                }
            }
            Mode::Channel(events) => {
                if new_phase || finished || now.duration_since(self.last_emit) >= JSON_EVERY {
                    self.last_emit = now;
                    let _ = events.send(Event::Progress {
                        phase: p.phase,
                        done: p.bytes_done,
                        total: p.bytes_total,
                        rate,
                    });
                }
            }
            Mode::Json => {
                if new_phase || finished || now.duration_since(self.last_emit) >= JSON_EVERY {
                    self.last_emit = now;
                    emit(json!({
                        "event": "progress",
                        "phase": p.phase.name(),
                        "bytes_done": p.bytes_done,
                        "bytes_total": p.bytes_total,
                        "rate": rate.round() as u64,
                    }));
                }
            }
        }
    }

    fn clear_bar(&mut self) {
        if let Mode::Bar(bar) = &mut self.mode {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
        }
    }

    /// Something the user should know mid-job (a mount point unmounted, a warning): a line
    /// on standard error, or a JSON event.
    pub fn note(&mut self, sentence: &str, event: Value) {
        if let Mode::Channel(events) = &self.mode {
            let _ = events.send(Event::Note(sentence.to_owned()));
            return;
        }
        match self.mode {
            Mode::Json => emit(event),
            _ => {
                self.clear_bar();
                eprintln!("{sentence}");
            }
        }
    }

    /// A finished job: what people read (unless `--json`), the fields for scripts.
    pub fn success(&mut self, said: Said<'_>, mut fields: Value) {
        self.clear_bar();
        match (&self.mode, said) {
            (Mode::Channel(events), Said::Note(text) | Said::Answer(text)) => {
                let _ = events.send(Event::Finished {
                    ok: true,
                    text: text.to_owned(),
                    fields,
                });
            }
            (Mode::Json, _) => {
                fields["event"] = json!("result");
                fields["ok"] = json!(true);
                emit(fields);
            }
            (_, Said::Note(sentence)) => eprintln!("{sentence}"),
            (_, Said::Answer(line)) => println!("{line}"),
        }
    }

    /// From now on, a failure leaves `left` behind (said after the error).
    pub fn left(&mut self, left: Left) {
        self.left = Some(left);
    }

    pub fn failure(&mut self, message: &str, exit_code: u8, offset: Option<u64>) {
        self.clear_bar();
        let left = self.left.map(Left::code);
        match &self.mode {
            Mode::Channel(events) => {
                let _ = events.send(Event::Finished {
                    ok: false,
                    text: message.to_owned(),
                    fields: json!({ "exit_code": exit_code, "offset": offset, "left": left }),
                });
            }
            Mode::Json => emit(json!({
                "event": "result",
                "ok": false,
                "error": message,
                "exit_code": exit_code,
                "offset": offset,
                "left": left,
                "left_text": self.left.map(Left::sentence),
            })),
            _ => match self.left {
                Some(left) => eprintln!("cardsmith: {message}\n{}", left.sentence()),
                None => eprintln!("cardsmith: {message}"),
            },
        }
    }
}

fn emit(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn new_bar(p: Progress) -> ProgressBar {
    let bar = match p.bytes_total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{prefix:>7} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{prefix:>7} {spinner} {bytes} {binary_bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.set_prefix(p.phase.name());
    bar
}

fn plain_line(p: Progress, rate: f64) -> String {
    let mut line = format!("{}: {}", p.phase.name(), units::bytes(p.bytes_done));
    if let Some(total) = p.bytes_total.filter(|&t| t > 0) {
        let percent = (p.bytes_done as f64 / total as f64 * 100.0).min(100.0);
        line += &format!(" of {} ({percent:.0}%)", units::bytes(total));
    }
    line += &format!(", {:.1} MB/s", rate / 1e6);
    if let Some(total) = p.bytes_total.filter(|&t| t > p.bytes_done && rate > 0.0) {
        let eta = ((total - p.bytes_done) as f64 / rate).round() as u64;
        line += &format!(", ETA {}:{:02}", eta / 60, eta % 60);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_shows_percent_rate_and_eta() {
        let p = Progress {
            phase: Phase::Write,
            bytes_done: 50 << 20,
            bytes_total: Some(100 << 20),
        };
        let line = plain_line(p, 10e6);
        assert!(line.starts_with("write: 50.0 MiB"), "{line}");
        assert!(line.contains("(50%)"), "{line}");
        assert!(line.contains("10.0 MB/s"), "{line}");
        assert!(line.contains("ETA 0:05"), "{line}");
    }
}
