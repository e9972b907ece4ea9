//! Options, set once rather than on every run: the language, verify, eject, the download
//! cache's folder, and clearing it.

use std::path::PathBuf;

use iced::widget::{button, checkbox, pick_list, row, text, text_input};
use iced::{Center, Element};
use rust_i18n::t;

use super::Action;
use crate::gui::context::Context;
use crate::gui::theme::{size, space};
use crate::gui::widget;

/// A language the wizard speaks: its code and its name in itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language(pub &'static str, pub &'static str);

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }
}

pub fn languages() -> Vec<Language> {
    crate::gui::LANGUAGES
        .iter()
        .map(|(c, n)| Language(c, n))
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct State {
    /// The cache folder as typed.
    pub cache_dir: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Language(Language),
    Verify(bool),
    Eject(bool),
    CacheDir(String),
    UseCacheDir,
    ClearCache,
    Back,
}

pub enum Event {
    Back,
}

impl State {
    /// The options as they are now.
    pub fn new(ctx: &Context) -> State {
        State {
            cache_dir: ctx
                .cache()
                .map(|c| c.dir().display().to_string())
                .unwrap_or_default(),
            note: None,
        }
    }

    pub fn update(&mut self, message: Message, ctx: &mut Context) -> Action<Message, Event> {
        match message {
            Message::Language(Language(code, _)) => {
                rust_i18n::set_locale(code);
                ctx.language = code.to_owned();
            }
            Message::Verify(on) => ctx.verify = on,
            Message::Eject(on) => ctx.eject = on,
            Message::CacheDir(dir) => self.cache_dir = dir,
            Message::UseCacheDir => {
                // Every job from now on is given this folder.
                let dir = self.cache_dir.trim();
                ctx.cache_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
                self.note = Some(t!("options.cache_set", dir = dir).into_owned());
            }
            Message::ClearCache => {
                self.note = Some(match ctx.cache().and_then(|c| c.clear()) {
                    Ok((files, _)) => t!("options.cleared", n = files).into_owned(),
                    Err(e) => e.to_string(),
                });
            }
            Message::Back => return Action::Event(Event::Back),
        }
        Action::None
    }

    pub fn view<'a>(&'a self, ctx: &'a Context) -> Element<'a, Message> {
        let current = languages().into_iter().find(|l| l.0 == ctx.language);
        widget::screen(t!("options.title").into_owned())
            .push(
                row![
                    text(t!("options.language")),
                    pick_list(languages(), current, Message::Language),
                ]
                .spacing(8)
                .align_y(Center),
            )
            .push(
                checkbox(ctx.verify)
                    .label(t!("options.verify"))
                    .on_toggle(Message::Verify),
            )
            .push(
                checkbox(ctx.eject)
                    .label(t!("options.eject"))
                    .on_toggle(Message::Eject),
            )
            .push(
                row![
                    text(t!("options.cache_dir")),
                    text_input("", &self.cache_dir)
                        .id("cache-dir")
                        .on_input(Message::CacheDir)
                        .on_submit(Message::UseCacheDir)
                        .padding(space::FIELD),
                    button(text(t!("options.use_cache_dir")))
                        .on_press(Message::UseCacheDir)
                        .style(button::secondary),
                ]
                .spacing(8)
                .align_y(Center),
            )
            .push(
                button(text(t!("options.clear_cache")))
                    .on_press(Message::ClearCache)
                    .style(button::secondary),
            )
            .push(text(self.note.clone().unwrap_or_default()).size(size::SMALL))
            .push(widget::back(Message::Back))
            .into()
    }
}
