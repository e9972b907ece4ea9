//! How progress and results reach the user: an indicatif bar on a terminal, a plain line
//! every few seconds otherwise, or one JSON object per line with `--json`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use cardsmith_catalog::Say;
use cardsmith_engine::{units, Phase, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use super::confirm::{self, Consent};
use crate::job::{Ask, Event, Left, Needed, Report, Sink};

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
}

/// The terminal's [`Sink`]: job events as a bar, lines or JSON; questions asked at the
/// terminal. Throttles so output costs nothing measurable.
pub struct Reporter {
    mode: Mode,
    /// The job's progress as last shown.
    shown: Shown,
    /// A job over several cards: each card's line (its bar, its progress as last shown).
    cards: Vec<CardLine>,
    multi: Option<MultiProgress>,
}

/// How far one card of several is, as the terminal shows it.
struct CardLine {
    bar: Option<ProgressBar>,
    shown: Shown,
}

/// Which phase a line of progress (the job's, or one card's) was last in, and when it
/// was last shown.
struct Shown {
    phase: Option<Phase>,
    last: Instant,
}

impl Shown {
    fn new() -> Shown {
        Shown {
            phase: None,
            last: Instant::now(),
        }
    }

    /// Takes in `p`: whether it starts a new phase.
    fn starts_phase(&mut self, p: Progress) -> bool {
        let new = self.phase != Some(p.phase);
        self.phase = Some(p.phase);
        new
    }

    /// Whether a line is due now: `every` apart, and at once for a new phase or the end of
    /// one. A line due counts as shown.
    fn due(&mut self, new_phase: bool, p: Progress, every: Duration) -> bool {
        let now = Instant::now();
        let due = new_phase
            || p.bytes_total == Some(p.bytes_done)
            || now.duration_since(self.last) >= every;
        if due {
            self.last = now;
        }
        due
    }
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
        Reporter {
            mode,
            shown: Shown::new(),
            cards: Vec::new(),
            multi: None,
        }
    }

    fn json(&self) -> bool {
        matches!(self.mode, Mode::Json)
    }

    fn progress(&mut self, p: Progress, rate: u64, event: &Event) {
        let new_phase = self.shown.starts_phase(p);
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
                if self.shown.due(new_phase, p, PLAIN_EVERY) {
                    eprintln!("{}", plain_line(p, rate as f64));
                }
            }
            Mode::Json => {
                if self.shown.due(new_phase, p, JSON_EVERY) {
                    emit(json!(event));
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
        if let Some(multi) = self.multi.take() {
            for line in &mut self.cards {
                if let Some(bar) = line.bar.take() {
                    bar.finish();
                }
            }
            let _ = multi.clear();
        }
    }

    /// Card `card`'s progress: its own bar among the others, its own line every few
    /// seconds, or its JSON event with the card's number and path.
    fn card_progress(
        &mut self,
        (card, target): (usize, &Path),
        p: Progress,
        rate: u64,
        event: &Event,
    ) {
        if self.cards.len() <= card {
            self.cards.resize_with(card + 1, || CardLine {
                bar: None,
                shown: Shown::new(),
            });
        }
        let line = &mut self.cards[card];
        let new_phase = line.shown.starts_phase(p);
        match &self.mode {
            Mode::Bar(_) => {
                let multi = self.multi.get_or_insert_with(|| {
                    MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
                });
                let bar = line.bar.get_or_insert_with(|| multi.add(new_bar(p)));
                if new_phase {
                    bar.set_style(style(p));
                    match p.bytes_total {
                        Some(total) => bar.set_length(total),
                        None => bar.unset_length(),
                    }
                    bar.reset();
                }
                bar.set_prefix(format!("{} {}", short(target), p.phase.name()));
                bar.set_position(p.bytes_done);
            }
            Mode::Plain => {
                if line.shown.due(new_phase, p, PLAIN_EVERY) {
                    eprintln!("{}: {}", target.display(), plain_line(p, rate as f64));
                }
            }
            Mode::Json => {
                if line.shown.due(new_phase, p, JSON_EVERY) {
                    emit(for_card(event, card, target));
                }
            }
        }
    }

    /// A job over several cards: the table (or, with `--json`, the result with every
    /// card's row), `ok` only when every card was done.
    pub fn cards(&mut self, report: &Report) {
        self.clear_bar();
        let Report::Cards(cards) = report else {
            return self.report(report);
        };
        match self.mode {
            Mode::Json => {
                let mut fields = json!(report);
                fields["event"] = json!("result");
                fields["ok"] = json!(cards.failed == 0);
                if cards.failed > 0 {
                    fields["exit_code"] = json!(cards.exit_code());
                }
                emit(fields);
            }
            _ => eprintln!("{}", report.summary()),
        }
    }

    /// What a verb that is not a job (cache clear, preset save) tells: a line on standard
    /// error, or its JSON event.
    pub fn note(&mut self, sentence: &str, event: Value) {
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
            (Mode::Json, _) => {
                fields["event"] = json!("result");
                fields["ok"] = json!(true);
                emit(fields);
            }
            (_, Said::Note(sentence)) => eprintln!("{sentence}"),
            (_, Said::Answer(line)) => println!("{line}"),
        }
    }

    /// A job's report.
    pub fn report(&mut self, report: &Report) {
        self.success(Said::Note(&report.summary()), json!(report));
    }

    /// A verb that failed: why, and what it left (said after the error).
    pub fn failure(
        &mut self,
        message: &str,
        exit_code: u8,
        offset: Option<u64>,
        left: Option<Left>,
    ) {
        self.clear_bar();
        match &self.mode {
            Mode::Json => emit(json!({
                "event": "result",
                "ok": false,
                "error": message,
                "exit_code": exit_code,
                "offset": offset,
                "left": left.map(Left::code),
                "left_text": left.map(Left::sentence),
            })),
            _ => match left {
                Some(left) => eprintln!("cardsmith: {message}\n{}", left.sentence()),
                None => eprintln!("cardsmith: {message}"),
            },
        }
    }
}

impl Sink for Reporter {
    fn event(&mut self, event: Event) {
        if let Event::Progress {
            phase,
            bytes_done,
            bytes_total,
            rate,
        } = event
        {
            let p = Progress {
                phase,
                bytes_done,
                bytes_total,
            };
            return self.progress(p, rate, &event);
        }
        match self.mode {
            Mode::Json => emit(json!(event)),
            _ => {
                self.clear_bar();
                if let Some(sentence) = event.sentence() {
                    eprintln!("{sentence}");
                }
            }
        }
    }

    fn consent(&mut self, ask: &Ask) -> Result<(), String> {
        self.clear_bar();
        let (consent, no_terminal) = match ask.needed {
            Needed::Name => (
                Consent::Name(&ask.name, ask.verb),
                format!(
                    "a system drive or fixed disk is {}d only after its name is typed at a \
                     prompt (--yes is not enough), and standard input is not a terminal",
                    ask.verb
                ),
            ),
            Needed::Yes | Needed::Nothing => (
                Consent::Yes,
                "standard input is not a terminal, so pass --yes".to_owned(),
            ),
        };
        confirm::obtain(&ask.question, consent, &no_terminal)
    }

    fn news(&self) -> Say {
        let json = self.json();
        std::sync::Arc::new(move |text: &str| {
            if json {
                println!("{}", json!(Event::note(text)));
            } else {
                eprintln!("{text}");
            }
        })
    }

    fn watching_cancel(&mut self, watching: bool) {
        super::ctrl_c_cancels(watching);
    }

    fn card_event(&mut self, card: usize, target: &Path, event: Event) {
        if let Event::Progress {
            phase,
            bytes_done,
            bytes_total,
            rate,
        } = event
        {
            let p = Progress {
                phase,
                bytes_done,
                bytes_total,
            };
            return self.card_progress((card, target), p, rate, &event);
        }
        match (&self.mode, event.sentence()) {
            (Mode::Json, _) => emit(for_card(&event, card, target)),
            (_, Some(sentence)) => {
                let text = format!("{}: {sentence}", target.display());
                match &self.multi {
                    Some(multi) => {
                        let _ = multi.println(text);
                    }
                    None => eprintln!("{text}"),
                }
            }
            (_, None) => {}
        }
    }
}

/// An event of one card of several, as its JSON line: with the card's number and path.
fn for_card(event: &Event, card: usize, target: &Path) -> Value {
    let mut line = json!(event);
    line["card"] = json!(card);
    line["target"] = json!(target);
    line
}

/// A device's short name for a bar's prefix: "loop3" for /dev/loop3.
fn short(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| target.display().to_string())
}

fn emit(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn new_bar(p: Progress) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(p.bytes_total, ProgressDrawTarget::stderr())
        .with_style(style(p));
    bar.set_prefix(p.phase.name());
    bar
}

/// A bar when the total is known, else a spinner with the bytes so far.
fn style(p: Progress) -> ProgressStyle {
    match p.bytes_total {
        Some(_) => ProgressStyle::with_template(
            "{prefix:>7} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
        None => {
            ProgressStyle::with_template("{prefix:>7} {spinner} {bytes} {binary_bytes_per_sec}")
                .expect("valid template")
        }
    }
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
