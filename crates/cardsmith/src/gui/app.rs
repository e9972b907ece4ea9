//! The wizard: messages, update, view, subscriptions. State and its rules live in
//! `state`; the work is done by the same jobs the CLI runs (`job`, through `work`), the
//! drives watcher and the catalog loader, on worker threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cardsmith_catalog::{Cache, Fetcher, Http, Loaded, Location, Origin, OFFICIAL};
use cardsmith_customize::presets::Presets;
use cardsmith_customize::validate;
use cardsmith_drives::{Sources, Watcher};
use cardsmith_engine::{CancelToken, Phase};
use iced::futures::channel::mpsc;
use iced::keyboard;
use iced::widget::{
    button, checkbox, column, combo_box, container, image, operation, pick_list, progress_bar, row,
    rule, scrollable, space, text, text_input, toggler,
};
use iced::{Center, Element, Fill, Subscription, Task, Theme};
use rust_i18n::t;

use super::host::Host;
use super::inspect;
use super::state::{
    CatalogState, DriveOffer, Field, Inspected, OsChoice, Running, Screen, StorageChoice, Tab,
    Wizard,
};
use super::work::{self, Job, Kind, Update};
use crate::job::Left;

/// The languages the wizard speaks, with their names in themselves.
pub const LANGUAGES: [(&str, &str); 8] = [
    ("en", "English"),
    ("de", "Deutsch"),
    ("fr", "Français"),
    ("es", "Español"),
    ("it", "Italiano"),
    ("nl", "Nederlands"),
    ("ja", "日本語"),
    ("zh-CN", "简体中文"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language(pub &'static str, pub &'static str);

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }
}

pub fn languages() -> Vec<Language> {
    LANGUAGES.iter().map(|(c, n)| Language(c, n)).collect()
}

#[derive(Debug, Clone)]
pub enum Message {
    Go(Screen),
    CatalogLoaded(Result<Box<Loaded>, String>),
    Icon(String, Vec<u8>),
    Drive(Box<cardsmith_drives::Event>),
    PickDevice(String),
    OpenCategory(String),
    UpCategory,
    PickOs(String),
    Search(String),
    CustomPath(String),
    UseCustom,
    Browse(PathField),
    Browsed(PathField, Option<PathBuf>),
    Erase,
    PickDrive(String),
    ShowSystem(bool),
    FilePath(String),
    UseFile,
    Next,
    Customize(bool),
    EditSettings,
    Tab(Tab),
    Form(FormEdit),
    SaveSettings,
    TypedName(String),
    Write,
    ReadPick(String),
    ReadOutput(String),
    ReadAllocatedOnly(bool),
    /// The window manager asks to close the window.
    CloseRequested,
    StartRead,
    Job(Update),
    Cancel,
    Restart,
    Verify(bool),
    Eject(bool),
    ClearCache,
    CacheDir(String),
    UseCacheDir,
    EjectNow,
    Ejected(String),
    PickPreset(String),
    PresetName(String),
    SavePreset,
    Language(Language),
    FocusNext(bool),
    /// Escape: back to the start (not while a job runs).
    Escape,
    /// What looking inside an OS found, for the OS with this key (`inspect::key`).
    Inspected(String, Box<Inspected>),
    /// Show or hide the catalog's full description (why it is offline).
    CatalogDetails(bool),
    /// After a write: the next card, with the same OS and settings.
    WriteAnother,
    /// Show or hide what is typed in the password fields.
    ShowPasswords(bool),
}

/// The path fields that have a Browse… button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathField {
    /// Use custom: an image to open.
    CustomImage,
    /// Save to image file: a file to create.
    TargetFile,
    /// READ A CARD: the image to create.
    ReadOutput,
}

#[derive(Clone)]
pub enum FormEdit {
    Hostname(String),
    User(String),
    Password(String),
    Ssh(bool),
    SshPasswordAuth(bool),
    SshKeys(String),
    Ssid(String),
    WifiPassword(String),
    WifiHidden(bool),
    Ssid2(String),
    WifiPassword2(String),
    StaticEthernet(String),
    StaticWifi(String),
    Country(String),
    Timezone(String),
    Keymap(String),
    Sudo(bool),
    /// Add the SSH keys found on this computer.
    AddMyKeys,
}

/// Typed passwords never reach a log through `{:?}` (a message is printed when iced
/// traces it).
impl std::fmt::Debug for FormEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormEdit::Password(_) => f.write_str("Password(hidden)"),
            FormEdit::WifiPassword(_) => f.write_str("WifiPassword(hidden)"),
            FormEdit::WifiPassword2(_) => f.write_str("WifiPassword2(hidden)"),
            FormEdit::Ssid2(s) => write!(f, "Ssid2({s:?})"),
            FormEdit::StaticEthernet(s) => write!(f, "StaticEthernet({s:?})"),
            FormEdit::StaticWifi(s) => write!(f, "StaticWifi({s:?})"),
            FormEdit::Hostname(s) => write!(f, "Hostname({s:?})"),
            FormEdit::User(s) => write!(f, "User({s:?})"),
            FormEdit::Ssh(b) => write!(f, "Ssh({b})"),
            FormEdit::SshPasswordAuth(b) => write!(f, "SshPasswordAuth({b})"),
            FormEdit::SshKeys(s) => write!(f, "SshKeys({s:?})"),
            FormEdit::Ssid(s) => write!(f, "Ssid({s:?})"),
            FormEdit::WifiHidden(b) => write!(f, "WifiHidden({b})"),
            FormEdit::Country(s) => write!(f, "Country({s:?})"),
            FormEdit::Timezone(s) => write!(f, "Timezone({s:?})"),
            FormEdit::Keymap(s) => write!(f, "Keymap({s:?})"),
            FormEdit::Sudo(b) => write!(f, "Sudo({b})"),
            FormEdit::AddMyKeys => f.write_str("AddMyKeys"),
        }
    }
}

pub struct App {
    pub wizard: Wizard,
    /// Device and OS icons by their URL as the catalog gives it.
    pub icons: HashMap<String, image::Handle>,
    pub cache_note: Option<String>,
    pub cache_dir: String,
    pub preset_name: String,
    pub preset_note: Option<String>,
    /// The saved presets, read when the editor opens (not on every redraw).
    pub preset_list: Vec<String>,
    /// Searchable lists for the fields that take one of a known set of values.
    pub pickers: Pickers,
}

/// The searchable lists of the settings editor: the values the checks accept.
pub struct Pickers {
    pub country: combo_box::State<String>,
    pub timezone: combo_box::State<String>,
    pub keymap: combo_box::State<String>,
}

impl Pickers {
    /// The lists, each showing the form's value to start with.
    fn new(form: &super::state::Form) -> Pickers {
        let owned = |list: &mut dyn Iterator<Item = &'static str>, value: &String| {
            combo_box::State::with_selection(list.map(str::to_owned).collect(), Some(value))
        };
        Pickers {
            country: owned(&mut validate::countries(), &form.country),
            timezone: owned(&mut validate::timezones(), &form.timezone),
            keymap: owned(&mut validate::keymaps(), &form.keymap),
        }
    }
}

impl App {
    /// The wizard in `language`, on the catalog `repo` (the official one by default), its
    /// settings form prefilled from `host`.
    pub fn new(language: String, repo: Option<String>, host: Host) -> (App, Task<Message>) {
        rust_i18n::set_locale(&language);
        let cache_dir = Cache::open()
            .map(|c| c.dir().display().to_string())
            .unwrap_or_default();
        let wizard = Wizard::new(language, host);
        let pickers = Pickers::new(&wizard.form);
        let app = App {
            wizard,
            icons: HashMap::new(),
            cache_note: None,
            cache_dir,
            preset_name: String::new(),
            preset_note: None,
            preset_list: Vec::new(),
            pickers,
        };
        (app, load_catalog(repo))
    }

    pub fn title(&self) -> String {
        t!("app.title").into_owned()
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        let w = &mut self.wizard;
        match message {
            Message::Go(screen) => w.screen = screen,
            Message::CatalogLoaded(Ok(loaded)) => {
                let icons = icon_urls(&loaded);
                w.catalog = CatalogState::Ready(loaded);
                return load_icons(icons);
            }
            Message::Icon(url, bytes) => {
                self.icons.insert(url, image::Handle::from_bytes(bytes));
            }
            Message::CatalogLoaded(Err(e)) => w.catalog = CatalogState::Failed(e),
            Message::Inspected(key, found) => {
                // An answer for an OS chosen before is dropped.
                if w.os.as_ref().map(inspect::key) == Some(key.clone()) {
                    w.inspected = Some((key, *found));
                }
            }
            Message::Drive(event) => w.on_drive(*event),
            Message::PickDevice(name) => {
                w.device = Some(name);
                w.os_path.clear();
                w.screen = Screen::Start;
            }
            Message::OpenCategory(name) => w.os_path.push(name),
            Message::UpCategory => {
                w.os_path.pop();
            }
            Message::PickOs(path) => {
                if let Some((_, entry)) = w.os_entries().into_iter().find(|(p, _)| *p == path) {
                    w.os = Some(OsChoice::Catalog {
                        path,
                        entry: Box::new(entry),
                    });
                    w.screen = Screen::Start;
                    return w.inspect_os();
                }
            }
            Message::Search(s) => w.search = s,
            Message::CustomPath(p) => w.custom_path = p,
            Message::UseCustom => {
                if !w.custom_path.trim().is_empty() {
                    w.os = Some(OsChoice::Custom(PathBuf::from(w.custom_path.trim())));
                    w.screen = Screen::Start;
                    return w.inspect_os();
                }
            }
            Message::PickDrive(name) => w.pick_drive(&name),
            Message::ShowSystem(on) => w.show_system = on,
            Message::FilePath(p) => {
                w.file_path = p;
                w.file_is_drive = None;
            }
            Message::UseFile => w.use_file(),
            Message::Next => {
                if w.ready() {
                    // Erasing takes no settings: straight to the confirmation.
                    if w.os == Some(OsChoice::Erase) {
                        w.apply_settings = false;
                        w.enter_confirm();
                    } else {
                        w.screen = Screen::AskCustomize;
                    }
                }
            }
            Message::Browse(field) => {
                // The desktop's file dialog (through its portal) on a worker thread; where
                // there is none, the path field stays the way in.
                let (tx, rx) = iced::futures::channel::oneshot::channel();
                std::thread::spawn(move || {
                    let dialog = rfd::FileDialog::new();
                    let picked = match field {
                        PathField::CustomImage => dialog.pick_file(),
                        PathField::TargetFile | PathField::ReadOutput => dialog.save_file(),
                    };
                    let _ = tx.send(picked);
                });
                return Task::perform(rx, move |r| Message::Browsed(field, r.ok().flatten()));
            }
            Message::Browsed(field, Some(path)) => {
                let text = path.display().to_string();
                match field {
                    PathField::CustomImage => w.custom_path = text,
                    PathField::TargetFile => {
                        w.file_path = text;
                        w.file_is_drive = None;
                    }
                    PathField::ReadOutput => w.read_output = text,
                }
            }
            Message::Browsed(_, None) => {}
            Message::Erase => {
                w.os = Some(OsChoice::Erase);
                w.screen = Screen::Start;
            }
            Message::Customize(apply) => {
                w.apply_settings = apply && w.settings.is_some();
                w.enter_confirm();
            }
            Message::EditSettings => {
                self.preset_list = Presets::open().map(|p| p.list()).unwrap_or_default();
                w.screen = Screen::Settings;
            }
            Message::Tab(tab) => w.tab = tab,
            Message::Form(edit) => edit_form(w, edit),
            Message::SaveSettings => {
                if w.settings_from_form() {
                    w.apply_settings = w.settings.is_some();
                    w.screen = Screen::AskCustomize;
                }
            }
            Message::TypedName(s) => w.typed_name = s,
            Message::Write => return self.start_write(),
            Message::ReadPick(name) => w.pick_read_source(name),
            Message::ReadOutput(path) => w.read_output = path,
            Message::ReadAllocatedOnly(on) => w.read_allocated_only = on,
            Message::StartRead => {
                if let Some(job) = w.read_job() {
                    let confirmed = job.confirmed.clone();
                    return self.start_job(Job::Read(job), confirmed, false);
                }
            }
            Message::Job(event) => {
                w.on_job(event);
                if w.close_when_done && w.running.is_none() {
                    return iced::exit();
                }
            }
            Message::CloseRequested => {
                if w.running.is_none() {
                    return iced::exit();
                }
                // A job is running: stop it the way Cancel does, and end once it has
                // stopped (killing it mid-write would skip the cleanup).
                w.close_when_done = true;
                if let (Some(cancel), Some(r)) = (&w.cancel, &mut w.running) {
                    cancel.cancel();
                    r.cancelling = true;
                }
            }
            Message::Cancel => {
                if let (Some(cancel), Some(r)) = (&w.cancel, &mut w.running) {
                    cancel.cancel();
                    r.cancelling = true;
                }
            }
            Message::Restart => {
                w.outcome = None;
                w.typed_name.clear();
                w.screen = Screen::Start;
            }
            Message::WriteAnother => w.write_another(),
            Message::CatalogDetails(on) => w.catalog_details = on,
            Message::ShowPasswords(on) => w.show_passwords = on,
            Message::Verify(on) => w.verify = on,
            Message::Eject(on) => w.eject = on,
            Message::ClearCache => {
                self.cache_note = Some(match self.cache().and_then(|c| c.clear()) {
                    Ok((files, _)) => t!("options.cleared", n = files).into_owned(),
                    Err(e) => e.to_string(),
                });
            }
            Message::CacheDir(dir) => self.cache_dir = dir,
            Message::UseCacheDir => {
                // Every job from now on is given this folder.
                let dir = self.cache_dir.trim();
                w.cache_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
                self.cache_note =
                    Some(t!("options.cache_set", dir = self.cache_dir.trim()).into_owned());
            }
            Message::EjectNow => {
                if let Some(StorageChoice::Drive(drive)) = w.storage.clone() {
                    let (tx, rx) = iced::futures::channel::oneshot::channel();
                    std::thread::spawn(move || {
                        let said = match cardsmith_drives::power_off(&drive) {
                            Ok(()) => t!("done.ejected").into_owned(),
                            Err(e) => e.to_string(),
                        };
                        let _ = tx.send(said);
                    });
                    return Task::perform(rx, |r| Message::Ejected(r.unwrap_or_default()));
                }
            }
            Message::Ejected(text) => {
                if let Some(o) = &mut w.outcome {
                    o.notes.push(text);
                }
            }
            Message::PickPreset(name) => {
                self.preset_note = Some(match Presets::open().and_then(|p| p.load(&name)) {
                    Ok(settings) => {
                        w.preset = settings.has_counter().then(|| name.clone());
                        w.settings = Some(settings);
                        w.apply_settings = true;
                        t!("settings.preset_loaded", name = name).into_owned()
                    }
                    Err(e) => e.to_string(),
                });
            }
            Message::PresetName(name) => self.preset_name = name,
            Message::SavePreset => {
                let name = self.preset_name.trim().to_owned();
                if w.settings_from_form() {
                    self.preset_note = Some(match (&w.settings, Presets::open()) {
                        (Some(s), Ok(presets)) => match presets.save(&name, s) {
                            Ok(_) => {
                                self.preset_list = presets.list();
                                t!("settings.preset_saved", name = name).into_owned()
                            }
                            Err(e) => e.to_string(),
                        },
                        (None, _) => t!("settings.nothing_to_save").into_owned(),
                        (_, Err(e)) => e.to_string(),
                    });
                }
            }
            Message::Language(Language(code, _)) => {
                rust_i18n::set_locale(code);
                w.language = code.to_owned();
            }
            Message::Escape => {
                if w.running.is_none() && w.screen != Screen::Start {
                    w.typed_name.clear();
                    w.screen = Screen::Start;
                }
            }
            Message::FocusNext(back) => {
                return if back {
                    operation::focus_previous()
                } else {
                    operation::focus_next()
                }
            }
        }
        Task::none()
    }

    /// Runs the confirmed write or erase on a worker thread.
    fn start_write(&mut self) -> Task<Message> {
        let w = &self.wizard;
        if !w.confirmed() {
            return Task::none();
        }
        let Some(job) = w.job() else {
            return Task::none();
        };
        let name_typed = w.must_type_name().is_some();
        let confirmed = match &w.storage {
            Some(StorageChoice::Drive(d)) => Some(d.identity()),
            _ => None,
        };
        self.start_job(job, confirmed, name_typed)
    }

    /// Runs a job on a worker thread and forwards its updates to the window; `confirmed`
    /// is the drive the window asked about (and had its name typed for, `name_typed`).
    fn start_job(
        &mut self,
        job: Job,
        confirmed: Option<cardsmith_drives::Identity>,
        name_typed: bool,
    ) -> Task<Message> {
        let w = &mut self.wizard;
        if w.running.is_some() {
            return Task::none(); // one job at a time
        }
        let cancel = CancelToken::new();
        w.cancel = Some(cancel.clone());
        w.last_kind = job.kind();
        w.running = Some(Running::default());
        w.screen = Screen::Progress;
        let crashed = crashed(job.kind());
        let updates = work::spawn(job, cancel, confirmed, name_typed, crashed);
        Task::run(updates, Message::Job)
    }

    /// The download cache the jobs use (Options).
    fn cache(&self) -> Result<Cache, cardsmith_catalog::Error> {
        match &self.wizard.cache_dir {
            Some(dir) => Ok(Cache::at(dir, cardsmith_catalog::DEFAULT_LIMIT)),
            None => Cache::open(),
        }
    }

    fn read_card(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let mut list = column![
            self.header(t!("read.title").into_owned()),
            toggler(w.show_system)
                .label(t!("storage.show_system"))
                .on_toggle(Message::ShowSystem),
        ]
        .spacing(10);
        let drives: Vec<_> = w
            .drives
            .iter()
            .filter(|d| d.size > 0 && (d.offered || w.show_system))
            .collect();
        if drives.is_empty() {
            list = list.push(text(t!("storage.none")));
        }
        for d in drives {
            let chosen = w.read_source.as_deref() == Some(d.name.as_str());
            let label = format!(
                "{}{} — {} ({})",
                if chosen { "✔ " } else { "" },
                d.description(),
                d.size_human,
                d.path.display()
            );
            list = list.push(
                button(text(label))
                    .on_press(Message::ReadPick(d.name.clone()))
                    .width(Fill)
                    .style(button::secondary),
            );
        }
        let ready = w.read_job().is_some();
        list.push(text(t!("read.output")))
            .push(path_row(
                "",
                &w.read_output,
                "read-output",
                Message::ReadOutput,
                PathField::ReadOutput,
                None,
            ))
            .push(
                toggler(w.read_allocated_only)
                    .label(t!("read.allocated_only"))
                    .on_toggle(Message::ReadAllocatedOnly),
            )
            .push(
                row![
                    button(text(t!("read.start")))
                        .on_press_maybe(ready.then_some(Message::StartRead))
                        .style(button::primary),
                    self.back(),
                ]
                .spacing(12),
            )
            .into()
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let keys = keyboard::listen().filter_map(|event| match event {
            keyboard::Event::KeyPressed {
                key: keyboard::Key::Named(keyboard::key::Named::Tab),
                modifiers,
                ..
            } => Some(Message::FocusNext(modifiers.shift())),
            keyboard::Event::KeyPressed {
                key: keyboard::Key::Named(keyboard::key::Named::Escape),
                ..
            } => Some(Message::Escape),
            _ => None,
        });
        let drives = Subscription::run(watch_drives).map(|e| Message::Drive(Box::new(e)));
        let close = iced::window::close_requests().map(|_| Message::CloseRequested);
        Subscription::batch([drives, keys, close])
    }

    pub fn view(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let body = match w.screen {
            Screen::Start => self.start(),
            Screen::Device => self.device(),
            Screen::Os => self.os(),
            Screen::Storage => self.storage(),
            Screen::AskCustomize => self.ask_customize(),
            Screen::Settings => self.settings_editor(),
            Screen::Confirm => self.confirm(),
            Screen::Progress => self.progress(),
            Screen::Done => self.done(),
            Screen::Read => self.read_card(),
            Screen::Options => self.options(),
        };
        container(scrollable(body).height(Fill))
            .padding(20)
            .width(Fill)
            .height(Fill)
            .into()
    }

    fn header<'a>(&self, title: String) -> Element<'a, Message> {
        column![text(title).size(24), rule::horizontal(1)]
            .spacing(8)
            .into()
    }

    /// A catalog icon, or the bundled one while it loads (or when it cannot be had).
    fn icon(&self, url: Option<&str>) -> Element<'_, Message> {
        let handle = url
            .and_then(|u| self.icons.get(u).cloned())
            .unwrap_or_else(|| image::Handle::from_bytes(FALLBACK_ICON));
        image(handle).width(40).height(40).into()
    }

    fn back(&self) -> Element<'_, Message> {
        button(text(t!("nav.back")))
            .on_press(Message::Go(Screen::Start))
            .style(button::secondary)
            .into()
    }

    fn start(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let device = w
            .device
            .clone()
            .unwrap_or_else(|| t!("start.choose_device").into_owned());
        let os = match &w.os {
            Some(OsChoice::Catalog { entry, .. }) => entry.name.clone(),
            Some(OsChoice::Custom(p)) => p.display().to_string(),
            Some(OsChoice::Erase) => t!("os.erase").into_owned(),
            None => t!("start.choose_os").into_owned(),
        };
        let storage = match &w.storage {
            Some(StorageChoice::Drive(d)) => format!("{} ({})", d.description(), d.size_human),
            Some(StorageChoice::File(p)) => p.display().to_string(),
            None => t!("start.choose_storage").into_owned(),
        };
        let choice = |label: String, caption: String, screen| {
            column![
                text(caption).size(14),
                button(text(label)).on_press(Message::Go(screen)).width(260),
            ]
            .spacing(4)
            .align_x(Center)
        };
        // Offline is said in one friendly line; the reason (a DNS error…) behind Details.
        let (catalog_line, details) = match &w.catalog {
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
                Origin::Bundled { .. } => {
                    (t!("start.offline_sample").into_owned(), Some(l.describe()))
                }
                _ => (l.describe(), None),
            },
            CatalogState::Failed(e) => (
                t!("start.catalog_unavailable").into_owned(),
                Some(t!("start.catalog_failed", error = e).into_owned()),
            ),
        };
        let mut catalog = row![text(catalog_line).size(12)].spacing(8).align_y(Center);
        if details.is_some() {
            catalog = catalog.push(
                checkbox(w.catalog_details)
                    .label(t!("start.details"))
                    .size(14)
                    .text_size(12)
                    .on_toggle(Message::CatalogDetails),
            );
        }
        let details = details.filter(|_| w.catalog_details).unwrap_or_default();
        column![
            row![
                text(t!("app.title")).size(28),
                space::horizontal(),
                button(text(t!("options.title")))
                    .on_press(Message::Go(Screen::Options))
                    .style(button::secondary),
            ]
            .align_y(Center),
            text(t!("start.intro")),
            row![
                choice(device, t!("start.device").into_owned(), Screen::Device),
                choice(os, t!("start.os").into_owned(), Screen::Os),
                choice(storage, t!("start.storage").into_owned(), Screen::Storage),
            ]
            .spacing(16),
            row![
                button(text(t!("start.next")))
                    .on_press_maybe(w.ready().then_some(Message::Next))
                    .style(button::primary)
                    .width(160),
                button(text(t!("start.read_card")))
                    .on_press(Message::Go(Screen::Read))
                    .style(button::secondary),
            ]
            .spacing(16),
            catalog,
            text(details).size(12),
        ]
        .spacing(18)
        .align_x(Center)
        .width(Fill)
        .into()
    }

    /// Verify, eject, the download cache and the language: set once, not on every run.
    fn options(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let current = languages().into_iter().find(|l| l.0 == w.language);
        column![
            self.header(t!("options.title").into_owned()),
            row![
                text(t!("options.language")),
                pick_list(languages(), current, Message::Language),
            ]
            .spacing(8)
            .align_y(Center),
            checkbox(w.verify)
                .label(t!("options.verify"))
                .on_toggle(Message::Verify),
            checkbox(w.eject)
                .label(t!("options.eject"))
                .on_toggle(Message::Eject),
            row![
                text(t!("options.cache_dir")),
                text_input("", &self.cache_dir)
                    .id("cache-dir")
                    .on_input(Message::CacheDir)
                    .on_submit(Message::UseCacheDir)
                    .padding(6),
                button(text(t!("options.use_cache_dir")))
                    .on_press(Message::UseCacheDir)
                    .style(button::secondary),
            ]
            .spacing(8)
            .align_y(Center),
            button(text(t!("options.clear_cache")))
                .on_press(Message::ClearCache)
                .style(button::secondary),
            text(self.cache_note.clone().unwrap_or_default()).size(12),
            self.back(),
        ]
        .spacing(16)
        .into()
    }

    fn device(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let mut list = column![self.header(t!("device.title").into_owned())].spacing(10);
        match w.loaded() {
            Some(loaded) => {
                for d in loaded.catalog.devices() {
                    let label = row![
                        self.icon(d.icon.as_deref()),
                        column![
                            text(d.name.clone()).size(16),
                            text(d.description.clone().unwrap_or_default()).size(12),
                        ],
                    ]
                    .spacing(12)
                    .align_y(Center);
                    list = list.push(
                        button(label)
                            .on_press(Message::PickDevice(d.name.clone()))
                            .width(Fill)
                            .style(button::secondary),
                    );
                }
            }
            None => list = list.push(text(t!("start.catalog_loading"))),
        }
        list.push(self.back()).into()
    }

    fn os(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let mut list = column![
            self.header(t!("os.title").into_owned()),
            text_input(&t!("os.search"), &w.search)
                .id("search")
                .on_input(Message::Search)
                .padding(8),
        ]
        .spacing(10);
        if !w.os_path.is_empty() && w.search.trim().is_empty() {
            list = list.push(
                button(text(format!("← {}", w.os_path.join(" / "))))
                    .on_press(Message::UpCategory)
                    .style(button::secondary),
            );
        }
        for (path, e) in w.os_entries() {
            let mut meta = Vec::new();
            if let Some(date) = &e.release_date {
                meta.push(t!("os.released", date = date).into_owned());
            }
            if let Some(size) = e.image_download_size {
                meta.push(
                    t!("os.download", size = cardsmith_drives::human_size(size)).into_owned(),
                );
            }
            let words = column![
                text(if e.subitems.is_some() {
                    format!("{} ›", e.name)
                } else {
                    e.name.clone()
                })
                .size(16),
                text(e.description.clone().unwrap_or_default()).size(12),
                text(meta.join(" · ")).size(11),
            ];
            let label = row![self.icon(e.icon.as_deref()), words]
                .spacing(12)
                .align_y(Center);
            let message = if e.subitems.is_some() {
                Message::OpenCategory(e.name.clone())
            } else {
                Message::PickOs(path)
            };
            list = list.push(
                button(label)
                    .on_press(message)
                    .width(Fill)
                    .style(button::secondary),
            );
        }
        list.push(rule::horizontal(1))
            .push(
                button(column![
                    text(t!("os.erase")).size(16),
                    text(t!("os.erase_note")).size(12)
                ])
                .on_press(Message::Erase)
                .width(Fill)
                .style(button::secondary),
            )
            .push(text(t!("os.custom")).size(16))
            .push(path_row(
                &t!("os.custom_path"),
                &w.custom_path,
                "custom-path",
                Message::CustomPath,
                PathField::CustomImage,
                Some((t!("os.use_custom").into_owned(), Message::UseCustom)),
            ))
            .push(self.back())
            .into()
    }

    fn storage(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let mut list = column![
            self.header(t!("storage.title").into_owned()),
            toggler(w.show_system)
                .label(t!("storage.show_system"))
                .on_toggle(Message::ShowSystem),
        ]
        .spacing(10);
        let drives = w.storage_drives();
        if drives.is_empty() {
            list = list.push(text(t!("storage.none")));
        }
        for d in drives {
            let mut lines = column![
                text(format!("{} — {}", d.description(), d.size_human)).size(16),
                text(d.path.display().to_string()).size(12),
            ];
            for reason in &d.not_offered {
                lines = lines.push(text(reason.to_string()).size(11));
            }
            for warning in &d.warnings {
                lines = lines.push(text(warning_text(warning)).size(12).style(text::danger));
            }
            let small = w.too_small(d);
            if let Some(size) = small {
                lines = lines.push(
                    text(t!(
                        "storage.too_small",
                        size = cardsmith_drives::human_size(size)
                    ))
                    .size(11),
                );
            }
            let pick = small.is_none().then(|| Message::PickDrive(d.name.clone()));
            list = list.push(
                button(lines)
                    .on_press_maybe(pick)
                    .width(Fill)
                    .style(button::secondary),
            );
        }
        list = list
            .push(rule::horizontal(1))
            .push(text(t!("storage.to_file")).size(16))
            .push(path_row(
                &t!("storage.file_path"),
                &w.file_path,
                "file-path",
                Message::FilePath,
                PathField::TargetFile,
                Some((t!("storage.use_file").into_owned(), Message::UseFile)),
            ));
        if let Some(refused) = &w.file_is_drive {
            list = list.push(
                text(t!("storage.file_is_drive", path = refused.path.display()))
                    .style(text::danger),
            );
            list = list.push(match &refused.drive {
                DriveOffer::Choose { name, label } => Element::from(
                    button(text(t!("storage.choose_drive", drive = label)))
                        .on_press(Message::PickDrive(name.clone()))
                        .style(button::primary),
                ),
                DriveOffer::Forbidden(reason) => {
                    text(t!("storage.drive_cannot", reason = reason)).into()
                }
                DriveOffer::Unlisted => text(t!("storage.drive_unlisted")).into(),
            });
        }
        list.push(self.back()).into()
    }

    /// What looking inside the chosen OS found: how it takes settings, and what each does.
    fn inspection(&self) -> Element<'_, Message> {
        let mut col = column![].spacing(2);
        match self.wizard.inspection() {
            None => {}
            Some(Inspected::Looking) => col = col.push(text(t!("inspect.looking")).size(13)),
            Some(Inspected::Later { format }) => {
                let format = format.clone().unwrap_or_else(|| "?".into());
                col = col.push(text(t!("inspect.later", format = format)).size(13));
            }
            Some(Inspected::Found {
                os,
                format,
                why,
                note,
                effects,
            }) => {
                let os = os
                    .clone()
                    .unwrap_or_else(|| t!("inspect.this_image").into_owned());
                col = col
                    .push(text(t!("inspect.found", os = os, format = format, why = why)).size(13));
                if let Some(note) = note {
                    col = col.push(text(note.clone()).size(12).style(text::warning));
                }
                for effect in effects {
                    let line = text(format!("• {}", effect.describe())).size(12);
                    col = col.push(match effect.refused {
                        Some(_) => line.style(text::secondary),
                        None => line,
                    });
                }
            }
            Some(Inspected::None(why)) => {
                col = col.push(
                    text(t!("inspect.none", why = why))
                        .size(13)
                        .style(text::danger),
                )
            }
            Some(Inspected::Failed(e)) => {
                col = col.push(
                    text(t!("inspect.failed", error = e))
                        .size(13)
                        .style(text::warning),
                )
            }
        }
        col.into()
    }

    fn ask_customize(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let takes_none = matches!(w.inspection(), Some(Inspected::None(_)));
        let can_apply = w.settings.is_some() && !takes_none;
        column![
            self.header(t!("ask.title").into_owned()),
            self.inspection(),
            text(t!("ask.question")),
            row![
                button(text(t!("ask.edit")))
                    .on_press_maybe((!takes_none).then_some(Message::EditSettings)),
                button(text(t!("ask.yes")))
                    .on_press_maybe(can_apply.then_some(Message::Customize(true)))
                    .style(button::primary),
                button(text(t!("ask.no")))
                    .on_press(Message::Customize(false))
                    .style(button::secondary),
            ]
            .spacing(12),
            self.back(),
        ]
        .spacing(16)
        .into()
    }

    #[allow(clippy::too_many_arguments)]
    fn field<'a>(
        &'a self,
        id: &'static str,
        label: String,
        value: &'a str,
        field: Field,
        edit: fn(String) -> FormEdit,
        secret: bool,
    ) -> Element<'a, Message> {
        // A secret already hashed is not shown again; the field says it is kept.
        let kept = match (field, &self.wizard.settings) {
            (Field::Password, Some(s)) if s.user.is_some() => t!("settings.secret_kept"),
            (Field::WifiPassword, Some(s)) if !s.wifi.is_empty() => t!("settings.secret_kept"),
            (Field::WifiPassword2, Some(s)) if s.wifi.len() > 1 => t!("settings.secret_kept"),
            _ => "".into(),
        };
        // A setting the chosen image cannot take is shown greyed out, with the reason.
        let refused = self.wizard.refused(setting_of(field));
        let input = text_input(&kept, value)
            .id(id)
            .on_input_maybe(refused.is_none().then_some(move |s| Message::Form(edit(s))))
            .secure(secret && !self.wizard.show_passwords)
            .padding(6);
        self.labelled(label, input.into(), field)
    }

    /// A form control under its label, with why the image cannot take it (when it cannot)
    /// and what is wrong with its value (when something is).
    fn labelled<'a>(
        &'a self,
        label: String,
        control: Element<'a, Message>,
        field: Field,
    ) -> Element<'a, Message> {
        let mut col = column![text(label).size(13), control].spacing(4);
        if let Some(why) = self.wizard.refused(setting_of(field)) {
            col = col.push(
                text(t!("inspect.refused", why = why))
                    .size(12)
                    .style(text::secondary),
            );
        }
        if let Some(error) = self.wizard.error(field) {
            col = col.push(text(error.to_owned()).size(12).style(text::danger));
        }
        col.into()
    }

    /// A field that takes one of a known list (time zone, keyboard layout, country):
    /// typing searches the list, and only a listed value can be picked.
    fn picker<'a>(
        &'a self,
        label: String,
        state: &'a combo_box::State<String>,
        value: &'a String,
        field: Field,
        edit: fn(String) -> FormEdit,
    ) -> Element<'a, Message> {
        let control = match self.wizard.refused(setting_of(field)) {
            // Greyed out: a text field that takes no input.
            Some(_) => text_input("", value).padding(6).into(),
            None => combo_box(state, &t!("settings.search"), Some(value), move |v| {
                Message::Form(edit(v))
            })
            .padding(6)
            .into(),
        };
        self.labelled(label, control, field)
    }

    /// The SSH keys this computer has, offered: one click adds them (and turns SSH on).
    fn offered_keys(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let missing = w
            .offered_keys
            .iter()
            .filter(|k| !w.form.ssh_keys.lines().any(|l| l.trim() == k.as_str()))
            .count();
        if missing == 0 || w.refused("ssh").is_some() {
            return column![].into();
        }
        button(text(t!("settings.add_my_keys", count = missing)))
            .on_press(Message::Form(FormEdit::AddMyKeys))
            .style(button::secondary)
            .into()
    }

    fn settings_editor(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let f = &w.form;
        let tabs = row![
            button(text(t!("settings.general"))).on_press(Message::Tab(Tab::General)),
            button(text(t!("settings.services"))).on_press(Message::Tab(Tab::Services)),
            button(text(t!("settings.options"))).on_press(Message::Tab(Tab::Options)),
        ]
        .spacing(8);
        let body: Element<'_, Message> = match w.tab {
            Tab::General => column![
                self.field(
                    "hostname",
                    t!("settings.hostname").into_owned(),
                    &f.hostname,
                    Field::Hostname,
                    FormEdit::Hostname,
                    false
                ),
                self.field(
                    "user",
                    t!("settings.user").into_owned(),
                    &f.user,
                    Field::User,
                    FormEdit::User,
                    false
                ),
                self.field(
                    "password",
                    t!("settings.password").into_owned(),
                    &f.password,
                    Field::Password,
                    FormEdit::Password,
                    true
                ),
                checkbox(w.show_passwords)
                    .label(t!("settings.show_passwords"))
                    .on_toggle(Message::ShowPasswords),
                self.field(
                    "ssid",
                    t!("settings.ssid").into_owned(),
                    &f.ssid,
                    Field::Ssid,
                    FormEdit::Ssid,
                    false
                ),
                self.field(
                    "wifi-password",
                    t!("settings.wifi_password").into_owned(),
                    &f.wifi_password,
                    Field::WifiPassword,
                    FormEdit::WifiPassword,
                    true
                ),
                checkbox(f.wifi_hidden)
                    .label(t!("settings.wifi_hidden"))
                    .on_toggle_maybe(
                        w.refused("wifi")
                            .is_none()
                            .then_some(|b| Message::Form(FormEdit::WifiHidden(b)))
                    ),
                self.field(
                    "ssid-2",
                    t!("settings.ssid2").into_owned(),
                    &f.ssid2,
                    Field::Ssid2,
                    FormEdit::Ssid2,
                    false
                ),
                self.field(
                    "wifi-password-2",
                    t!("settings.wifi_password2").into_owned(),
                    &f.wifi_password2,
                    Field::WifiPassword2,
                    FormEdit::WifiPassword2,
                    true
                ),
                self.picker(
                    t!("settings.country").into_owned(),
                    &self.pickers.country,
                    &f.country,
                    Field::Country,
                    FormEdit::Country,
                ),
                self.picker(
                    t!("settings.timezone").into_owned(),
                    &self.pickers.timezone,
                    &f.timezone,
                    Field::Timezone,
                    FormEdit::Timezone,
                ),
                self.picker(
                    t!("settings.keymap").into_owned(),
                    &self.pickers.keymap,
                    &f.keymap,
                    Field::Keymap,
                    FormEdit::Keymap,
                ),
            ]
            .spacing(8)
            .into(),
            Tab::Services => column![
                checkbox(f.ssh).label(t!("settings.ssh")).on_toggle_maybe(
                    w.refused("ssh")
                        .is_none()
                        .then_some(|b| Message::Form(FormEdit::Ssh(b)))
                ),
                checkbox(f.ssh_password_auth)
                    .label(t!("settings.ssh_password"))
                    .on_toggle_maybe(
                        w.refused("ssh")
                            .is_none()
                            .then_some(|b| Message::Form(FormEdit::SshPasswordAuth(b)))
                    ),
                self.field(
                    "ssh-keys",
                    t!("settings.ssh_keys").into_owned(),
                    &f.ssh_keys,
                    Field::SshKeys,
                    FormEdit::SshKeys,
                    false
                ),
                self.offered_keys(),
            ]
            .spacing(8)
            .into(),
            Tab::Options => column![
                checkbox(f.passwordless_sudo)
                    .label(t!("settings.sudo"))
                    .on_toggle(|b| Message::Form(FormEdit::Sudo(b))),
                self.field(
                    "static-ethernet",
                    t!("settings.static_ethernet").into_owned(),
                    &f.static_ethernet,
                    Field::StaticEthernet,
                    FormEdit::StaticEthernet,
                    false
                ),
                self.field(
                    "static-wifi",
                    t!("settings.static_wifi").into_owned(),
                    &f.static_wifi,
                    Field::StaticWifi,
                    FormEdit::StaticWifi,
                    false
                ),
            ]
            .spacing(8)
            .into(),
        };
        let presets = self.preset_list.clone();
        let save_as = (!self.preset_name.trim().is_empty()).then_some(Message::SavePreset);
        let preset_row = row![
            pick_list(presets, None::<String>, Message::PickPreset)
                .placeholder(t!("settings.preset_pick")),
            text_input(&t!("settings.preset_name"), &self.preset_name)
                .id("preset-name")
                .on_input(Message::PresetName)
                .padding(6),
            button(text(t!("settings.save_as")))
                .on_press_maybe(save_as)
                .style(button::secondary),
        ]
        .spacing(8)
        .align_y(Center);
        column![
            self.header(t!("settings.title").into_owned()),
            self.inspection(),
            preset_row,
            text(self.preset_note.clone().unwrap_or_default()).size(12),
            tabs,
            body,
            row![
                button(text(t!("settings.save")))
                    .on_press(Message::SaveSettings)
                    .style(button::primary),
                button(text(t!("nav.back")))
                    .on_press(Message::Go(Screen::AskCustomize))
                    .style(button::secondary),
            ]
            .spacing(12),
        ]
        .spacing(14)
        .into()
    }

    fn confirm(&self) -> Element<'_, Message> {
        let w = &self.wizard;
        let what = match &w.os {
            Some(OsChoice::Catalog { entry, .. }) => entry.name.clone(),
            Some(OsChoice::Custom(p)) => p.display().to_string(),
            Some(OsChoice::Erase) => String::new(),
            None => String::new(),
        };
        let target = match &w.storage {
            Some(StorageChoice::Drive(d)) => t!(
                "confirm.drive",
                model = d.description(),
                size = d.size_human,
                path = d.path.display()
            )
            .into_owned(),
            Some(StorageChoice::File(p)) => t!("confirm.file", path = p.display()).into_owned(),
            None => String::new(),
        };
        let mut col = column![
            self.header(t!("confirm.title").into_owned()),
            text(if w.os == Some(OsChoice::Erase) {
                t!("confirm.erase").into_owned()
            } else {
                t!("confirm.question", os = what).into_owned()
            }),
            text(target).size(18),
            text(t!("confirm.erased")),
        ]
        .spacing(14);
        if let Some(StorageChoice::Drive(d)) = &w.storage {
            for warning in &d.warnings {
                col = col.push(text(warning_text(warning)).style(text::danger));
            }
        }
        if w.apply_settings {
            col = col.push(text(t!("confirm.with_settings")));
        }
        if let Some(name) = w.must_type_name() {
            col = col
                .push(text(t!("confirm.type_name", name = name)).style(text::danger))
                .push(
                    text_input(name, &w.typed_name)
                        .id("typed-name")
                        .on_input(Message::TypedName)
                        .padding(8),
                );
        }
        col.push(
            row![
                button(text(t!("confirm.write")))
                    .on_press_maybe(w.confirmed().then_some(Message::Write))
                    .style(button::danger),
                button(text(t!("nav.back")))
                    .on_press(Message::Go(Screen::Start))
                    .style(button::secondary),
            ]
            .spacing(12),
        )
        .into()
    }

    fn progress(&self) -> Element<'_, Message> {
        let Some(r) = &self.wizard.running else {
            return text("").into();
        };
        let phase = match r.phase {
            None => t!("progress.starting"),
            Some(Phase::Write) => t!("progress.writing"),
            Some(Phase::Finish) => t!("progress.finishing"),
            Some(Phase::Verify) => t!("progress.verifying"),
            Some(Phase::Hash) => t!("progress.hashing"),
            Some(Phase::Read) => t!("progress.reading"),
        };
        let fraction = r.total.filter(|&t| t > 0).map(|t| r.done as f32 / t as f32);
        let mut stats = format!(
            "{} · {:.1} MB/s",
            cardsmith_drives::human_size(r.done),
            r.rate / 1e6
        );
        if let Some(frac) = fraction {
            stats = format!("{:.0}% · {stats}", frac * 100.0);
            if let Some(eta) = r
                .total
                .filter(|_| r.rate > 0.0)
                .map(|t| (t.saturating_sub(r.done)) as f64 / r.rate)
            {
                stats += &format!(" · {}", t!("progress.eta", secs = eta.round() as u64));
            }
        }
        let mut col = column![
            self.header(t!("progress.title").into_owned()),
            text(phase).size(18),
            progress_bar(0.0..=1.0, fraction.unwrap_or(0.0)),
            text(stats),
        ]
        .spacing(14);
        for note in &r.notes {
            col = col.push(text(note.clone()).size(12));
        }
        let cancel = if r.cancelling {
            t!("progress.cancelling")
        } else {
            t!("progress.cancel")
        };
        col.push(
            button(text(cancel))
                .on_press_maybe((!r.cancelling).then_some(Message::Cancel))
                .style(button::danger),
        )
        .into()
    }

    fn done(&self) -> Element<'_, Message> {
        let Some(o) = &self.wizard.outcome else {
            return text("").into();
        };
        let kind = self.wizard.last_kind;
        let title = match (o.ok, o.cancelled, kind) {
            (true, _, _) => t!("done.ok"),
            (false, true, _) => t!("done.cancelled"),
            (false, false, Kind::Read) => t!("done.failed_read"),
            (false, false, Kind::Erase) => t!("done.failed_erase"),
            (false, false, Kind::Write) => t!("done.failed"),
        };
        let mut col = column![self.header(title.into_owned()), text(o.text.clone())].spacing(12);
        if let Some(left) = o.left.map(left_text) {
            col = col.push(text(left));
        }
        for note in &o.notes {
            col = col.push(text(note.clone()).size(12));
        }
        let mut buttons = row![].spacing(12);
        if o.ok && kind == Kind::Write {
            buttons = buttons.push(
                button(text(t!("done.another")))
                    .on_press(Message::WriteAnother)
                    .style(button::primary),
            );
        }
        buttons = buttons.push(
            button(text(t!("done.again")))
                .on_press(Message::Restart)
                .style(button::secondary),
        );
        let on_a_drive =
            matches!(self.wizard.storage, Some(StorageChoice::Drive(_))) && kind != Kind::Read;
        if o.ok && on_a_drive {
            buttons = buttons.push(
                button(text(t!("done.eject")))
                    .on_press(Message::EjectNow)
                    .style(button::secondary),
            );
        }
        col.push(buttons).into()
    }

    pub fn theme(&self) -> Option<Theme> {
        None // follow the system's light or dark
    }
}

/// A drive warning in the window's language.
fn warning_text(warning: &cardsmith_drives::Warning) -> String {
    match warning {
        cardsmith_drives::Warning::Large { size } => {
            t!("drive.large", size = cardsmith_drives::human_size(*size)).into_owned()
        }
    }
}

/// What a job that did not succeed left behind.
fn left_text(left: Left) -> String {
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
pub(crate) fn crashed(kind: Kind) -> String {
    match kind {
        Kind::Read => t!("done.crashed_read"),
        Kind::Erase => t!("done.crashed_erase"),
        Kind::Write => t!("done.crashed"),
    }
    .into_owned()
}

fn edit_form(w: &mut Wizard, edit: FormEdit) {
    let f = &mut w.form;
    match edit {
        FormEdit::AddMyKeys => {
            for key in &w.offered_keys {
                if !f.ssh_keys.lines().any(|l| l.trim() == key.as_str()) {
                    if !f.ssh_keys.is_empty() && !f.ssh_keys.ends_with('\n') {
                        f.ssh_keys.push('\n');
                    }
                    f.ssh_keys += key;
                    f.ssh_keys.push('\n');
                }
            }
            f.ssh = true;
        }
        FormEdit::Hostname(s) => f.hostname = s,
        FormEdit::User(s) => f.user = s,
        FormEdit::Password(s) => f.password = s,
        FormEdit::Ssh(b) => f.ssh = b,
        FormEdit::SshPasswordAuth(b) => f.ssh_password_auth = b,
        FormEdit::SshKeys(s) => f.ssh_keys = s,
        FormEdit::Ssid(s) => f.ssid = s,
        FormEdit::WifiPassword(s) => f.wifi_password = s,
        FormEdit::WifiHidden(b) => f.wifi_hidden = b,
        FormEdit::Ssid2(s) => f.ssid2 = s,
        FormEdit::WifiPassword2(s) => f.wifi_password2 = s,
        FormEdit::StaticEthernet(s) => f.static_ethernet = s,
        FormEdit::StaticWifi(s) => f.static_wifi = s,
        FormEdit::Country(s) => f.country = s,
        FormEdit::Timezone(s) => f.timezone = s,
        FormEdit::Keymap(s) => f.keymap = s,
        FormEdit::Sudo(b) => f.passwordless_sudo = b,
    }
}

/// Shown for a device or OS whose icon cannot be fetched (offline).
const FALLBACK_ICON: &[u8] = include_bytes!("../../../../os-list-sample/demo-icon.png");

/// Every icon the catalog names, resolved against the catalog's location.
pub(crate) fn icon_urls(loaded: &Loaded) -> Vec<(String, Location)> {
    let base = Location::parse(&loaded.asked);
    let mut urls: Vec<String> = loaded
        .catalog
        .devices()
        .iter()
        .filter_map(|d| d.icon.clone())
        .collect();
    fn walk(list: &[cardsmith_catalog::OsEntry], out: &mut Vec<String>) {
        for e in list {
            out.extend(e.icon.clone());
            if let Some(children) = &e.subitems {
                walk(children, out);
            }
        }
    }
    walk(&loaded.catalog.os_list, &mut urls);
    urls.sort();
    urls.dedup();
    // The catalog loader made icons absolute and dropped local ones named by a web
    // catalog; a copy cached by an older cardsmith may still hold them.
    urls.into_iter()
        .map(|u| {
            let at = base.join(&u);
            (u, at)
        })
        .filter(|(_, at)| base.may_name(at))
        .collect()
}

/// Fetches icons on a worker thread: from the icon cache, else the network (then cached),
/// else nothing (the bundled icon stays).
fn load_icons(icons: Vec<(String, Location)>) -> Task<Message> {
    if icons.is_empty() {
        return Task::none();
    }
    let (tx, rx) = mpsc::unbounded();
    std::thread::spawn(move || {
        let dir = Cache::open().ok().map(|c| c.dir().join("icons"));
        let fetcher = Http::new(Duration::from_secs(10))
            .ok()
            .map(|http| Fetcher { http });
        for (url, location) in icons {
            let key = dir
                .as_ref()
                .map(|d| d.join(cardsmith_engine::to_hex(&sha2_digest(url.as_bytes()))));
            let cached = key.as_ref().and_then(|k| std::fs::read(k).ok());
            let bytes = cached.or_else(|| {
                let got = fetcher.as_ref()?.fetch(&location, 2 << 20).ok()?;
                if let Some(k) = &key {
                    let _ = std::fs::create_dir_all(k.parent()?);
                    let tmp = k.with_extension("tmp");
                    if std::fs::write(&tmp, &got).is_ok() {
                        let _ = std::fs::rename(&tmp, k);
                    }
                }
                Some(got)
            });
            if let Some(bytes) = bytes {
                if tx.unbounded_send((url, bytes)).is_err() {
                    return;
                }
            }
        }
    });
    Task::run(rx, |(url, bytes)| Message::Icon(url, bytes))
}

fn sha2_digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Loads the catalog on a worker thread (offline: the cached or bundled one).
fn load_catalog(repo: Option<String>) -> Task<Message> {
    let (tx, rx) = iced::futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let result = Http::new(Duration::from_secs(20))
            .and_then(|http| {
                cardsmith_catalog::load(
                    repo.as_deref().or(Some(OFFICIAL)),
                    &http,
                    Cache::open().ok().as_ref(),
                )
            })
            .map(Box::new)
            .map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    Task::perform(rx, |r| {
        Message::CatalogLoaded(r.unwrap_or_else(|_| Err("the loader stopped".into())))
    })
}

/// The drives crate's watcher as a stream of events.
fn watch_drives() -> impl iced::futures::Stream<Item = cardsmith_drives::Event> {
    let (tx, rx) = mpsc::unbounded();
    std::thread::spawn(move || {
        let watcher = Watcher::start(Sources::live(), Duration::from_secs(1));
        loop {
            if let Some(event) = watcher.next(Duration::from_millis(500)) {
                if tx.unbounded_send(event).is_err() {
                    return;
                }
            } else if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// A path field with its Browse… button and, when given, the button that
/// takes the path (also pressed by Enter in the field).
fn path_row<'a>(
    placeholder: &str,
    value: &str,
    id: &'static str,
    on_input: fn(String) -> Message,
    field: PathField,
    take: Option<(String, Message)>,
) -> Element<'a, Message> {
    let mut input = text_input(placeholder, value)
        .id(id)
        .on_input(on_input)
        .padding(8);
    if let Some((_, message)) = &take {
        input = input.on_submit(message.clone());
    }
    let mut line = row![
        input,
        button(text(t!("nav.browse")))
            .on_press(Message::Browse(field))
            .style(button::secondary),
    ]
    .spacing(8);
    if let Some((label, message)) = take {
        line = line.push(button(text(label)).on_press(message));
    }
    line.into()
}

/// The setting a form field belongs to, as inspection names it.
fn setting_of(field: Field) -> &'static str {
    match field {
        Field::Hostname => "hostname",
        Field::User | Field::Password => "user",
        Field::SshKeys => "ssh",
        Field::Ssid
        | Field::WifiPassword
        | Field::Ssid2
        | Field::WifiPassword2
        | Field::Country => "wifi",
        Field::StaticEthernet | Field::StaticWifi => "static_ip",
        Field::Timezone => "timezone",
        Field::Keymap => "keymap",
    }
}
