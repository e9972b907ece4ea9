//! Choose storage: the drives that may be written, as cards (model, size, path, why one is
//! greyed out, warnings), system drives behind a toggle, or an image file to write into.
//! A file path that is (or leads to) a block device is refused, and the drive list offered.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use cardsmith_drives::{DevNum, Drive};
use iced::widget::{button, checkbox, column, row, rule, text, toggler};
use iced::{Center, Element, Task};
use rust_i18n::t;

use super::Action;
use crate::gui::context::{Context, Selection, StorageChoice};
use crate::gui::theme::{size, space};
use crate::gui::widget::{self, Item};

#[derive(Debug, Clone, Default)]
pub struct State {
    pub show_system: bool,
    /// The cards ticked to be written at once, by kernel name, in the order ticked.
    pub checked: Vec<String>,
    pub file_path: String,
    /// The file path given was a drive: why it was not taken, and what to do instead.
    pub file_is_drive: Option<FileIsDrive>,
}

/// "Save to image file…" was given a path that is (or leads to) a block device.
#[derive(Debug, Clone, PartialEq)]
pub struct FileIsDrive {
    pub path: PathBuf,
    /// What the drive list can do with it.
    pub drive: DriveOffer,
}

/// Whether the device behind a refused file path can be chosen as a drive instead.
#[derive(Debug, Clone, PartialEq)]
pub enum DriveOffer {
    /// The drive list has it and it may be written: its kernel name and description.
    Choose { name: String, label: String },
    /// The drive list has it, but it may not be written, for this reason.
    Forbidden(String),
    /// Not a drive the list shows (a partition of no listed drive, a dm volume…).
    Unlisted,
}

#[derive(Debug, Clone)]
pub enum Message {
    Pick(String),
    /// A card ticked (or not) for a set written at once.
    Check(String, bool),
    /// Write to the ticked cards.
    UseChecked,
    ShowSystem(bool),
    FilePath(String),
    UseFile,
    Browse,
    Browsed(Option<PathBuf>),
    Back,
}

pub enum Event {
    /// A drive or a file was chosen (or the user went back).
    Done,
}

impl State {
    /// The list as it opens: with the system drives shown when the chosen drive is one.
    pub fn new(sel: &Selection) -> State {
        let drives = sel.drives();
        State {
            show_system: sel.drive().is_some_and(|d| !d.offered),
            checked: match drives.len() {
                0 | 1 => Vec::new(),
                _ => drives.iter().map(|d| d.name.clone()).collect(),
            },
            ..State::default()
        }
    }

    pub fn update(
        &mut self,
        message: Message,
        ctx: &Context,
        sel: &mut Selection,
    ) -> Action<Message, Event> {
        match message {
            Message::Pick(name) => {
                if let Some(d) = ctx.drives.iter().find(|d| d.name == name) {
                    sel.storage = Some(StorageChoice::Drives(vec![d.clone()]));
                    return Action::Event(Event::Done);
                }
            }
            Message::Check(name, on) => {
                self.checked.retain(|n| *n != name);
                if on {
                    self.checked.push(name);
                }
            }
            Message::UseChecked => {
                let set: Vec<Drive> = self
                    .checked
                    .iter()
                    .filter_map(|name| ctx.drives.iter().find(|d| d.name == *name))
                    .filter(|d| settable(d, sel))
                    .cloned()
                    .collect();
                if !set.is_empty() {
                    sel.storage = Some(StorageChoice::Drives(set));
                    return Action::Event(Event::Done);
                }
            }
            Message::ShowSystem(on) => self.show_system = on,
            Message::FilePath(p) => {
                self.file_path = p;
                self.file_is_drive = None;
            }
            Message::UseFile => return self.use_file(ctx, sel),
            Message::Browse => return Action::Run(super::browse(true, Message::Browsed)),
            Message::Browsed(Some(path)) => {
                self.file_path = path.display().to_string();
                self.file_is_drive = None;
            }
            Message::Browsed(None) => {}
            Message::Back => return Action::Event(Event::Done),
        }
        Action::Run(Task::none())
    }

    /// "Use this file": takes the path as the image file to write, unless it is (or leads
    /// to) a block device, which is only ever written as a drive, chosen in the list.
    fn use_file(&mut self, ctx: &Context, sel: &mut Selection) -> Action<Message, Event> {
        let text = self.file_path.trim();
        if text.is_empty() {
            return Action::None;
        }
        let path = PathBuf::from(text);
        let device = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|m| DevNum::from_raw(m.rdev()));
        match device {
            Some(dev) => {
                let drive = offer(ctx, sel, dev);
                self.file_is_drive = Some(FileIsDrive { path, drive });
                Action::None
            }
            None => {
                self.file_is_drive = None;
                sel.storage = Some(StorageChoice::File(path));
                Action::Event(Event::Done)
            }
        }
    }

    /// The drives the list shows: offered ones, and with the toggle the others that may be
    /// written (system drives need their name typed later).
    pub fn drives<'a>(&self, ctx: &'a Context) -> Vec<&'a Drive> {
        ctx.drives
            .iter()
            .filter(|d| d.offered || (self.show_system && d.check_writable(true).is_ok()))
            .collect()
    }

    pub fn view<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let mut list = column![].spacing(space::LIST);
        let drives = self.drives(ctx);
        // Tick boxes only where there is a set to make: two cards or more to choose from.
        let sets = drives.iter().filter(|d| settable(d, sel)).count() > 1;
        if drives.is_empty() {
            list = list.push(text(t!("storage.none")));
        }
        for d in drives {
            let small = sel.too_small(d);
            let mut meta = vec![d.path.display().to_string()];
            meta.extend(d.not_offered.iter().map(|r| r.to_string()));
            if let Some(size) = small {
                meta.push(
                    t!(
                        "storage.too_small",
                        size = cardsmith_drives::human_size(size)
                    )
                    .into_owned(),
                );
            }
            let item = Item {
                icon: Some(widget::drive_icon(d.bus)),
                meta,
                warnings: d.warnings.iter().map(widget::drive_warning).collect(),
                chosen: sel.drives().iter().any(|c| c.name == d.name),
                ..Item::new(format!("{} — {}", d.description(), d.size_human))
            };
            let card = item.view(small.is_none().then(|| Message::Pick(d.name.clone())));
            // Only cards the list offers may join a set: a system drive or a fixed disk is
            // chosen alone, its name typed.
            list = list.push(if sets && settable(d, sel) {
                let name = d.name.clone();
                row![
                    checkbox(self.checked.contains(&d.name))
                        .on_toggle(move |on| Message::Check(name.clone(), on)),
                    card
                ]
                .spacing(space::TIGHT)
                .align_y(Center)
                .into()
            } else {
                card
            });
        }
        let checked = self
            .checked
            .iter()
            .filter(|n| ctx.drives.iter().any(|d| d.name == **n))
            .count();
        let mut col = widget::screen(t!("storage.title").into_owned()).push(
            toggler(self.show_system)
                .label(t!("storage.show_system"))
                .on_toggle(Message::ShowSystem),
        );
        if sets {
            col = col.push(text(t!("storage.check_hint")).size(size::SMALL));
        }
        col = col.push(list);
        if sets {
            col = col.push(
                button(text(t!("storage.use_checked", count = checked)))
                    .on_press_maybe((checked > 0).then_some(Message::UseChecked))
                    .style(button::primary),
            );
        }
        col = col
            .push(rule::horizontal(1))
            .push(text(t!("storage.to_file")).size(size::ITEM))
            .push(widget::path_row(
                &t!("storage.file_path"),
                &self.file_path,
                "file-path",
                Message::FilePath,
                Message::Browse,
                Some((t!("storage.use_file").into_owned(), Message::UseFile)),
            ));
        if let Some(refused) = &self.file_is_drive {
            col = col.push(
                text(t!("storage.file_is_drive", path = refused.path.display()))
                    .style(text::danger),
            );
            col = col.push(match &refused.drive {
                DriveOffer::Choose { name, label } => Element::from(
                    button(text(t!("storage.choose_drive", drive = label)))
                        .on_press(Message::Pick(name.clone()))
                        .style(button::primary),
                ),
                DriveOffer::Forbidden(reason) => {
                    text(t!("storage.drive_cannot", reason = reason)).into()
                }
                DriveOffer::Unlisted => text(t!("storage.drive_unlisted")).into(),
            });
        }
        col.push(widget::back(Message::Back)).into()
    }
}

/// Whether `drive` may join a set of cards written at once: one the list offers (not a
/// system drive or a fixed disk) and large enough.
fn settable(drive: &Drive, sel: &Selection) -> bool {
    drive.offered && !drive.needs_name_typed() && sel.too_small(drive).is_none()
}

/// The listed drive that is, or holds, the device `dev`, and whether it may be chosen.
fn offer(ctx: &Context, sel: &Selection, dev: DevNum) -> DriveOffer {
    let Some(drive) = ctx
        .drives
        .iter()
        .find(|d| d.dev == dev || d.partitions.iter().any(|p| p.dev == dev))
    else {
        return DriveOffer::Unlisted;
    };
    if let Some(reason) = drive.not_offered.iter().find(|r| r.forbids_writing()) {
        return DriveOffer::Forbidden(reason.to_string());
    }
    if let Some(size) = sel.too_small(drive) {
        return DriveOffer::Forbidden(
            t!(
                "storage.too_small",
                size = cardsmith_drives::human_size(size)
            )
            .into_owned(),
        );
    }
    DriveOffer::Choose {
        name: drive.name.clone(),
        label: format!("{} ({})", drive.description(), drive.path.display()),
    }
}
