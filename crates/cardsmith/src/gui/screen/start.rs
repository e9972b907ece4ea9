//! The start: the three choices (device, OS, storage), NEXT, READ A CARD, Options, and
//! which catalog is shown (offline in one friendly line, the reason behind Details).

use iced::widget::{button, checkbox, column, row, text};
use iced::{Center, Element, Fill};
use rust_i18n::t;

use super::{Action, Page};
use crate::gui::context::{CatalogState, Context, OsChoice, Selection, StorageChoice};
use crate::gui::theme::{self, size};
use crate::gui::widget;
use cardsmith_catalog::Origin;

#[derive(Debug, Clone, Default)]
pub struct State {
    /// The catalog's full description (why it is offline) is shown.
    pub details: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    Go(Page),
    Next,
    Details(bool),
}

pub enum Event {
    Go(Page),
    /// Device, OS and storage are chosen: on to the settings (or, erasing, to confirm).
    Next,
}

impl State {
    pub fn update(&mut self, message: Message, sel: &Selection) -> Action<Message, Event> {
        match message {
            Message::Go(page) => Action::Event(Event::Go(page)),
            Message::Next => Action::event(sel.ready().then_some(Event::Next)),
            Message::Details(on) => {
                self.details = on;
                Action::None
            }
        }
    }

    pub fn view<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let device = sel
            .device
            .clone()
            .unwrap_or_else(|| t!("start.choose_device").into_owned());
        let os = match &sel.os {
            Some(OsChoice::Catalog { entry, .. }) => entry.name.clone(),
            Some(OsChoice::Custom(p)) => p.display().to_string(),
            Some(OsChoice::Erase) => t!("os.erase").into_owned(),
            None => t!("start.choose_os").into_owned(),
        };
        let storage = match &sel.storage {
            Some(StorageChoice::Drives(d)) => match d.as_slice() {
                [one] => format!("{} ({})", one.description(), one.size_human),
                set => t!(
                    "start.cards",
                    count = set.len(),
                    names = set
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into_owned(),
            },
            Some(StorageChoice::File(p)) => p.display().to_string(),
            None => t!("start.choose_storage").into_owned(),
        };
        let choice = |label: String, caption: String, page| {
            column![
                text(caption).size(size::BODY),
                button(text(label))
                    .on_press(Message::Go(page))
                    .width(theme::CHOICE_WIDTH),
            ]
            .spacing(theme::space::TIGHT)
            .align_x(Center)
        };
        let (catalog_line, details) = catalog_line(&ctx.catalog);
        let mut catalog = row![text(catalog_line).size(size::SMALL)]
            .spacing(8)
            .align_y(Center);
        if details.is_some() {
            catalog = catalog.push(
                checkbox(self.details)
                    .label(t!("start.details"))
                    .size(14)
                    .text_size(size::SMALL)
                    .on_toggle(Message::Details),
            );
        }
        let details = details.filter(|_| self.details).unwrap_or_default();
        column![
            row![
                text(t!("app.title")).size(size::APP),
                widget::fill(),
                button(text(t!("options.title")))
                    .on_press(Message::Go(Page::Options))
                    .style(button::secondary),
            ]
            .align_y(Center),
            text(t!("start.intro")),
            row![
                choice(device, t!("start.device").into_owned(), Page::Device),
                choice(os, t!("start.os").into_owned(), Page::Os),
                choice(storage, t!("start.storage").into_owned(), Page::Storage),
            ]
            .spacing(theme::space::SCREEN),
            row![
                button(text(t!("start.next")))
                    .on_press_maybe(sel.ready().then_some(Message::Next))
                    .style(button::primary)
                    .width(160),
                button(text(t!("start.read_card")))
                    .on_press(Message::Go(Page::Read))
                    .style(button::secondary),
            ]
            .spacing(theme::space::SCREEN),
            catalog,
            text(details).size(size::SMALL),
        ]
        .spacing(18)
        .align_x(Center)
        .width(Fill)
        .into()
    }
}

/// Which catalog is shown, in one line; the details (a DNS error…) when offline.
fn catalog_line(catalog: &CatalogState) -> (String, Option<String>) {
    match catalog {
        CatalogState::Loading => (t!("start.catalog_loading").into_owned(), None),
        CatalogState::Ready(l) => match &l.origin {
            Origin::Cached { fetched_at, .. } => (
                t!(
                    "start.offline_cached",
                    date = cardsmith_catalog::utc(*fetched_at)
                )
                .into_owned(),
                Some(l.describe()),
            ),
            Origin::Bundled { .. } => (t!("start.offline_sample").into_owned(), Some(l.describe())),
            _ => (l.describe(), None),
        },
        CatalogState::Failed(e) => (
            t!("start.catalog_unavailable").into_owned(),
            Some(t!("start.catalog_failed", error = e).into_owned()),
        ),
    }
}
