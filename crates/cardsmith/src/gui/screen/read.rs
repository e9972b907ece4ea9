//! READ A CARD: a drive chosen from the list (system drives behind a toggle), the backup
//! file to create (a zstd image in the home folder is proposed), only the partitions or
//! all of it.

use std::path::PathBuf;

use iced::widget::{button, column, text, toggler};
use iced::{Element, Task};
use rust_i18n::t;

use super::Action;
use crate::gui::context::Context;
use crate::gui::theme::space;
use crate::gui::widget::{self, Item};
use crate::job::ReadJob;

#[derive(Debug, Clone, Default)]
pub struct State {
    pub show_system: bool,
    /// The drive's kernel name.
    pub source: Option<String>,
    pub output: String,
    /// Only the partitions (`--allocated-only`).
    pub allocated_only: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    ShowSystem(bool),
    Pick(String),
    Output(String),
    Browse,
    Browsed(Option<PathBuf>),
    AllocatedOnly(bool),
    Start,
    Back,
}

pub enum Event {
    Start(Box<ReadJob>),
    Back,
}

impl State {
    pub fn update(&mut self, message: Message, ctx: &Context) -> Action<Message, Event> {
        match message {
            Message::ShowSystem(on) => self.show_system = on,
            Message::Pick(name) => self.pick(name),
            Message::Output(path) => self.output = path,
            Message::Browse => return Action::Run(super::browse(true, Message::Browsed)),
            Message::Browsed(Some(path)) => self.output = path.display().to_string(),
            Message::Browsed(None) => {}
            Message::AllocatedOnly(on) => self.allocated_only = on,
            Message::Start => {
                return Action::event(self.job(ctx).map(|job| Event::Start(Box::new(job))))
            }
            Message::Back => return Action::Event(Event::Back),
        }
        Action::Run(Task::none())
    }

    /// A drive picked; an empty output is given a name in the home folder (compressed
    /// with zstd: small, and quick to write and to restore).
    fn pick(&mut self, name: String) {
        if self.output.trim().is_empty() {
            if let Some(home) = std::env::var_os("HOME") {
                let file = format!("{name}-backup.img.zst");
                self.output = std::path::Path::new(&home).join(file).display().to_string();
            }
        }
        self.source = Some(name);
    }

    /// The job, once a drive and an output file are chosen: that drive, as it was listed,
    /// and no other.
    pub fn job(&self, ctx: &Context) -> Option<ReadJob> {
        let drive = ctx
            .drives
            .iter()
            .find(|d| Some(&d.name) == self.source.as_ref())?;
        let output = self.output.trim();
        if output.is_empty() {
            return None;
        }
        Some(ReadJob {
            source: drive.path.clone(),
            output: PathBuf::from(output),
            allocated_only: self.allocated_only,
            force: false,
            all_blocks: false,
            confirmed: Some(drive.identity()),
            rescue: false,
            shrink: None,
        })
    }

    pub fn view<'a>(&'a self, ctx: &'a Context) -> Element<'a, Message> {
        let mut list = column![].spacing(space::LIST);
        // Any drive may be read (nothing on it changes), but the system's only on request.
        let drives: Vec<_> = ctx
            .drives
            .iter()
            .filter(|d| d.size > 0 && (d.offered || self.show_system))
            .collect();
        if drives.is_empty() {
            list = list.push(text(t!("storage.none")));
        }
        for d in drives {
            let item = Item {
                icon: Some(widget::drive_icon(d.bus)),
                meta: vec![d.path.display().to_string()],
                chosen: self.source.as_ref() == Some(&d.name),
                ..Item::new(format!("{} — {}", d.description(), d.size_human))
            };
            list = list.push(item.view(Some(Message::Pick(d.name.clone()))));
        }
        let ready = self.job(ctx).is_some();
        widget::screen(t!("read.title").into_owned())
            .push(
                toggler(self.show_system)
                    .label(t!("storage.show_system"))
                    .on_toggle(Message::ShowSystem),
            )
            .push(list)
            .push(text(t!("read.output")))
            .push(widget::path_row(
                "",
                &self.output,
                "read-output",
                Message::Output,
                Message::Browse,
                None,
            ))
            .push(
                toggler(self.allocated_only)
                    .label(t!("read.allocated_only"))
                    .on_toggle(Message::AllocatedOnly),
            )
            .push(widget::buttons([
                button(text(t!("read.start")))
                    .on_press_maybe(ready.then_some(Message::Start))
                    .style(button::primary)
                    .into(),
                widget::back(Message::Back),
            ]))
            .into()
    }
}
