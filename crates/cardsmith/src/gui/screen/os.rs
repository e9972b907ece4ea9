//! Choose the operating system: the catalog's tree as cards (icon, description, release
//! date, download size), a search across the whole tree, and two more entries: "Erase" and
//! "Use custom" (an image file or URL of the user's own).

use std::path::PathBuf;

use cardsmith_catalog::OsEntry;
use iced::widget::{button, column, rule, text, text_input};
use iced::{Element, Task};
use rust_i18n::t;

use super::Action;
use crate::gui::context::{Context, OsChoice, Selection};
use crate::gui::theme::space;
use crate::gui::widget::{self, Item};

#[derive(Debug, Clone, Default)]
pub struct State {
    /// The categories opened, as names from the top.
    pub path: Vec<String>,
    pub search: String,
    /// "Use custom" is open, with what is typed in its field.
    pub custom_open: bool,
    pub custom_path: String,
}

#[derive(Debug, Clone)]
pub enum Message {
    Open(String),
    Up,
    Pick(String),
    Search(String),
    Erase,
    Custom,
    CustomPath(String),
    UseCustom,
    Browse,
    Browsed(Option<PathBuf>),
    Back,
}

pub enum Event {
    /// This OS (or erasing) was chosen.
    Picked(OsChoice),
    Back,
}

impl State {
    pub fn update(
        &mut self,
        message: Message,
        ctx: &Context,
        sel: &Selection,
    ) -> Action<Message, Event> {
        match message {
            Message::Open(name) => self.path.push(name),
            Message::Up => {
                self.path.pop();
            }
            Message::Search(s) => self.search = s,
            Message::Pick(path) => {
                let found = self.entries(ctx, sel).into_iter().find(|(p, _)| *p == path);
                if let Some((_, entry)) = found {
                    return Action::Event(Event::Picked(OsChoice::Catalog {
                        path,
                        entry: Box::new(entry),
                    }));
                }
            }
            Message::Erase => return Action::Event(Event::Picked(OsChoice::Erase)),
            Message::Custom => self.custom_open = true,
            Message::CustomPath(p) => self.custom_path = p,
            Message::UseCustom => {
                let path = self.custom_path.trim();
                if !path.is_empty() {
                    return Action::Event(Event::Picked(OsChoice::Custom(PathBuf::from(path))));
                }
            }
            Message::Browse => return Action::Run(super::browse(false, Message::Browsed)),
            Message::Browsed(Some(path)) => {
                self.custom_path = path.display().to_string();
                return Action::Event(Event::Picked(OsChoice::Custom(path)));
            }
            Message::Browsed(None) => {}
            Message::Back => return Action::Event(Event::Back),
        }
        Action::Run(Task::none())
    }

    /// What the list shows now: matches of the search anywhere in the tree, or the opened
    /// category's entries, each with its "Category/Name" path.
    pub fn entries(&self, ctx: &Context, sel: &Selection) -> Vec<(String, OsEntry)> {
        let list = ctx.os_list(sel.device.as_deref());
        if !self.search.trim().is_empty() {
            let needle = self.search.trim().to_lowercase();
            let mut found = Vec::new();
            collect(&list, "", &mut |path, e| {
                let hit = e.name.to_lowercase().contains(&needle)
                    || e.description
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(&needle));
                if hit && e.subitems.is_none() {
                    found.push((path.to_owned(), e.clone()));
                }
            });
            return found;
        }
        let mut level = list;
        let mut prefix = String::new();
        for name in &self.path {
            let Some(next) = level
                .iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.subitems.clone())
            else {
                break;
            };
            prefix = join(&prefix, name);
            level = next;
        }
        level
            .into_iter()
            .map(|e| (join(&prefix, &e.name), e))
            .collect()
    }

    pub fn view<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let mut list = column![].spacing(space::LIST);
        if !self.path.is_empty() && self.search.trim().is_empty() {
            list = list.push(
                button(text(format!("← {}", self.path.join(" / "))))
                    .on_press(Message::Up)
                    .style(button::secondary),
            );
        }
        let chosen = match &sel.os {
            Some(OsChoice::Catalog { path, .. }) => Some(path.as_str()),
            _ => None,
        };
        for (path, e) in self.entries(ctx, sel) {
            let mut meta = Vec::new();
            if let Some(date) = &e.release_date {
                meta.push(t!("os.released", date = date).into_owned());
            }
            if let Some(size) = e.image_download_size {
                meta.push(
                    t!("os.download", size = cardsmith_drives::human_size(size)).into_owned(),
                );
            }
            let category = e.subitems.is_some();
            let item = Item {
                icon: Some(widget::icon(ctx.icon(e.icon.as_deref()), &e.name)),
                description: e.description.clone(),
                meta,
                chosen: chosen == Some(path.as_str()),
                ..Item::new(if category {
                    format!("{} ›", e.name)
                } else {
                    e.name.clone()
                })
            };
            let message = if category {
                Message::Open(e.name.clone())
            } else {
                Message::Pick(path)
            };
            list = list.push(item.view(Some(message)));
        }
        list = list.push(rule::horizontal(1)).push(
            Item {
                description: Some(t!("os.erase_note").into_owned()),
                chosen: sel.os == Some(OsChoice::Erase),
                ..Item::new(t!("os.erase").into_owned())
            }
            .view(Some(Message::Erase)),
        );
        list = list.push(
            Item {
                chosen: matches!(sel.os, Some(OsChoice::Custom(_))),
                ..Item::new(t!("os.custom").into_owned())
            }
            .view(Some(Message::Custom)),
        );
        if self.custom_open {
            list = list.push(widget::path_row(
                &t!("os.custom_path"),
                &self.custom_path,
                "custom-path",
                Message::CustomPath,
                Message::Browse,
                Some((t!("os.use_custom").into_owned(), Message::UseCustom)),
            ));
        }
        widget::screen(t!("os.title").into_owned())
            .push(
                text_input(&t!("os.search"), &self.search)
                    .id("search")
                    .on_input(Message::Search)
                    .padding(space::FIELD),
            )
            .push(list)
            .push(widget::back(Message::Back))
            .into()
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn collect(list: &[OsEntry], prefix: &str, f: &mut dyn FnMut(&str, &OsEntry)) {
    for e in list {
        let path = join(prefix, &e.name);
        f(&path, e);
        if let Some(children) = &e.subitems {
            collect(children, &path, f);
        }
    }
}
