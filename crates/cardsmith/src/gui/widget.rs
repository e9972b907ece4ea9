//! The wizard's building blocks: a screen's header, a list item card, a path row with its
//! Browse… button, a back button, a labelled form control. Generic over each screen's
//! message type.

use iced::widget::{button, column, container, image, row, rule, space, text, text_input, Column};
use iced::{Center, Element, Fill};
use rust_i18n::t;

use super::theme::{self, size, space as gap};

/// A screen's title over a rule.
pub fn header<'a, M: 'a>(title: String) -> Element<'a, M> {
    column![text(title).size(size::TITLE), rule::horizontal(1)]
        .spacing(8)
        .into()
}

/// A screen's column: its parts spaced alike.
pub fn screen<'a, M: 'a>(title: String) -> Column<'a, M> {
    column![header(title)].spacing(gap::SCREEN)
}

/// "Back".
pub fn back<'a, M: Clone + 'a>(message: M) -> Element<'a, M> {
    button(text(t!("nav.back")))
        .on_press(message)
        .style(button::secondary)
        .into()
}

/// A catalog icon, or a tile with the entry's initial while it loads (or offline).
pub fn icon<'a, M: 'a>(handle: Option<image::Handle>, name: &str) -> Element<'a, M> {
    match handle {
        Some(handle) => image(handle).width(theme::ICON).height(theme::ICON).into(),
        None => {
            let initial: String = name
                .chars()
                .find(|c| c.is_alphanumeric())
                .map(|c| c.to_uppercase().collect())
                .unwrap_or_default();
            tile(initial, 20)
        }
    }
}

/// A drive's tile: how it is attached (USB, SD, NVMe…).
pub fn drive_icon<'a, M: 'a>(bus: cardsmith_drives::Bus) -> Element<'a, M> {
    let label = match bus {
        cardsmith_drives::Bus::Mmc => "SD".to_owned(),
        cardsmith_drives::Bus::Virtual => "LOOP".to_owned(),
        cardsmith_drives::Bus::Unknown => "?".to_owned(),
        other => other.to_string().to_uppercase(),
    };
    tile(label, 12)
}

/// A rounded tile with a word on it, where an icon goes.
fn tile<'a, M: 'a>(word: String, size: u32) -> Element<'a, M> {
    container(text(word).size(size))
        .center(theme::ICON)
        .style(theme::tile)
        .into()
}

/// One entry of a list (a device, an OS, a drive): an optional icon, its name, a
/// description, a line of details and warnings, as a card to click (`None`: greyed out).
pub struct Item<'a, M> {
    pub icon: Option<Element<'a, M>>,
    pub title: String,
    pub description: Option<String>,
    pub meta: Vec<String>,
    pub warnings: Vec<String>,
    pub chosen: bool,
}

impl<'a, M: Clone + 'a> Item<'a, M> {
    /// An item with just a name.
    pub fn new(title: impl Into<String>) -> Item<'a, M> {
        Item {
            icon: None,
            title: title.into(),
            description: None,
            meta: Vec::new(),
            warnings: Vec::new(),
            chosen: false,
        }
    }

    /// The card, sending `on_press` when clicked.
    pub fn view(self, on_press: Option<M>) -> Element<'a, M> {
        let mut words = column![text(self.title).size(size::ITEM)].spacing(2);
        if let Some(d) = self.description.filter(|d| !d.is_empty()) {
            words = words.push(text(d).size(size::SMALL));
        }
        if !self.meta.is_empty() {
            words = words.push(text(self.meta.join(" · ")).size(size::META));
        }
        for w in self.warnings {
            words = words.push(text(w).size(size::SMALL).style(text::danger));
        }
        let mut line = row![].spacing(12).align_y(Center);
        if let Some(icon) = self.icon {
            line = line.push(icon);
        }
        line = line.push(words.width(Fill));
        button(line)
            .on_press_maybe(on_press)
            .width(Fill)
            .padding(gap::CARD)
            .style(if self.chosen {
                theme::chosen_card
            } else {
                theme::card
            })
            .into()
    }
}

/// A path field with its Browse… button and, when given, the button that takes the path
/// (also pressed by Enter in the field).
pub fn path_row<'a, M: Clone + 'a>(
    placeholder: &str,
    value: &str,
    id: &'static str,
    on_input: impl Fn(String) -> M + 'a,
    browse: M,
    take: Option<(String, M)>,
) -> Element<'a, M> {
    let mut input = text_input(placeholder, value)
        .id(id)
        .on_input(on_input)
        .padding(gap::FIELD);
    if let Some((_, message)) = &take {
        input = input.on_submit(message.clone());
    }
    let mut line = row![
        input,
        button(text(t!("nav.browse")))
            .on_press(browse)
            .style(button::secondary),
    ]
    .spacing(8);
    if let Some((label, message)) = take {
        line = line.push(button(text(label)).on_press(message));
    }
    line.into()
}

/// A form control under its label, with why the image cannot take it (when it cannot)
/// and what is wrong with its value (when something is).
pub fn labelled<'a, M: 'a>(
    label: String,
    control: Element<'a, M>,
    refused: Option<&str>,
    error: Option<&str>,
) -> Element<'a, M> {
    let mut col = column![text(label).size(13), control].spacing(gap::TIGHT);
    if let Some(why) = refused {
        col = col.push(
            text(t!("inspect.refused", why = why))
                .size(size::SMALL)
                .style(text::secondary),
        );
    }
    if let Some(error) = error {
        col = col.push(text(error.to_owned()).size(size::SMALL).style(text::danger));
    }
    col.into()
}

/// A row of buttons, spaced alike; `space::horizontal` pushes later ones right.
pub fn buttons<'a, M: 'a>(items: impl IntoIterator<Item = Element<'a, M>>) -> Element<'a, M> {
    let mut line = row![].spacing(12).align_y(Center);
    for item in items {
        line = line.push(item);
    }
    line.into()
}

/// Pushes what follows to the right of a row.
pub fn fill<'a, M: 'a>() -> Element<'a, M> {
    space::horizontal().into()
}

/// A drive warning in the window's language.
pub fn drive_warning(warning: &cardsmith_drives::Warning) -> String {
    match warning {
        cardsmith_drives::Warning::Large { size } => {
            t!("drive.large", size = cardsmith_drives::human_size(*size)).into_owned()
        }
    }
}
