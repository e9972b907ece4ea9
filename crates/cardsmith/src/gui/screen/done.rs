//! How the job ended: what was written, verified and set (or why it failed and what the
//! card or file was left as), with "Write another card", Eject and Back to start.

use iced::widget::{button, column, container, text};
use iced::{Element, Fill, Task};
use rust_i18n::t;

use super::Action;
use crate::gui::context::{Context, Selection};
use crate::gui::theme::{self, size, space};
use crate::gui::widget;
use crate::gui::work::{Ended, Kind};
use crate::job::{Left, Report};

pub struct State {
    pub kind: Kind,
    pub ended: Ended,
    /// What the job said on the way.
    pub notes: Vec<String>,
    /// The Eject button was pressed: what came of it.
    pub ejected: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Another,
    Restart,
    Eject,
    Ejected(String),
}

pub enum Event {
    /// The next card: same OS and settings, the host name's counter one on.
    Another,
    Restart,
}

impl State {
    pub fn ok(&self) -> bool {
        self.ended.report.is_some()
    }

    pub fn update(&mut self, message: Message, sel: &Selection) -> Action<Message, Event> {
        match message {
            Message::Another => Action::Event(Event::Another),
            Message::Restart => Action::Event(Event::Restart),
            Message::Eject => {
                let Some(drive) = sel.drive().cloned() else {
                    return Action::None;
                };
                let (tx, rx) = iced::futures::channel::oneshot::channel();
                std::thread::spawn(move || {
                    let said = match cardsmith_drives::power_off(&drive) {
                        Ok(()) => t!("done.ejected").into_owned(),
                        Err(e) => e.to_string(),
                    };
                    let _ = tx.send(said);
                });
                Action::Run(Task::perform(rx, |r| {
                    Message::Ejected(r.unwrap_or_default())
                }))
            }
            Message::Ejected(text) => {
                self.ejected = Some(text);
                Action::None
            }
        }
    }

    pub fn view<'a>(&'a self, _ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let o = &self.ended;
        let title = match (self.ok(), o.cancelled, self.kind) {
            (true, _, _) => t!("done.ok"),
            (false, true, _) => t!("done.cancelled"),
            (false, false, Kind::Read) => t!("done.failed_read"),
            (false, false, Kind::Erase) => t!("done.failed_erase"),
            (false, false, Kind::Write) => t!("done.failed"),
        };
        let mut summary = column![text(o.text.clone())].spacing(space::TIGHT);
        if let Some(Report::Write(w)) = &o.report {
            if let Some(s) = &w.settings {
                summary = summary.push(
                    text(t!(
                        "done.settings",
                        format = s.init_format,
                        files = s.files.join(", ")
                    ))
                    .size(size::BODY),
                );
                if let Some(h) = &s.hostname {
                    summary = summary.push(text(t!("confirm.hostname", name = h)).size(size::BODY));
                }
                for effect in &s.effects {
                    summary =
                        summary.push(text(format!("• {}", effect.describe())).size(size::SMALL));
                }
            }
        }
        if let Some(left) = o.left {
            summary = summary.push(text(left_text(left)));
        }
        let mut col = widget::screen(title.into_owned()).push(
            container(summary)
                .padding(space::CARD)
                .width(Fill)
                .style(theme::panel),
        );
        for note in self.notes.iter().chain(&self.ejected) {
            col = col.push(text(note.clone()).size(size::SMALL));
        }
        let mut buttons: Vec<Element<'a, Message>> = Vec::new();
        if self.ok() && self.kind == Kind::Write {
            buttons.push(
                button(text(t!("done.another")))
                    .on_press(Message::Another)
                    .style(button::primary)
                    .into(),
            );
        }
        buttons.push(
            button(text(t!("done.again")))
                .on_press(Message::Restart)
                .style(button::secondary)
                .into(),
        );
        let ejected_already = matches!(&o.report, Some(Report::Write(w)) if w.ejected == Some(true))
            || matches!(&o.report, Some(Report::Erase(e)) if e.ejected == Some(true));
        if self.ok() && sel.drive().is_some() && self.kind != Kind::Read && !ejected_already {
            buttons.push(
                button(text(t!("done.eject")))
                    .on_press(Message::Eject)
                    .style(button::secondary)
                    .into(),
            );
        }
        col.push(widget::buttons(buttons)).into()
    }
}

/// What a job that did not succeed left behind.
pub fn left_text(left: Left) -> String {
    match left {
        Left::Untouched => t!("done.left_untouched"),
        Left::Zeroed => t!("done.left_zeroed"),
        Left::FileRemoved => t!("done.left_file_removed"),
        Left::FileEmptied => t!("done.left_file_emptied"),
        Left::PartlyWritten => t!("done.left_partly_written"),
        // The window's writes put settings on as part of the job: either way they may be
        // missing or incomplete.
        Left::WithoutSettings | Left::PartlyCustomised => t!("done.left_without_settings"),
        Left::NothingKept => t!("done.left_nothing_kept"),
    }
    .into_owned()
}

/// A job that ended without a result (a panic): what may have become of the card.
pub fn crashed(kind: Kind) -> String {
    match kind {
        Kind::Read => t!("done.crashed_read"),
        Kind::Erase => t!("done.crashed_erase"),
        Kind::Write => t!("done.crashed"),
    }
    .into_owned()
}
