//! Running a job for the window: on a worker thread, its events forwarded as messages, its
//! questions answered only for the drive the user confirmed in the window.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use cardsmith_drives::Identity;
use cardsmith_engine::{CancelToken, Progress};
use iced::futures::channel::mpsc;

use crate::job::{self, Ask, EraseJob, Event, Left, Needed, ReadJob, Report, Sink, WriteJob};

/// What the window runs.
#[derive(Debug, Clone)]
pub enum Job {
    Write(Box<WriteJob>),
    Read(ReadJob),
    Erase(EraseJob),
}

/// What kind of job ran last (the done screen words its result by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Write,
    Read,
    Erase,
}

impl Job {
    pub fn kind(&self) -> Kind {
        match self {
            Job::Write(_) => Kind::Write,
            Job::Read(_) => Kind::Read,
            Job::Erase(_) => Kind::Erase,
        }
    }

    fn run(self, cancel: &CancelToken, sink: &mut dyn Sink) -> Result<Report, job::Error> {
        match self {
            Job::Write(j) => j.run(cancel, sink),
            Job::Read(j) => j.run(cancel, sink),
            Job::Erase(j) => j.run(cancel, sink),
        }
    }
}

/// How a job ended, as the window keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The report, when it succeeded.
    pub report: Option<Report>,
    /// The report's summary, or the error.
    pub text: String,
    pub cancelled: bool,
    /// What a job that did not succeed left its target as.
    pub left: Option<Left>,
}

impl Ended {
    fn from(outcome: Result<Report, job::Error>) -> Ended {
        match outcome {
            Ok(report) => Ended {
                text: report.summary(),
                report: Some(report),
                cancelled: false,
                left: None,
            },
            Err(e) => Ended {
                report: None,
                text: e.to_string(),
                cancelled: e.is_cancelled(),
                left: Some(e.left),
            },
        }
    }

    /// A job whose thread died without a result (a panic): what it may have left is not
    /// known, so the window says the worst.
    pub fn crashed(text: String) -> Ended {
        Ended {
            report: None,
            text,
            cancelled: false,
            left: Some(Left::PartlyWritten),
        }
    }
}

/// What the worker tells the window.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Event(Event),
    /// Something happened to card `card` (at this path) of several written at once.
    Card(usize, std::path::PathBuf, Event),
    Ended(Box<Ended>),
}

/// The window's sink: events go to the window (progress at most four times a second);
/// a question is answered yes only for the drive the user confirmed, and a drive's name
/// only when the window had it typed.
pub struct WindowSink {
    tx: Sender<Update>,
    confirmed: Vec<Identity>,
    name_typed: bool,
    last_progress: Option<(Progress, Instant)>,
    /// Each card's last progress sent, for a job over several cards.
    cards: Vec<Option<(Progress, Instant)>>,
}

/// How often progress reaches the window.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl WindowSink {
    pub fn new(tx: Sender<Update>, confirmed: Vec<Identity>, name_typed: bool) -> WindowSink {
        WindowSink {
            tx,
            confirmed,
            name_typed,
            last_progress: None,
            cards: Vec::new(),
        }
    }
}

impl Sink for WindowSink {
    fn event(&mut self, event: Event) {
        if due(&mut self.last_progress, &event) {
            let _ = self.tx.send(Update::Event(event));
        }
    }

    fn consent(&mut self, ask: &Ask) -> Result<(), String> {
        let same = !ask.drives.is_empty() && ask.drives.iter().all(|d| self.confirmed.contains(d));
        match ask.needed {
            _ if !same => Err(format!(
                "{}\nThis is not the drive confirmed in the window; nothing was changed: choose \
                 the drive again",
                ask.question
            )),
            Needed::Name if !self.name_typed => Err(format!(
                "{}\nThe window did not ask for the drive's name; choose the drive again",
                ask.question
            )),
            _ => Ok(()),
        }
    }

    fn card_event(&mut self, card: usize, target: &std::path::Path, event: Event) {
        if self.cards.len() <= card {
            self.cards.resize(card + 1, None);
        }
        if due(&mut self.cards[card], &event) {
            let _ = self.tx.send(Update::Card(card, target.to_owned(), event));
        }
    }

    fn news(&self) -> cardsmith_catalog::Say {
        let tx = std::sync::Mutex::new(self.tx.clone());
        std::sync::Arc::new(move |text: &str| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(Update::Event(Event::note(text)));
            }
        })
    }
}

/// Whether `event` goes to the window now: anything but progress does; progress at most
/// four times a second, and always when its phase changes or ends. `last` is the progress
/// sent last (of the job, or of one card).
fn due(last: &mut Option<(Progress, Instant)>, event: &Event) -> bool {
    let Event::Progress {
        phase,
        bytes_done,
        bytes_total,
        ..
    } = event
    else {
        return true;
    };
    let now = Instant::now();
    let due = match last {
        None => true,
        Some((was, at)) => {
            was.phase != *phase
                || *bytes_total == Some(*bytes_done)
                || now.duration_since(*at) >= PROGRESS_EVERY
        }
    };
    if due {
        *last = Some((
            Progress {
                phase: *phase,
                bytes_done: *bytes_done,
                bytes_total: *bytes_total,
            },
            now,
        ));
    }
    due
}

/// Runs `job` on a worker thread; its updates arrive as a stream. A job that ends without
/// a result (a panic) still ends with [`Ended::crashed`] and `crashed`'s words.
pub fn spawn(
    job: Job,
    cancel: CancelToken,
    confirmed: Vec<Identity>,
    name_typed: bool,
    crashed: String,
) -> mpsc::UnboundedReceiver<Update> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = WindowSink::new(tx.clone(), confirmed, name_typed);
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&cancel, &mut sink)));
        if let Ok(outcome) = ran {
            let _ = tx.send(Update::Ended(Box::new(Ended::from(outcome))));
        }
    });
    let (forward, updates) = mpsc::unbounded();
    std::thread::spawn(move || {
        let mut ended = false;
        while let Ok(update) = rx.recv() {
            ended |= matches!(update, Update::Ended(_));
            if forward.unbounded_send(update).is_err() {
                return;
            }
        }
        if !ended {
            let _ = forward.unbounded_send(Update::Ended(Box::new(Ended::crashed(crashed))));
        }
    });
    updates
}
