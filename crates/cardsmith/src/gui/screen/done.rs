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
                let drives = sel.drives().to_vec();
                if drives.is_empty() {
                    return Action::None;
                }
                let (tx, rx) = iced::futures::channel::oneshot::channel();
                std::thread::spawn(move || {
                    let said: Vec<String> = drives
                        .iter()
                        .map(|drive| match cardsmith_drives::power_off(drive) {
                            Ok(()) => t!("done.ejected").into_owned(),
                            Err(e) => e.to_string(),
                        })
                        .collect();
                    let _ = tx.send(said.join("\n"));
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
        let cards = match &o.report {
            Some(Report::Cards(cards)) => Some(cards),
            _ => None,
        };
        let title = match (self.ok(), o.cancelled, self.kind) {
            (true, _, _) if cards.is_some_and(|c| c.failed > 0) => t!(
                "done.some_failed",
                failed = cards.map_or(0, |c| c.failed),
                count = cards.map_or(0, |c| c.cards.len())
            ),
            (true, _, _) => t!("done.ok"),
            (false, true, _) => t!("done.cancelled"),
            (false, false, Kind::Read) => t!("done.failed_read"),
            (false, false, Kind::Erase) => t!("done.failed_erase"),
            (false, false, Kind::Write) => t!("done.failed"),
        };
        // Over several cards, the first line says how many; each card has its line below.
        let said = match cards {
            Some(_) => o.text.lines().next().unwrap_or_default().to_owned(),
            None => o.text.clone(),
        };
        let mut summary = column![text(said)].spacing(space::TIGHT);
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
        for card in cards.iter().flat_map(|c| &c.cards) {
            let mut line = format!("• {}", card.target.display());
            if let Some(h) = &card.hostname {
                line += &format!(" — {h}");
            }
            let (said, failed) = match &card.error {
                None => (t!("progress.step_done").into_owned(), false),
                Some(e) => (t!("done.card_failed", error = e).into_owned(), true),
            };
            line += &format!(" — {said}");
            let row = text(line).size(size::BODY);
            summary = summary.push(if failed { row.style(text::danger) } else { row });
            if let Some(left) = card.left {
                summary = summary.push(text(left_text(left)).size(size::SMALL));
            }
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
            let another = match sel.drives().len() {
                0 | 1 => t!("done.another"),
                _ => t!("done.another_set"),
            };
            buttons.push(
                button(text(another))
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
            || matches!(&o.report, Some(Report::Erase(e)) if e.ejected == Some(true))
            || cards.is_some_and(|c| {
                c.cards
                    .iter()
                    .all(|card| card.report.as_ref().and_then(|r| r.ejected) == Some(true))
            });
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
