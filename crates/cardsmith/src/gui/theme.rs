//! How the wizard looks: sizes, spacing and the styles of its cards and buttons, in one
//! place, so views read as layout. Colours come from the theme's palette, so light and
//! dark (following the system) both work.

use iced::widget::{button, container};
use iced::{border, Background, Border, Color, Shadow, Theme};

/// Text sizes.
pub mod size {
    /// A screen's title.
    pub const TITLE: u32 = 24;
    /// The app's name on the start screen.
    pub const APP: u32 = 28;
    /// A list item's name, a phase.
    pub const ITEM: u32 = 16;
    /// Body text.
    pub const BODY: u32 = 14;
    /// A list item's description, notes.
    pub const SMALL: u32 = 12;
    /// Release date, download size.
    pub const META: u32 = 11;
}

/// Space between things.
pub mod space {
    /// Between the parts of a screen.
    pub const SCREEN: u32 = 16;
    /// Between list items.
    pub const LIST: u32 = 8;
    /// Between a label and its control, the lines of an item.
    pub const TIGHT: u32 = 4;
    /// Around a screen.
    pub const PADDING: u16 = 20;
    /// Inside a card.
    pub const CARD: u16 = 12;
    /// Inside a text field.
    pub const FIELD: u16 = 8;
    /// Kept free for the scroll bar, right of a screen.
    pub const SCROLLBAR: f32 = 16.0;
}

/// A catalog icon's side.
pub const ICON: u32 = 40;
/// The width of the start screen's three choices.
pub const CHOICE_WIDTH: u32 = 260;

/// A list entry (device, OS, drive): a card that lights up under the pointer.
pub fn card(theme: &Theme, status: button::Status) -> button::Style {
    let palette = theme.extended_palette();
    let (background, edge) = match status {
        button::Status::Hovered | button::Status::Pressed => {
            (palette.primary.weak.color, palette.primary.strong.color)
        }
        button::Status::Disabled => (palette.background.weak.color, palette.background.weak.color),
        button::Status::Active => (
            palette.background.base.color,
            palette.background.strong.color,
        ),
    };
    let text_color = match status {
        button::Status::Hovered | button::Status::Pressed => palette.primary.weak.text,
        button::Status::Disabled => palette.background.strong.color,
        button::Status::Active => palette.background.base.text,
    };
    button::Style {
        background: Some(Background::Color(background)),
        text_color,
        border: Border {
            color: edge,
            width: 1.0,
            radius: border::radius(8),
        },
        shadow: Shadow::default(),
        snap: true,
    }
}

/// The chosen entry of a list: marked by the primary colour.
pub fn chosen_card(theme: &Theme, status: button::Status) -> button::Style {
    let palette = theme.extended_palette();
    button::Style {
        border: Border {
            color: palette.primary.base.color,
            width: 2.0,
            radius: border::radius(8),
        },
        ..card(theme, status)
    }
}

/// A quiet box around a group (the progress phases, the done summary).
pub fn panel(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style {
        background: Some(Background::Color(palette.background.weak.color)),
        border: Border {
            color: palette.background.strong.color,
            width: 1.0,
            radius: border::radius(8),
        },
        ..container::Style::default()
    }
}

/// The placeholder drawn where a catalog icon is not (yet) there: a rounded tile with
/// the entry's initial, so it reads as a designed icon rather than a broken image.
pub fn tile(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style {
        background: Some(Background::Color(palette.secondary.weak.color)),
        text_color: Some(palette.secondary.weak.text),
        border: Border {
            color: Color::TRANSPARENT,
            width: 0.0,
            radius: border::radius(10),
        },
        ..container::Style::default()
    }
}
