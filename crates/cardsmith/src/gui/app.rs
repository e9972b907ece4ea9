//! The wizard's router: it hands each message to the screen it belongs to, acts on the
//! event the screen hands back (move on, start a job), feeds the workers' answers (the
//! catalog, icons, drives, inspection, the job) into the shared context, and draws the
//! screen shown. The screens are in `screen/`, the shared data in `context`, the job's
//! worker in `work`.

use std::path::PathBuf;
use std::time::Duration;

use cardsmith_catalog::{Cache, Fetcher, Http, Loaded, Location, OFFICIAL};
use cardsmith_drives::{Sources, Watcher};
use cardsmith_engine::CancelToken;
use iced::futures::channel::mpsc;
use iced::keyboard::{self, key::Named, Key};
use iced::widget::{container, image, operation, scrollable};
use iced::{Element, Fill, Padding, Subscription, Task, Theme};
use rust_i18n::t;

use super::context::{CatalogState, Context, Inspected, OsChoice, Selection};
use super::host::Host;
use super::inspect;
use super::screen::{
    confirm, customize, device, done, options, os, progress, read, start, storage, Action, Page,
    Screen,
};
use super::theme::space;
use super::work::{self, Job, Update};

#[derive(Debug, Clone)]
pub enum Message {
    Start(start::Message),
    Device(device::Message),
    Os(os::Message),
    Storage(storage::Message),
    Customize(customize::Message),
    Confirm(confirm::Message),
    Progress(progress::Message),
    Done(done::Message),
    Read(read::Message),
    Options(options::Message),
    CatalogLoaded(Result<Box<Loaded>, String>),
    Icon(String, Vec<u8>),
    Drive(Box<cardsmith_drives::Event>),
    /// The Wi-Fi network this computer is on (NetworkManager), to suggest.
    HostWifi(Option<Vec<u8>>),
    /// What looking inside an OS found, for the OS with this key (`inspect::key`).
    Inspected(String, Box<Inspected>),
    Job(Update),
    /// Tab (forward) or Shift-Tab (back) through the controls.
    Focus(bool),
    /// Escape: one step back (not while a job runs).
    Escape,
    /// Enter outside a text field: the screen's main button.
    Enter,
    /// The window manager asks to close the window.
    CloseRequested,
}

pub struct App {
    pub ctx: Context,
    pub sel: Selection,
    pub screen: Screen,
    /// The window was closed during a job: it was cancelled, and the program ends when the
    /// job has stopped (so a card is left unbootable, a backup's temporary file removed).
    pub close_when_done: bool,
}

impl App {
    /// The wizard in `language`, on the catalog `repo` (the official one by default), its
    /// settings form prefilled from `host`.
    pub fn new(language: String, repo: Option<String>, host: Host) -> (App, Task<Message>) {
        rust_i18n::set_locale(&language);
        let app = App {
            ctx: Context::new(language, host),
            sel: Selection::default(),
            screen: Screen::Start(start::State::default()),
            close_when_done: false,
        };
        (app, load_catalog(repo))
    }

    pub fn title(&self) -> String {
        t!("app.title").into_owned()
    }

    /// Shows `page` with its state fresh.
    pub fn go(&mut self, page: Page) {
        self.screen = match page {
            Page::Start => Screen::Start(start::State::default()),
            Page::Device => Screen::Device,
            Page::Os => Screen::Os(os::State::default()),
            Page::Storage => Screen::Storage(storage::State::new(&self.sel)),
            Page::Customize => {
                Screen::Customize(Box::new(customize::State::new(&self.ctx, &self.sel)))
            }
            Page::Confirm => Screen::Confirm(confirm::State::default()),
            Page::Read => Screen::Read(read::State::default()),
            Page::Options => Screen::Options(options::State::new(&self.ctx)),
            // Shown by a job starting or ending, never by going there.
            Page::Progress | Page::Done => return,
        };
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        let (ctx, sel) = (&mut self.ctx, &mut self.sel);
        match (message, &mut self.screen) {
            (Message::Start(m), Screen::Start(s)) => {
                let action = s.update(m, sel);
                return self.act(action, Message::Start, |app, event| {
                    match event {
                        start::Event::Go(page) => app.go(page),
                        // Erasing takes no settings: straight to the confirmation.
                        start::Event::Next if app.sel.os == Some(OsChoice::Erase) => {
                            app.sel.apply_settings = false;
                            app.go(Page::Confirm);
                        }
                        start::Event::Next => app.go(Page::Customize),
                    }
                    Task::none()
                });
            }
            (Message::Device(m), Screen::Device) => {
                let action = device::update(m, sel);
                return self.act(action, Message::Device, |app, _| app.back());
            }
            (Message::Os(m), Screen::Os(s)) => {
                let action = s.update(m, ctx, sel);
                return self.act(action, Message::Os, |app, event| match event {
                    os::Event::Picked(choice) => {
                        app.sel.os = Some(choice);
                        app.go(Page::Start);
                        app.inspect_os()
                    }
                    os::Event::Back => {
                        app.go(Page::Start);
                        Task::none()
                    }
                });
            }
            (Message::Storage(m), Screen::Storage(s)) => {
                let action = s.update(m, ctx, sel);
                return self.act(action, Message::Storage, |app, _| app.back());
            }
            (Message::Customize(m), Screen::Customize(s)) => {
                let action = s.update(m, ctx, sel);
                return self.act(action, Message::Customize, |app, event| {
                    match event {
                        customize::Event::Confirm => app.go(Page::Confirm),
                        customize::Event::Back => app.go(Page::Start),
                    }
                    Task::none()
                });
            }
            (Message::Confirm(m), Screen::Confirm(s)) => {
                let action = s.update(m, sel);
                return self.act(action, Message::Confirm, |app, event| match event {
                    confirm::Event::Write { name_typed } => app.start_write(name_typed),
                    confirm::Event::Back => {
                        app.go(Page::Start);
                        Task::none()
                    }
                });
            }
            (Message::Progress(m), Screen::Progress(s)) => {
                let _ = s.update(m);
            }
            (Message::Done(m), Screen::Done(s)) => {
                let action = s.update(m, sel);
                return self.act(action, Message::Done, |app, event| {
                    match event {
                        done::Event::Another => {
                            app.sel.next_card();
                            app.go(Page::Storage);
                        }
                        done::Event::Restart => app.go(Page::Start),
                    }
                    Task::none()
                });
            }
            (Message::Read(m), Screen::Read(s)) => {
                let action = s.update(m, ctx);
                return self.act(action, Message::Read, |app, event| match event {
                    read::Event::Start(job) => {
                        let confirmed = job.confirmed.clone();
                        app.start_job(Job::Read(*job), confirmed.into_iter().collect(), false)
                    }
                    read::Event::Back => {
                        app.go(Page::Start);
                        Task::none()
                    }
                });
            }
            (Message::Options(m), Screen::Options(s)) => {
                let action = s.update(m, ctx);
                return self.act(action, Message::Options, |app, _| app.back());
            }
            (Message::CatalogLoaded(Ok(loaded)), _) => {
                let icons = icon_urls(&loaded);
                ctx.catalog = CatalogState::Ready(loaded);
                return load_icons(icons, ctx.cache().ok());
            }
            (Message::CatalogLoaded(Err(e)), _) => ctx.catalog = CatalogState::Failed(e),
            (Message::Icon(url, bytes), _) => {
                ctx.icons.insert(url, image::Handle::from_bytes(bytes));
            }
            (Message::HostWifi(ssid), screen) => {
                ctx.host.wifi_ssid = ssid;
                // An editor opened before the answer came gets it, unless typed over.
                if let (Screen::Customize(s), None) = (screen, &sel.settings) {
                    if s.form.ssid.is_empty() {
                        if let Some(ssid) = &ctx.host.wifi_ssid {
                            s.form.ssid = String::from_utf8_lossy(ssid).into_owned();
                        }
                    }
                }
            }
            // An answer for an OS chosen before is dropped (below).
            (Message::Inspected(key, found), _)
                if sel.os.as_ref().map(inspect::key).as_ref() == Some(&key) =>
            {
                ctx.inspected = Some((key, *found));
            }
            (Message::Drive(event), _) => self.on_drive(*event),
            (Message::Job(update), Screen::Progress(s)) => {
                if let Some(ended) = s.on_update(update) {
                    let notes = std::mem::take(&mut s.notes);
                    self.screen = Screen::Done(done::State {
                        kind: s.kind,
                        ended,
                        notes,
                        ejected: None,
                    });
                    if self.close_when_done {
                        return iced::exit();
                    }
                }
            }
            (Message::CloseRequested, Screen::Progress(s)) => {
                // A job is running: stop it the way Cancel does, and end once it has
                // stopped (killing it mid-write would skip the cleanup).
                self.close_when_done = true;
                s.cancel();
            }
            (Message::CloseRequested, _) => return iced::exit(),
            (Message::Focus(back), _) => {
                return if back {
                    operation::focus_previous()
                } else {
                    operation::focus_next()
                }
            }
            (Message::Escape, _) => {
                if let Some(back) = self.back_message() {
                    return self.update(back);
                }
            }
            (Message::Enter, _) => {
                if let Some(main) = self.main_message() {
                    return self.update(main);
                }
            }
            // A message for a screen no longer shown (a late file dialog…) is dropped.
            _ => {}
        }
        Task::none()
    }

    /// Carries out what a screen's update asked for: its own work, mapped back to it, or
    /// the event, handled by `on_event`.
    fn act<M: Send + 'static, E>(
        &mut self,
        action: Action<M, E>,
        wrap: fn(M) -> Message,
        on_event: impl FnOnce(&mut App, E) -> Task<Message>,
    ) -> Task<Message> {
        match action {
            Action::None => Task::none(),
            Action::Run(task) => task.map(wrap),
            Action::Event(event) => on_event(self, event),
        }
    }

    /// Back to the start.
    fn back(&mut self) -> Task<Message> {
        self.go(Page::Start);
        Task::none()
    }

    /// Escape: the screen's Back.
    fn back_message(&self) -> Option<Message> {
        Some(match &self.screen {
            Screen::Device => Message::Device(device::Message::Back),
            Screen::Os(_) => Message::Os(os::Message::Back),
            Screen::Storage(_) => Message::Storage(storage::Message::Back),
            Screen::Customize(_) => Message::Customize(customize::Message::Back),
            Screen::Confirm(_) => Message::Confirm(confirm::Message::Back),
            Screen::Read(_) => Message::Read(read::Message::Back),
            Screen::Options(_) => Message::Options(options::Message::Back),
            Screen::Start(_) | Screen::Progress(_) | Screen::Done(_) => return None,
        })
    }

    /// Enter: the screen's main button, when it may be pressed.
    fn main_message(&self) -> Option<Message> {
        Some(match &self.screen {
            Screen::Start(_) => Message::Start(start::Message::Next),
            Screen::Confirm(_) => Message::Confirm(confirm::Message::Write),
            Screen::Customize(s) if s.editing => Message::Customize(customize::Message::Save),
            Screen::Read(_) => Message::Read(read::Message::Start),
            Screen::Done(s) if s.ok() && s.kind == work::Kind::Write => {
                Message::Done(done::Message::Another)
            }
            Screen::Done(_) => Message::Done(done::Message::Restart),
            _ => return None,
        })
    }

    /// Starts looking inside the OS chosen now (see `gui::inspect`).
    fn inspect_os(&mut self) -> Task<Message> {
        let Some(os) = &self.sel.os else {
            return Task::none();
        };
        self.ctx.inspected = Some((inspect::key(os), Inspected::Looking));
        // One decode at a time: the one for the OS chosen before stops.
        if let Some(old) = self.ctx.inspect_cancel.take() {
            old.cancel();
        }
        let cancel = CancelToken::new();
        self.ctx.inspect_cancel = Some(cancel.clone());
        inspect::start(os, self.ctx.cache_dir.clone(), cancel)
    }

    /// Runs the confirmed write or erase.
    fn start_write(&mut self, name_typed: bool) -> Task<Message> {
        let Some(job) = self.sel.job(&self.ctx) else {
            return Task::none();
        };
        let confirmed = self.sel.drives().iter().map(|d| d.identity()).collect();
        self.start_job(job, confirmed, name_typed)
    }

    /// Runs a job on a worker thread and forwards its updates to the window; `confirmed`
    /// is the drive the window asked about (and had its name typed for, `name_typed`).
    pub fn start_job(
        &mut self,
        job: Job,
        confirmed: Vec<cardsmith_drives::Identity>,
        name_typed: bool,
    ) -> Task<Message> {
        if matches!(self.screen, Screen::Progress(_)) {
            return Task::none(); // one job at a time
        }
        let cancel = CancelToken::new();
        let crashed = done::crashed(job.kind());
        self.screen = Screen::Progress(progress::State::new(&job, cancel.clone()));
        let updates = work::spawn(job, cancel, confirmed, name_typed, crashed);
        Task::run(updates, Message::Job)
    }

    /// The drives watcher said something changed. A chosen drive that left, or now holds
    /// another card, must be chosen (and confirmed) again.
    fn on_drive(&mut self, event: cardsmith_drives::Event) {
        use cardsmith_drives::Event as E;
        let drives = &mut self.ctx.drives;
        let lost = match event {
            E::Added(d) | E::Changed(d) => {
                let changed = self
                    .sel
                    .drives()
                    .iter()
                    .any(|s| s.name == d.name && s.identity() != d.identity());
                match drives.iter_mut().find(|x| x.name == d.name) {
                    Some(slot) => *slot = d,
                    None => {
                        drives.push(d);
                        drives.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                }
                changed
            }
            E::Removed(d) => {
                drives.retain(|x| x.name != d.name);
                self.sel.drives().iter().any(|s| s.name == d.name)
            }
        };
        if lost {
            self.sel.storage = None;
            if matches!(self.screen.page(), Page::Customize | Page::Confirm) {
                self.go(Page::Start);
            }
        }
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let keys = keyboard::listen().filter_map(|event| match event {
            keyboard::Event::KeyPressed {
                key: Key::Named(Named::Tab),
                modifiers,
                ..
            } => Some(Message::Focus(modifiers.shift())),
            keyboard::Event::KeyPressed {
                key: Key::Named(Named::Escape),
                ..
            } => Some(Message::Escape),
            keyboard::Event::KeyPressed {
                key: Key::Named(Named::Enter),
                ..
            } => Some(Message::Enter),
            _ => None,
        });
        let drives = Subscription::run(watch_drives).map(|e| Message::Drive(Box::new(e)));
        let close = iced::window::close_requests().map(|_| Message::CloseRequested);
        // The progress screen's rates and times left follow the clock, not just the job.
        let tick = match self.screen {
            Screen::Progress(_) => iced::time::every(Duration::from_secs(1))
                .map(|now| Message::Progress(progress::Message::Tick(now))),
            _ => Subscription::none(),
        };
        Subscription::batch([drives, keys, close, tick])
    }

    pub fn view(&self) -> Element<'_, Message> {
        let (ctx, sel) = (&self.ctx, &self.sel);
        let body = match &self.screen {
            Screen::Start(s) => s.view(ctx, sel).map(Message::Start),
            Screen::Device => device::view(ctx, sel).map(Message::Device),
            Screen::Os(s) => s.view(ctx, sel).map(Message::Os),
            Screen::Storage(s) => s.view(ctx, sel).map(Message::Storage),
            Screen::Customize(s) => s.view(ctx, sel).map(Message::Customize),
            Screen::Confirm(s) => s.view(ctx, sel).map(Message::Confirm),
            Screen::Progress(s) => s.view().map(Message::Progress),
            Screen::Done(s) => s.view(ctx, sel).map(Message::Done),
            Screen::Read(s) => s.view(ctx).map(Message::Read),
            Screen::Options(s) => s.view(ctx).map(Message::Options),
        };
        // The scroll bar gets a lane of its own rather than covering the fields.
        let body = container(body).padding(Padding::ZERO.right(space::SCROLLBAR));
        container(scrollable(body).height(Fill))
            .padding(space::PADDING)
            .width(Fill)
            .height(Fill)
            .into()
    }

    pub fn theme(&self) -> Option<Theme> {
        None // follow the system's light or dark
    }
}

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
/// else nothing (the tile with the entry's initial stays).
fn load_icons(icons: Vec<(String, Location)>, cache: Option<Cache>) -> Task<Message> {
    if icons.is_empty() {
        return Task::none();
    }
    let (tx, rx) = mpsc::unbounded();
    std::thread::spawn(move || {
        let dir = cache.map(|c| c.dir().join("icons"));
        let fetcher = Http::new(Duration::from_secs(10))
            .ok()
            .map(|http| Fetcher { http });
        for (url, location) in icons {
            let key: Option<PathBuf> = dir
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

/// The Wi-Fi network this computer is on, asked of NetworkManager on a worker thread
/// (its password is never asked for).
pub fn ask_host_wifi() -> Task<Message> {
    let (tx, rx) = iced::futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cardsmith_drives::wifi::connected_ssid());
    });
    Task::perform(rx, |r| Message::HostWifi(r.ok().flatten()))
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
