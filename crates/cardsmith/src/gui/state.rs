//! The wizard's state and what each message does to it. No widgets here (halloy's split):
//! `view` draws this state, the worker threads feed it.

use std::path::PathBuf;

use cardsmith_catalog::{find_device, for_device, Loaded, OsEntry};
use cardsmith_customize::{
    validate, wifi_psk, PasswordHashes, Settings, Ssh, StaticIp, User, Wifi,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use cardsmith_drives::{DevNum, Drive};
use cardsmith_engine::{CancelToken, Phase};

use super::work::{Ended, Job, Kind, Update};
use crate::job::{Destination, EraseJob, Event, Left, Permission, ReadJob, Source, WriteJob};

/// The wizard's screens, in the order the user meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Start,
    Device,
    Os,
    Storage,
    /// "Apply OS customisation settings?"
    AskCustomize,
    Settings,
    Confirm,
    Progress,
    Done,
    /// READ A CARD: back up a card into an image file.
    Read,
    /// Verify, eject, the download cache, the language.
    Options,
}

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum OsChoice {
    /// A catalog entry, by its "Category/Name" path.
    Catalog { path: String, entry: Box<OsEntry> },
    /// An image file the user named.
    Custom(PathBuf),
    /// Erase: one FAT32 partition over the whole card.
    Erase,
}

/// What looking inside the chosen OS found (see `gui::inspect`).
#[derive(Debug, Clone, PartialEq)]
pub enum Inspected {
    Looking,
    /// A catalog image still to be downloaded: looked into when it is written.
    Later {
        format: Option<String>,
    },
    Found {
        os: Option<String>,
        format: String,
        why: String,
        /// Where inspection disagrees with the catalog.
        note: Option<String>,
        effects: Vec<cardsmith_customize::Effect>,
    },
    /// The image cannot take settings: why.
    None(String),
    /// The image could not be read.
    Failed(String),
}

/// Where to write.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageChoice {
    Drive(Box<Drive>),
    /// "Save to image file…": the (customised) image goes into a file.
    File(PathBuf),
}

/// The settings form: text as typed, turned into [`Settings`] when the user goes on. The
/// two passwords are emptied once hashed; left empty, the hashes already made are kept.
#[derive(Clone, Default, PartialEq)]
pub struct Form {
    pub hostname: String,
    pub user: String,
    pub password: String,
    pub ssh: bool,
    pub ssh_password_auth: bool,
    pub ssh_keys: String,
    pub ssid: String,
    pub wifi_password: String,
    pub wifi_hidden: bool,
    /// A second network, joined when the first is out of reach.
    pub ssid2: String,
    pub wifi_password2: String,
    pub country: String,
    /// Fixed addresses as typed: `ADDRESS/PREFIX[,GATEWAY[,DNS...]]`; empty means DHCP.
    pub static_ethernet: String,
    pub static_wifi: String,
    pub timezone: String,
    pub keymap: String,
    pub passwordless_sudo: bool,
}

/// Typed passwords never reach a log through `{:?}`.
impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let typed = |s: &str| if s.is_empty() { "" } else { "(typed, hidden)" };
        f.debug_struct("Form")
            .field("hostname", &self.hostname)
            .field("user", &self.user)
            .field("password", &typed(&self.password))
            .field("ssh", &self.ssh)
            .field("ssh_password_auth", &self.ssh_password_auth)
            .field("ssh_keys", &self.ssh_keys)
            .field("ssid", &self.ssid)
            .field("wifi_password", &typed(&self.wifi_password))
            .field("wifi_hidden", &self.wifi_hidden)
            .field("ssid2", &self.ssid2)
            .field("wifi_password2", &typed(&self.wifi_password2))
            .field("static_ethernet", &self.static_ethernet)
            .field("static_wifi", &self.static_wifi)
            .field("country", &self.country)
            .field("timezone", &self.timezone)
            .field("keymap", &self.keymap)
            .field("passwordless_sudo", &self.passwordless_sudo)
            .finish()
    }
}

/// Which field a validation message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Hostname,
    User,
    Password,
    SshKeys,
    Ssid,
    WifiPassword,
    Ssid2,
    WifiPassword2,
    Country,
    Timezone,
    Keymap,
    StaticEthernet,
    StaticWifi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    General,
    Services,
    Options,
}

/// A job's progress as the window shows it (nothing yet, by default).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Running {
    pub phase: Option<Phase>,
    pub done: u64,
    pub total: Option<u64>,
    pub rate: f64,
    pub notes: Vec<String>,
    pub cancelling: bool,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub text: String,
    pub notes: Vec<String>,
    pub cancelled: bool,
    /// What a job that did not succeed left behind.
    pub left: Option<Left>,
    /// What a write that succeeded did (its settings among it).
    pub report: Option<crate::job::Report>,
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

/// The catalog, as far as it has loaded.
#[derive(Debug, Clone)]
pub enum CatalogState {
    Loading,
    Ready(Box<Loaded>),
    Failed(String),
}

pub struct Wizard {
    pub screen: Screen,
    pub catalog: CatalogState,
    pub device: Option<String>,
    pub os: Option<OsChoice>,
    pub storage: Option<StorageChoice>,
    pub drives: Vec<Drive>,
    pub show_system: bool,
    /// The categories opened in Choose OS, as names from the top.
    pub os_path: Vec<String>,
    pub search: String,
    pub custom_path: String,
    pub file_path: String,
    /// The file path given was a drive: why it was not taken, and what to do instead.
    pub file_is_drive: Option<FileIsDrive>,
    pub apply_settings: bool,
    /// What looking inside the chosen OS found, and for which OS (`gui::inspect::key`).
    pub inspected: Option<(String, Inspected)>,
    /// SSH public keys found on this computer, offered in the editor.
    pub offered_keys: Vec<String>,
    /// The start screen shows why the catalog is offline.
    pub catalog_details: bool,
    /// The password fields show what is typed.
    pub show_passwords: bool,
    /// Stops the inspection under way when another OS is chosen.
    pub inspect_cancel: Option<cardsmith_engine::CancelToken>,
    pub form: Form,
    pub tab: Tab,
    pub errors: Vec<(Field, String)>,
    pub settings: Option<Settings>,
    pub typed_name: String,
    pub verify: bool,
    pub eject: bool,
    pub running: Option<Running>,
    pub outcome: Option<Outcome>,
    pub cancel: Option<CancelToken>,
    pub language: String,
    /// READ A CARD: the drive's kernel name, and the image file to create.
    pub read_source: Option<String>,
    pub read_output: String,
    /// READ A CARD: only the partitions (`--allocated-only`).
    pub read_allocated_only: bool,
    /// The window was closed during a job: it was cancelled, and the program ends when the
    /// job has stopped (so a card is left unbootable, a backup's temporary file removed).
    pub close_when_done: bool,
    /// The kind of the last job.
    pub last_kind: Kind,
    /// The download cache's folder (Options); `None`: the user's cache folder.
    pub cache_dir: Option<PathBuf>,
    /// The preset whose host-name counter the settings use, to advance after each card.
    pub preset: Option<String>,
}

impl Wizard {
    /// A wizard at its start, its settings form prefilled from `host` (what the computer
    /// uses), else with British defaults.
    pub fn new(language: String, host: super::host::Host) -> Wizard {
        Wizard {
            screen: Screen::Start,
            catalog: CatalogState::Loading,
            device: None,
            os: None,
            storage: None,
            drives: Vec::new(),
            show_system: false,
            os_path: Vec::new(),
            search: String::new(),
            custom_path: String::new(),
            file_path: String::new(),
            file_is_drive: None,
            apply_settings: false,
            inspected: None,
            inspect_cancel: None,
            form: Form {
                country: host.country.unwrap_or_else(|| "GB".into()),
                timezone: host.timezone.unwrap_or_else(|| "Europe/London".into()),
                keymap: host.keymap.unwrap_or_else(|| "gb".into()),
                user: host.user.unwrap_or_default(),
                ..Form::default()
            },
            offered_keys: host.ssh_keys,
            catalog_details: false,
            show_passwords: false,
            tab: Tab::General,
            errors: Vec::new(),
            settings: None,
            typed_name: String::new(),
            verify: true,
            eject: false,
            running: None,
            outcome: None,
            cancel: None,
            language,
            read_source: None,
            read_output: String::new(),
            read_allocated_only: false,
            close_when_done: false,
            last_kind: Kind::Write,
            cache_dir: None,
            preset: None,
        }
    }

    /// After a successful write: the next card gets the same OS and settings (the host
    /// name's counter advanced), and a card of its own is chosen.
    pub fn write_another(&mut self) {
        self.outcome = None;
        self.typed_name.clear();
        self.storage = None;
        if let Some(s) = self.settings.as_mut().filter(|s| s.has_counter()) {
            s.counter += 1;
        }
        self.screen = Screen::Storage;
    }

    /// Starts looking inside the OS chosen now (see `gui::inspect`).
    pub fn inspect_os(&mut self) -> iced::Task<super::app::Message> {
        let Some(os) = &self.os else {
            return iced::Task::none();
        };
        self.inspected = Some((super::inspect::key(os), Inspected::Looking));
        // One decode at a time: the one for the OS chosen before stops.
        if let Some(old) = self.inspect_cancel.take() {
            old.cancel();
        }
        let cancel = cardsmith_engine::CancelToken::new();
        self.inspect_cancel = Some(cancel.clone());
        super::inspect::start(os, cancel)
    }

    /// What inspection found for the OS chosen now.
    pub fn inspection(&self) -> Option<&Inspected> {
        let os = self.os.as_ref()?;
        self.inspected
            .as_ref()
            .filter(|(key, _)| *key == super::inspect::key(os))
            .map(|(_, found)| found)
    }

    /// Why the chosen image cannot take `setting` ("wifi", "ssh", …), when inspection
    /// found that it cannot.
    pub fn refused(&self, setting: &str) -> Option<&str> {
        match self.inspection()? {
            Inspected::Found { effects, .. } => effects
                .iter()
                .find(|e| e.setting == setting)
                .and_then(|e| e.refused.as_deref()),
            Inspected::None(why) => Some(why),
            _ => None,
        }
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        match &self.catalog {
            CatalogState::Ready(l) => Some(l),
            _ => None,
        }
    }

    /// READ A CARD's job, once a drive and an output file are chosen: that drive, as it
    /// was listed, and no other.
    pub fn read_job(&self) -> Option<ReadJob> {
        let drive = self
            .drives
            .iter()
            .find(|d| Some(&d.name) == self.read_source.as_ref())?;
        let output = self.read_output.trim();
        if output.is_empty() {
            return None;
        }
        Some(ReadJob {
            source: drive.path.clone(),
            output: PathBuf::from(output),
            allocated_only: self.read_allocated_only,
            force: false,
            confirmed: Some(drive.identity()),
        })
    }

    /// A drive picked for READ A CARD; an empty output is given a name in the home folder
    /// (compressed with zstd: small, and quick to write and to restore).
    pub fn pick_read_source(&mut self, name: String) {
        if self.read_output.trim().is_empty() {
            if let Some(home) = std::env::var_os("HOME") {
                let file = format!("{name}-backup.img.zst");
                self.read_output = std::path::Path::new(&home).join(file).display().to_string();
            }
        }
        self.read_source = Some(name);
    }

    /// Whether NEXT may be pressed on the start screen (Erase needs a drive, not a file).
    pub fn ready(&self) -> bool {
        match (&self.os, &self.storage) {
            (Some(OsChoice::Erase), Some(StorageChoice::File(_))) => false,
            (Some(_), Some(_)) => true,
            _ => false,
        }
    }

    /// What the user chose, as a job: erase the drive, or write the OS to the drive or
    /// the file (with the settings when they are to be applied).
    pub fn job(&self) -> Option<Job> {
        let permission = |drive: &Drive| Permission {
            yes: true,
            allow_system_drive: drive.system_uses().is_some(),
        };
        match (self.os.as_ref()?, self.storage.as_ref()?) {
            (OsChoice::Erase, StorageChoice::Drive(drive)) => Some(Job::Erase(EraseJob {
                target: drive.path.clone(),
                confirmed: Some(drive.identity()),
                permission: permission(drive),
                eject: self.eject,
            })),
            (OsChoice::Erase, StorageChoice::File(_)) => None,
            (os, storage) => {
                let source = match os {
                    OsChoice::Catalog { entry, .. } => Source::Os(entry.clone()),
                    OsChoice::Custom(file) => Source::from_arg(&file.display().to_string()),
                    OsChoice::Erase => return None,
                };
                let (target, permission) = match storage {
                    StorageChoice::Drive(drive) => (
                        Destination::Drive {
                            path: drive.path.clone(),
                            confirmed: drive.identity(),
                        },
                        permission(drive),
                    ),
                    StorageChoice::File(file) => (
                        Destination::File(file.clone()),
                        Permission {
                            yes: true,
                            allow_system_drive: false,
                        },
                    ),
                };
                let settings = self.settings.clone().filter(|_| self.apply_settings);
                Some(Job::Write(Box::new(WriteJob {
                    verify: self.verify,
                    eject: self.eject && matches!(storage, StorageChoice::Drive(_)),
                    permission,
                    force: true,
                    advance_preset: self.preset.clone().filter(|_| settings.is_some()),
                    settings,
                    cache_dir: self.cache_dir.clone(),
                    ..WriteJob::new(source, target)
                })))
            }
        }
    }

    /// The catalog entries for the chosen device (all without one).
    pub fn os_list(&self) -> Vec<OsEntry> {
        let Some(loaded) = self.loaded() else {
            return Vec::new();
        };
        let list = &loaded.catalog.os_list;
        match self
            .device
            .as_deref()
            .map(|d| find_device(loaded.catalog.devices(), d))
        {
            Some(Ok(device)) => for_device(list, &device),
            _ => list.clone(),
        }
    }

    /// What Choose OS shows now: matches of the search anywhere in the tree, or the
    /// opened category's entries.
    pub fn os_entries(&self) -> Vec<(String, OsEntry)> {
        let list = self.os_list();
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
        for name in &self.os_path {
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

    /// The decompressed size of the chosen image, when known, to grey out small drives.
    pub fn image_size(&self) -> Option<u64> {
        match &self.os {
            Some(OsChoice::Catalog { entry, .. }) => entry.extract_size,
            _ => None,
        }
    }

    /// Why a drive cannot take the chosen image, if it cannot.
    pub fn too_small(&self, drive: &Drive) -> Option<u64> {
        self.image_size().filter(|&size| size > drive.size)
    }

    /// The drives Choose Storage lists: offered ones, and with the toggle the others that
    /// may be written (system drives need their name typed later).
    pub fn storage_drives(&self) -> Vec<&Drive> {
        self.drives
            .iter()
            .filter(|d| d.offered || (self.show_system && d.check_writable(true).is_ok()))
            .collect()
    }

    /// Whether the chosen drive must be confirmed by typing its name.
    pub fn must_type_name(&self) -> Option<&str> {
        match &self.storage {
            Some(StorageChoice::Drive(d)) if d.needs_name_typed() => Some(&d.name),
            _ => None,
        }
    }

    pub fn confirmed(&self) -> bool {
        match self.must_type_name() {
            Some(name) => {
                self.typed_name.trim() == name || self.typed_name.trim() == format!("/dev/{name}")
            }
            None => true,
        }
    }

    /// Checks the form and turns it into settings (secrets hashed here, the plain text
    /// dropped). Every problem is returned next to its field.
    pub fn settings_from_form(&mut self) -> bool {
        let f = &self.form;
        let mut errors = Vec::new();
        let mut s = Settings::default();
        let mut check = |field, result: Result<(), cardsmith_customize::Error>| {
            if let Err(e) = result {
                errors.push((field, e.to_string()));
            }
        };
        if !f.hostname.trim().is_empty() {
            let h = f.hostname.trim().to_owned();
            check(Field::Hostname, validate::hostname(&h));
            s.hostname = Some(h);
        }
        if !f.user.trim().is_empty() {
            check(Field::User, validate::user(f.user.trim()));
            // An empty field keeps the password hashed before (the typed text is gone).
            let kept = self
                .settings
                .as_ref()
                .and_then(|s| s.user.as_ref())
                .filter(|_| f.password.is_empty())
                .map(|u| u.password.clone());
            match kept.map_or_else(|| PasswordHashes::new(f.password.as_bytes()), Ok) {
                Ok(password) => {
                    s.user = Some(User {
                        name: f.user.trim().to_owned(),
                        password,
                    })
                }
                Err(e) => errors.push((Field::Password, e.to_string())),
            }
        }
        if f.ssh {
            let mut keys = Vec::new();
            for line in f.ssh_keys.lines().filter(|l| !l.trim().is_empty()) {
                match validate::ssh_key(line) {
                    Ok(k) => keys.push(k),
                    Err(e) => errors.push((Field::SshKeys, e.to_string())),
                }
            }
            s.ssh = Some(Ssh {
                password_auth: f.ssh_password_auth,
                keys,
            });
        }
        let networks = [
            (
                &f.ssid,
                &f.wifi_password,
                f.wifi_hidden,
                Field::Ssid,
                Field::WifiPassword,
            ),
            (
                &f.ssid2,
                &f.wifi_password2,
                false,
                Field::Ssid2,
                Field::WifiPassword2,
            ),
        ];
        let country = f.country.trim().to_uppercase();
        if networks.iter().any(|n| !n.0.is_empty()) {
            if let Err(e) = validate::country(&country) {
                errors.push((Field::Country, e.to_string()));
            }
        }
        for (ssid, password, hidden, ssid_field, password_field) in networks {
            if ssid.is_empty() {
                continue;
            }
            let ssid = ssid.as_bytes().to_vec();
            if let Err(e) = validate::ssid(&ssid) {
                errors.push((ssid_field, e.to_string()));
            }
            // An empty field keeps the key made before, for the same network only (the
            // key is derived from the network's name).
            let kept = self
                .settings
                .iter()
                .flat_map(|s| &s.wifi)
                .find(|w| password.is_empty() && w.ssid == ssid)
                .map(|w| w.psk.clone());
            match kept.map_or_else(|| wifi_psk(&ssid, password.as_bytes()), Ok) {
                Ok(psk) => s.wifi.push(Wifi {
                    ssid,
                    psk,
                    hidden,
                    country: country.clone(),
                }),
                Err(e) => errors.push((password_field, e.to_string())),
            }
        }
        for (typed, interface, field) in [
            (&f.static_ethernet, "ethernet", Field::StaticEthernet),
            (&f.static_wifi, "wifi", Field::StaticWifi),
        ] {
            let typed = typed.trim();
            if typed.is_empty() {
                continue;
            }
            match StaticIp::parse(&format!("{interface}:{typed}")) {
                Ok(fixed) => s.static_ip.push(fixed),
                Err(e) => errors.push((field, e.to_string())),
            }
        }
        if !f.timezone.trim().is_empty() {
            let tz = f.timezone.trim().to_owned();
            if let Err(e) = validate::timezone(&tz) {
                errors.push((Field::Timezone, e.to_string()));
            }
            s.timezone = Some(tz);
        }
        if !f.keymap.trim().is_empty() {
            let map = f.keymap.trim().to_owned();
            if let Err(e) = validate::keymap(&map) {
                errors.push((Field::Keymap, e.to_string()));
            }
            s.keymap = Some(map);
        }
        s.passwordless_sudo = f.passwordless_sudo;
        if errors.is_empty() {
            if let Err(e) = s.validate() {
                let text = e.to_string();
                let field = if text.contains("static IP") {
                    Field::StaticWifi
                } else if text.contains("Wi-Fi") {
                    Field::Ssid2
                } else {
                    Field::User
                };
                errors.push((field, text));
            }
        }
        self.errors = errors;
        // On errors the settings saved before stay: their hashes are the only copy of
        // passwords typed then (the editor stays open until the form is right).
        if self.errors.is_empty() {
            // Hashed: the typed text is not kept.
            self.form.password.clear();
            self.form.wifi_password.clear();
            self.form.wifi_password2.clear();
            self.settings = (!s.is_empty()).then_some(s);
        }
        self.errors.is_empty()
    }

    pub fn error(&self, field: Field) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    }

    /// "Use this file": takes the path as the image file to write, unless it is (or leads
    /// to) a block device, which is only ever written as a drive, chosen in the list.
    pub fn use_file(&mut self) {
        let text = self.file_path.trim();
        if text.is_empty() {
            return;
        }
        let path = PathBuf::from(text);
        let device = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|m| DevNum::from_raw(m.rdev()));
        match device {
            Some(dev) => {
                let drive = self.drive_offer(dev);
                self.file_is_drive = Some(FileIsDrive { path, drive });
            }
            None => {
                self.file_is_drive = None;
                self.storage = Some(StorageChoice::File(path));
                self.screen = Screen::Start;
            }
        }
    }

    /// The listed drive that is, or holds, the device `dev`, and whether it may be chosen.
    fn drive_offer(&self, dev: DevNum) -> DriveOffer {
        let Some(drive) = self
            .drives
            .iter()
            .find(|d| d.dev == dev || d.partitions.iter().any(|p| p.dev == dev))
        else {
            return DriveOffer::Unlisted;
        };
        if let Some(reason) = drive.not_offered.iter().find(|r| r.forbids_writing()) {
            return DriveOffer::Forbidden(reason.to_string());
        }
        if let Some(size) = self.too_small(drive) {
            return DriveOffer::Forbidden(
                rust_i18n::t!(
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

    /// Picks a drive from the list (shown with the system drives when it is one of them).
    pub fn pick_drive(&mut self, name: &str) {
        if let Some(d) = self.drives.iter().find(|d| d.name == name).cloned() {
            self.show_system |= !d.offered;
            self.storage = Some(StorageChoice::Drive(Box::new(d)));
            self.file_is_drive = None;
            self.typed_name.clear();
            self.screen = Screen::Start;
        }
    }

    /// Shows the confirmation with nothing typed yet.
    pub fn enter_confirm(&mut self) {
        self.typed_name.clear();
        self.screen = Screen::Confirm;
    }

    /// An event or the end of the job.
    pub fn on_job(&mut self, update: Update) {
        match update {
            Update::Event(Event::Progress {
                phase,
                bytes_done,
                bytes_total,
                rate,
            }) => {
                if let Some(r) = &mut self.running {
                    r.phase = Some(phase);
                    r.done = bytes_done;
                    r.total = bytes_total;
                    r.rate = rate as f64;
                }
            }
            Update::Event(event) => {
                if let (Some(r), Some(sentence)) = (&mut self.running, event.sentence()) {
                    r.notes.push(sentence);
                }
            }
            Update::Ended(ended) => {
                let Ended {
                    report,
                    text,
                    cancelled,
                    left,
                } = *ended;
                let running = self.running.take();
                self.outcome = Some(Outcome {
                    ok: report.is_some(),
                    cancelled,
                    left,
                    text,
                    notes: running.map(|r| r.notes).unwrap_or_default(),
                    report,
                });
                self.cancel = None;
                self.screen = Screen::Done;
            }
        }
    }

    /// The drives crate's watcher said something changed.
    pub fn on_drive(&mut self, event: cardsmith_drives::Event) {
        use cardsmith_drives::Event as E;
        match event {
            E::Added(d) | E::Changed(d) => {
                // The chosen drive now holds something else (another card in the reader):
                // it must be chosen, and confirmed, again.
                let chosen_changed = matches!(&self.storage, Some(StorageChoice::Drive(s))
                    if s.name == d.name && s.identity() != d.identity());
                if chosen_changed {
                    self.forget_drive();
                }
                match self.drives.iter_mut().find(|x| x.name == d.name) {
                    Some(slot) => *slot = d,
                    None => {
                        self.drives.push(d);
                        self.drives.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                }
            }
            E::Removed(d) => {
                self.drives.retain(|x| x.name != d.name);
                if matches!(&self.storage, Some(StorageChoice::Drive(s)) if s.name == d.name) {
                    self.forget_drive();
                }
            }
        }
    }
}

impl Wizard {
    /// The chosen drive left or changed: back to the start before anything is written.
    fn forget_drive(&mut self) {
        self.storage = None;
        self.typed_name.clear();
        if matches!(
            self.screen,
            Screen::AskCustomize | Screen::Settings | Screen::Confirm
        ) {
            self.screen = Screen::Start;
        }
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
