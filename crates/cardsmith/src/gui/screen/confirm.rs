//! The confirmation: what is written where, that everything on it is erased, its
//! warnings, whether settings are applied, and, for a system or internal drive, its name
//! typed before WRITE can be pressed.

use iced::widget::{button, text, text_input};
use iced::Element;
use rust_i18n::t;

use super::Action;
use crate::gui::context::{Context, OsChoice, Selection, StorageChoice};
use crate::gui::theme::{size, space};
use crate::gui::widget;

#[derive(Debug, Clone, Default)]
pub struct State {
    pub typed_name: String,
}

#[derive(Debug, Clone)]
pub enum Message {
    TypedName(String),
    Write,
    Back,
}

pub enum Event {
    /// Confirmed: the drive's name typed when it had to be.
    Write {
        name_typed: bool,
    },
    Back,
}

impl State {
    /// Whether WRITE may be pressed: the name typed, when it must be.
    pub fn confirmed(&self, sel: &Selection) -> bool {
        match sel.must_type_name() {
            Some(name) => {
                let typed = self.typed_name.trim();
                typed == name || typed.strip_prefix("/dev/") == Some(name)
            }
            None => true,
        }
    }

    pub fn update(&mut self, message: Message, sel: &Selection) -> Action<Message, Event> {
        match message {
            Message::TypedName(s) => {
                self.typed_name = s;
                Action::None
            }
            Message::Write => Action::event(self.confirmed(sel).then_some(Event::Write {
                name_typed: sel.must_type_name().is_some(),
            })),
            Message::Back => Action::Event(Event::Back),
        }
    }

    pub fn view<'a>(&'a self, _ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let what = match &sel.os {
            Some(OsChoice::Catalog { entry, .. }) => entry.name.clone(),
            Some(OsChoice::Custom(p)) => p.display().to_string(),
            Some(OsChoice::Erase) | None => String::new(),
        };
        let drive_line = |d: &cardsmith_drives::Drive| {
            t!(
                "confirm.drive",
                model = d.description(),
                size = d.size_human,
                path = d.path.display()
            )
            .into_owned()
        };
        let mut col = widget::screen(t!("confirm.title").into_owned()).push(text(
            if sel.os == Some(OsChoice::Erase) {
                t!("confirm.erase").into_owned()
            } else {
                t!("confirm.question", os = what).into_owned()
            },
        ));
        match &sel.storage {
            Some(StorageChoice::Drives(drives)) if drives.len() > 1 => {
                col = col.push(text(t!("confirm.cards", count = drives.len())).size(18));
                for (n, d) in drives.iter().enumerate() {
                    let mut line = format!("• {}", drive_line(d));
                    if let Some(h) = sel.hostname_for(n) {
                        line += &format!(" — {}", t!("confirm.hostname", name = h));
                    }
                    col = col.push(text(line).size(size::BODY));
                }
            }
            Some(StorageChoice::Drives(drives)) => {
                if let Some(d) = drives.first() {
                    col = col.push(text(drive_line(d)).size(18));
                }
            }
            Some(StorageChoice::File(p)) => {
                col = col.push(text(t!("confirm.file", path = p.display())).size(18));
            }
            None => {}
        }
        col = col.push(text(t!("confirm.erased")));
        for d in sel.drives() {
            for warning in &d.warnings {
                col = col.push(text(widget::drive_warning(warning)).style(text::danger));
            }
        }
        if sel.apply_settings {
            col = col.push(text(t!("confirm.with_settings")));
            let hostname = sel.hostname_for(0).filter(|_| sel.drives().len() < 2);
            if let Some(h) = hostname {
                col = col.push(text(t!("confirm.hostname", name = h)).size(size::BODY));
            }
        }
        if let Some(name) = sel.must_type_name() {
            col = col
                .push(text(t!("confirm.type_name", name = name)).style(text::danger))
                .push(
                    text_input(name, &self.typed_name)
                        .id("typed-name")
                        .on_input(Message::TypedName)
                        .on_submit(Message::Write)
                        .padding(space::FIELD),
                );
        }
        col.push(widget::buttons([
            button(text(t!("confirm.write")))
                .on_press_maybe(self.confirmed(sel).then_some(Message::Write))
                .style(button::danger)
                .into(),
            widget::back(Message::Back),
        ]))
        .into()
    }
}
