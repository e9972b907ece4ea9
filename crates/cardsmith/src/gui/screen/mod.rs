//! The wizard's screens, one module each. A screen owns its state (kept in its [`Screen`]
//! variant), its `Message`s, an `update` that may change the shared [`Selection`] (and
//! the options in the [`Context`]) and hands an `Event` up to `app` when the wizard is to
//! move on, and a `view`. `app` only routes.
//!
//! [`Selection`]: super::context::Selection
//! [`Context`]: super::context::Context

pub mod confirm;
pub mod customize;
pub mod device;
pub mod done;
pub mod options;
pub mod os;
pub mod progress;
pub mod read;
pub mod start;
pub mod storage;

use iced::Task;

/// The screen shown, with its state.
pub enum Screen {
    Start(start::State),
    Device,
    Os(os::State),
    Storage(storage::State),
    /// "Use OS customisation?", and the settings editor.
    Customize(Box<customize::State>),
    Confirm(confirm::State),
    Progress(progress::State),
    Done(done::State),
    /// READ A CARD: back up a card into an image file.
    Read(read::State),
    /// Verify, eject, the download cache, the language.
    Options(options::State),
}

/// Which screen it is, for routing and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Start,
    Device,
    Os,
    Storage,
    Customize,
    Confirm,
    Progress,
    Done,
    Read,
    Options,
}

impl Screen {
    pub fn page(&self) -> Page {
        match self {
            Screen::Start(_) => Page::Start,
            Screen::Device => Page::Device,
            Screen::Os(_) => Page::Os,
            Screen::Storage(_) => Page::Storage,
            Screen::Customize(_) => Page::Customize,
            Screen::Confirm(_) => Page::Confirm,
            Screen::Progress(_) => Page::Progress,
            Screen::Done(_) => Page::Done,
            Screen::Read(_) => Page::Read,
            Screen::Options(_) => Page::Options,
        }
    }
}

/// What a screen's update asks of the app.
pub enum Action<M, E> {
    None,
    /// Work for the screen itself (a file dialog), answered with its own message.
    Run(Task<M>),
    /// Move the wizard on.
    Event(E),
}

impl<M, E> Action<M, E> {
    /// `Some(event)` as an action, nothing otherwise.
    pub fn event(event: Option<E>) -> Action<M, E> {
        event.map_or(Action::None, Action::Event)
    }
}

/// Asks the desktop for a file (through its portal) on a worker thread: one to open, or
/// one to create. Where there is none, the path field stays the way in.
pub fn browse<M: Send + 'static>(
    save: bool,
    answer: impl Fn(Option<std::path::PathBuf>) -> M + Send + 'static,
) -> Task<M> {
    let (tx, rx) = iced::futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let dialog = rfd::FileDialog::new();
        let picked = if save {
            dialog.save_file()
        } else {
            dialog.pick_file()
        };
        let _ = tx.send(picked);
    });
    Task::perform(rx, move |r| answer(r.ok().flatten()))
}
