//! A job under way: one bar per phase (download and write, verify, customise; read;
//! erase), the current one with its MB/s and time left, the notes the job sent, and a
//! Cancel that says what the card (or file) will be left as.

use cardsmith_engine::{CancelToken, Phase};
use iced::widget::{button, column, container, progress_bar, row, text};
use iced::{Center, Element, Fill};
use rust_i18n::t;

use super::Action;
use crate::gui::theme::{self, size, space};
use crate::gui::widget;
use crate::gui::work::{Ended, Job, Kind, Update};
use crate::job::Event;

/// A step of a job, as the window shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Download (when streamed) and write, with the checksum check after.
    Write,
    Verify,
    Customise,
    Read,
    Erase,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bar {
    pub done: u64,
    pub total: Option<u64>,
    /// Bytes per second.
    pub rate: u64,
    pub finished: bool,
    pub started: bool,
    /// When the step's first progress came: its rate is counted from there, also while
    /// nothing comes (a stalled download's rate falls, its time left grows).
    pub since: Option<std::time::Instant>,
}

/// What cancelling now leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaves {
    /// A card: its first MiB zeroed, so it boots nothing half-written.
    Card,
    /// An image file: removed.
    File,
    /// A backup: nothing kept, the card unchanged.
    Backup,
    /// Erasing: it finishes (seconds), a cancel does not stop it.
    Erase,
}

pub struct State {
    pub kind: Kind,
    pub steps: Vec<(Step, Bar)>,
    /// Several cards written at once: a row for each (the steps are then theirs).
    pub cards: Vec<CardRow>,
    pub notes: Vec<String>,
    pub cancel: CancelToken,
    pub cancelling: bool,
    pub leaves: Leaves,
}

/// One card of several: where it is, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CardRow {
    pub path: std::path::PathBuf,
    pub phase: Option<Phase>,
    pub bar: Bar,
    /// `None` while it is under way; then `Ok` or the reason it failed.
    pub outcome: Option<Result<(), String>>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Cancel,
    /// A second passed.
    Tick(std::time::Instant),
}

impl State {
    /// The steps `job` will go through.
    pub fn new(job: &Job, cancel: CancelToken) -> State {
        let cards = match job {
            Job::Write(w) if w.targets.len() > 1 => w
                .targets
                .iter()
                .map(|t| CardRow {
                    path: t.path().to_owned(),
                    phase: None,
                    bar: Bar::default(),
                    outcome: None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let (steps, leaves) = match job {
            Job::Write(w) => {
                let mut steps = vec![Step::Write];
                if w.verify {
                    steps.push(Step::Verify);
                }
                if w.settings.is_some() {
                    steps.push(Step::Customise);
                }
                let leaves = match w.targets.first() {
                    Some(crate::job::Destination::File(_)) => Leaves::File,
                    _ => Leaves::Card,
                };
                (steps, leaves)
            }
            Job::Read(_) => (vec![Step::Read], Leaves::Backup),
            Job::Erase(_) => (vec![Step::Erase], Leaves::Erase),
        };
        State {
            kind: job.kind(),
            steps: steps.into_iter().map(|s| (s, Bar::default())).collect(),
            cards,
            notes: Vec::new(),
            cancel,
            cancelling: false,
            leaves,
        }
    }

    pub fn update(&mut self, message: Message) -> Action<Message, ()> {
        match message {
            Message::Cancel => self.cancel(),
            Message::Tick(now) => {
                let cards = self.cards.iter_mut().map(|c| &mut c.bar);
                for bar in self.steps.iter_mut().map(|(_, bar)| bar).chain(cards) {
                    if let (Some(since), false) = (bar.since, bar.finished) {
                        let secs = now.saturating_duration_since(since).as_secs_f64();
                        if secs > 1.0 {
                            bar.rate = (bar.done as f64 / secs) as u64;
                        }
                    }
                }
            }
        }
        Action::None
    }

    /// Stops the job at its next chunk (Cancel, or the window closing).
    pub fn cancel(&mut self) {
        self.cancel.cancel();
        self.cancelling = true;
    }

    /// An event from the job; its end is handed back.
    pub fn on_update(&mut self, update: Update) -> Option<Ended> {
        match update {
            Update::Ended(ended) => {
                if ended.report.is_some() {
                    for (_, bar) in &mut self.steps {
                        bar.finished = true;
                    }
                }
                return Some(*ended);
            }
            Update::Event(Event::Progress {
                phase,
                bytes_done,
                bytes_total,
                rate,
            }) => {
                let step = match phase {
                    Phase::Write | Phase::Finish => Step::Write,
                    Phase::Verify => Step::Verify,
                    Phase::Read | Phase::Hash => Step::Read,
                };
                // Every step before this one is over.
                let mut before = true;
                for (s, bar) in &mut self.steps {
                    if *s == step {
                        before = false;
                        bar.started = true;
                        bar.since.get_or_insert_with(std::time::Instant::now);
                        bar.done = bytes_done;
                        bar.total = bytes_total;
                        bar.rate = rate;
                        bar.finished = phase == Phase::Finish;
                    } else if before {
                        bar.started = true;
                        bar.finished = true;
                    }
                }
            }
            // What customising did is the done screen's summary, not a note.
            Update::Event(Event::Customized(_)) => {
                for (_, bar) in &mut self.steps {
                    bar.started = true;
                    bar.finished = true;
                }
            }
            Update::Event(event) => {
                if let Some(sentence) = event.sentence() {
                    self.notes.push(sentence);
                }
            }
            Update::Card(index, path, event) => self.on_card(index, path, event),
        }
        None
    }

    /// An event of one card of several.
    fn on_card(&mut self, index: usize, path: std::path::PathBuf, event: Event) {
        if self.cards.len() <= index {
            self.cards.resize(
                index + 1,
                CardRow {
                    path: path.clone(),
                    phase: None,
                    bar: Bar::default(),
                    outcome: None,
                },
            );
        }
        let row = &mut self.cards[index];
        match event {
            Event::Progress {
                phase,
                bytes_done,
                bytes_total,
                rate,
            } => {
                if row.phase != Some(phase) {
                    row.bar = Bar::default();
                }
                row.phase = Some(phase);
                let bar = &mut row.bar;
                bar.started = true;
                bar.since.get_or_insert_with(std::time::Instant::now);
                bar.done = bytes_done;
                bar.total = bytes_total;
                bar.rate = rate;
            }
            Event::CardDone { error, .. } => {
                row.bar.finished = true;
                row.outcome = Some(error.map_or(Ok(()), Err));
            }
            // What customising did is the done screen's summary, not a note.
            Event::Customized(_) => {}
            event => {
                if let Some(sentence) = event.sentence() {
                    self.notes.push(format!("{}: {sentence}", path.display()));
                }
            }
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        let title = match self.kind {
            Kind::Write => t!("progress.title"),
            Kind::Read => t!("progress.reading"),
            Kind::Erase => t!("progress.erasing"),
        };
        let mut bars = column![].spacing(space::SCREEN);
        if self.cards.is_empty() {
            for (step, bar) in &self.steps {
                bars = bars.push(step_view(*step, bar));
            }
        }
        for card in &self.cards {
            bars = bars.push(card_view(card));
        }
        let mut col = widget::screen(title.into_owned()).push(
            container(bars)
                .padding(space::CARD)
                .width(Fill)
                .style(theme::panel),
        );
        for note in &self.notes {
            col = col.push(text(note.clone()).size(size::SMALL));
        }
        let cancel = if self.cancelling {
            t!("progress.cancelling")
        } else {
            t!("progress.cancel")
        };
        let leaves = match self.leaves {
            Leaves::Card => t!("progress.leaves_card"),
            Leaves::File => t!("progress.leaves_file"),
            Leaves::Backup => t!("progress.leaves_backup"),
            Leaves::Erase => t!("progress.leaves_erase"),
        };
        col.push(
            row![
                button(text(cancel))
                    .on_press_maybe(
                        (!self.cancelling && self.leaves != Leaves::Erase)
                            .then_some(Message::Cancel)
                    )
                    .style(button::danger),
                text(leaves).size(size::SMALL),
            ]
            .spacing(12)
            .align_y(Center),
        )
        .into()
    }
}

/// One step: its name, its bar, and how fast and how long when it is the current one.
fn step_view<'a>(step: Step, bar: &Bar) -> Element<'a, Message> {
    let name = match step {
        Step::Write => t!("progress.writing"),
        Step::Verify => t!("progress.verifying"),
        Step::Customise => t!("progress.customising"),
        Step::Read => t!("progress.reading"),
        Step::Erase => t!("progress.erasing"),
    };
    let fraction = if bar.finished {
        Some(1.0)
    } else {
        bar.total
            .filter(|&t| t > 0)
            .map(|t| bar.done as f32 / t as f32)
    };
    let status = if bar.finished {
        t!("progress.step_done").into_owned()
    } else if !bar.started {
        t!("progress.step_waiting").into_owned()
    } else {
        stats(bar, fraction)
    };
    let name = text(name).size(size::ITEM);
    column![
        row![name, widget::fill(), text(status).size(size::SMALL)].align_y(Center),
        progress_bar(0.0..=1.0, fraction.unwrap_or(0.0)).girth(10),
    ]
    .spacing(space::TIGHT)
    .into()
}

/// One card of several: its path and phase, its bar, how fast and how long, or how it
/// ended.
fn card_view(card: &CardRow) -> Element<'_, Message> {
    let name = match card.phase {
        Some(Phase::Verify) => format!("{} · {}", card.path.display(), t!("progress.verifying")),
        Some(_) => format!("{} · {}", card.path.display(), t!("progress.title")),
        None => card.path.display().to_string(),
    };
    let fraction = match &card.outcome {
        Some(_) => Some(1.0),
        None => card
            .bar
            .total
            .filter(|&t| t > 0)
            .map(|t| card.bar.done as f32 / t as f32),
    };
    let status = match &card.outcome {
        Some(Ok(())) => text(t!("progress.step_done").into_owned()),
        Some(Err(e)) => {
            text(t!("progress.card_failed", error = e).into_owned()).style(text::danger)
        }
        None if !card.bar.started => text(t!("progress.step_waiting").into_owned()),
        None => text(stats(&card.bar, fraction)),
    };
    column![
        row![
            text(name).size(size::ITEM),
            widget::fill(),
            status.size(size::SMALL)
        ]
        .align_y(Center),
        progress_bar(0.0..=1.0, fraction.unwrap_or(0.0)).girth(10),
    ]
    .spacing(space::TIGHT)
    .into()
}

/// "25% · 26.2 MB · 50.0 MB/s · 2 s left".
pub fn stats(bar: &Bar, fraction: Option<f32>) -> String {
    let mut stats = format!(
        "{} · {:.1} MB/s",
        cardsmith_drives::human_size(bar.done),
        bar.rate as f64 / 1e6
    );
    if let Some(frac) = fraction {
        stats = format!("{:.0}% · {stats}", frac * 100.0);
        if let Some(eta) = bar
            .total
            .filter(|_| bar.rate > 0)
            .map(|t| t.saturating_sub(bar.done) as f64 / bar.rate as f64)
        {
            stats += &format!(" · {}", t!("progress.eta", secs = eta.round() as u64));
        }
    }
    stats
}
