//! Choose the Raspberry Pi model: the catalog's devices as cards with their icons; the OS
//! list then shows only what that model runs.

use iced::widget::{column, text};
use iced::Element;
use rust_i18n::t;

use super::Action;
use crate::gui::context::{Context, Selection};
use crate::gui::theme::space;
use crate::gui::widget::{self, Item};

#[derive(Debug, Clone)]
pub enum Message {
    Pick(String),
    Back,
}

pub enum Event {
    /// The device was chosen (or the user went back).
    Done,
}

pub fn update(message: Message, sel: &mut Selection) -> Action<Message, Event> {
    if let Message::Pick(name) = message {
        sel.device = Some(name);
    }
    Action::Event(Event::Done)
}

pub fn view<'a>(ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
    let mut list = column![].spacing(space::LIST);
    match ctx.loaded() {
        Some(loaded) => {
            for d in loaded.catalog.devices() {
                let item = Item {
                    icon: Some(widget::icon(ctx.icon(d.icon.as_deref()), &d.name)),
                    description: d.description.clone(),
                    chosen: sel.device.as_ref() == Some(&d.name),
                    ..Item::new(d.name.clone())
                };
                list = list.push(item.view(Some(Message::Pick(d.name.clone()))));
            }
        }
        None => list = list.push(text(t!("start.catalog_loading"))),
    }
    widget::screen(t!("device.title").into_owned())
        .push(list)
        .push(widget::back(Message::Back))
        .into()
}
