//! OS customisation: "Apply OS customisation settings?", and the settings editor. The
//! editor starts from what was saved before (secrets only as hashes), else from what this
//! computer suggests (time zone, keyboard layout, country, user, the Wi-Fi network it is on,
//! its SSH keys offered). Time zone, keyboard layout and country are picked from searchable
//! lists; passwords are hidden until shown; what the chosen image cannot take is greyed out
//! with the reason; and the first-boot mechanism the image will use is said at the top.

use cardsmith_customize::presets::Presets;
use cardsmith_customize::{
    render_hostname, validate, wifi_psk, Interface, PasswordHashes, Settings, Ssh, StaticIp, User,
    Wifi,
};
use iced::widget::{button, checkbox, column, combo_box, pick_list, row, text, text_input, Column};
use iced::{Center, Element};
use rust_i18n::t;

use super::Action;
use crate::gui::context::{Context, Inspected, Selection};
use crate::gui::theme::{size, space};
use crate::gui::widget;

/// The settings form: text as typed, turned into [`Settings`] when saved. The passwords
/// are emptied once hashed; left empty, the hashes already made are kept.
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
            .field("ssh_keys", &self.ssh_keys)
            .field("ssid", &self.ssid)
            .field("wifi_password", &typed(&self.wifi_password))
            .field("ssid2", &self.ssid2)
            .field("wifi_password2", &typed(&self.wifi_password2))
            .field("country", &self.country)
            .field("timezone", &self.timezone)
            .field("keymap", &self.keymap)
            .finish_non_exhaustive()
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

impl Field {
    /// The setting it belongs to, as inspection names it.
    fn setting(self) -> &'static str {
        match self {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    General,
    Services,
    Options,
}

pub struct State {
    /// The editor is open (else the question).
    pub editing: bool,
    pub form: Form,
    pub tab: Tab,
    pub errors: Vec<(Field, String)>,
    pub show_passwords: bool,
    /// The saved presets, read when the editor opens (not on every redraw).
    pub presets: Vec<String>,
    pub preset_name: String,
    pub preset_note: Option<String>,
    /// Searchable lists for the fields that take one of a known set of values.
    pub pickers: Pickers,
}

/// The searchable lists of the editor: the values the checks accept.
pub struct Pickers {
    pub country: combo_box::State<String>,
    pub timezone: combo_box::State<String>,
    pub keymap: combo_box::State<String>,
}

impl Pickers {
    /// The lists, each showing the form's value to start with.
    fn new(form: &Form) -> Pickers {
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

#[derive(Clone)]
pub enum Message {
    Edit,
    Answer(bool),
    Back,
    Tab(Tab),
    Form(FormEdit),
    ShowPasswords(bool),
    Save,
    PickPreset(String),
    PresetName(String),
    SavePreset,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Form(edit) => write!(f, "Form({edit:?})"),
            Message::Edit => f.write_str("Edit"),
            Message::Answer(b) => write!(f, "Answer({b})"),
            Message::Back => f.write_str("Back"),
            Message::Tab(t) => write!(f, "Tab({t:?})"),
            Message::ShowPasswords(b) => write!(f, "ShowPasswords({b})"),
            Message::Save => f.write_str("Save"),
            Message::PickPreset(p) => write!(f, "PickPreset({p:?})"),
            Message::PresetName(p) => write!(f, "PresetName({p:?})"),
            Message::SavePreset => f.write_str("SavePreset"),
        }
    }
}

/// An edit of one field.
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
            FormEdit::Hostname(s) => write!(f, "Hostname({s:?})"),
            FormEdit::User(s) => write!(f, "User({s:?})"),
            FormEdit::SshKeys(s) => write!(f, "SshKeys({s:?})"),
            FormEdit::Ssid(s) => write!(f, "Ssid({s:?})"),
            FormEdit::Ssid2(s) => write!(f, "Ssid2({s:?})"),
            FormEdit::StaticEthernet(s) => write!(f, "StaticEthernet({s:?})"),
            FormEdit::StaticWifi(s) => write!(f, "StaticWifi({s:?})"),
            FormEdit::Country(s) => write!(f, "Country({s:?})"),
            FormEdit::Timezone(s) => write!(f, "Timezone({s:?})"),
            FormEdit::Keymap(s) => write!(f, "Keymap({s:?})"),
            FormEdit::Ssh(b) => write!(f, "Ssh({b})"),
            FormEdit::SshPasswordAuth(b) => write!(f, "SshPasswordAuth({b})"),
            FormEdit::WifiHidden(b) => write!(f, "WifiHidden({b})"),
            FormEdit::Sudo(b) => write!(f, "Sudo({b})"),
            FormEdit::AddMyKeys => f.write_str("AddMyKeys"),
        }
    }
}

pub enum Event {
    /// On to the confirmation; the selection says whether settings are applied.
    Confirm,
    Back,
}

impl State {
    /// The question, with the form filled from the saved settings, else from this
    /// computer's suggestions (British defaults where it has none).
    pub fn new(ctx: &Context, sel: &Selection) -> State {
        let form = match &sel.settings {
            Some(s) => form_from(s),
            None => Form {
                country: ctx.host.country.clone().unwrap_or_else(|| "GB".into()),
                timezone: ctx
                    .host
                    .timezone
                    .clone()
                    .unwrap_or_else(|| "Europe/London".into()),
                keymap: ctx.host.keymap.clone().unwrap_or_else(|| "gb".into()),
                user: ctx.host.user.clone().unwrap_or_default(),
                // The network this computer is on; its password is never read.
                ssid: ctx
                    .host
                    .wifi_ssid
                    .as_deref()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .unwrap_or_default(),
                ..Form::default()
            },
        };
        State {
            editing: false,
            pickers: Pickers::new(&form),
            form,
            tab: Tab::General,
            errors: Vec::new(),
            show_passwords: false,
            presets: Vec::new(),
            preset_name: String::new(),
            preset_note: None,
        }
    }

    pub fn update(
        &mut self,
        message: Message,
        ctx: &Context,
        sel: &mut Selection,
    ) -> Action<Message, Event> {
        match message {
            Message::Edit => {
                self.presets = Presets::open().map(|p| p.list()).unwrap_or_default();
                self.editing = true;
            }
            Message::Answer(apply) => {
                let takes_none =
                    matches!(ctx.inspection(sel.os.as_ref()), Some(Inspected::None(_)));
                sel.apply_settings = apply && sel.settings.is_some() && !takes_none;
                return Action::Event(Event::Confirm);
            }
            Message::Back if self.editing => self.editing = false,
            Message::Back => return Action::Event(Event::Back),
            Message::Tab(tab) => self.tab = tab,
            Message::Form(edit) => self.edit(edit, ctx),
            Message::ShowPasswords(on) => self.show_passwords = on,
            Message::Save => {
                if let Some(settings) = self.settings_from_form(sel.settings.as_ref()) {
                    sel.apply_settings = settings.is_some();
                    sel.settings = settings;
                    self.editing = false;
                }
            }
            Message::PickPreset(name) => {
                self.preset_note = Some(match Presets::open().and_then(|p| p.load(&name)) {
                    Ok(settings) => {
                        sel.preset = settings.has_counter().then(|| name.clone());
                        self.form = form_from(&settings);
                        self.pickers = Pickers::new(&self.form);
                        self.errors.clear();
                        sel.settings = Some(settings);
                        sel.apply_settings = true;
                        t!("settings.preset_loaded", name = name).into_owned()
                    }
                    Err(e) => e.to_string(),
                });
            }
            Message::PresetName(name) => self.preset_name = name,
            Message::SavePreset => {
                let name = self.preset_name.trim().to_owned();
                if let Some(settings) = self.settings_from_form(sel.settings.as_ref()) {
                    sel.settings = settings;
                    self.preset_note = Some(match (&sel.settings, Presets::open()) {
                        (Some(s), Ok(presets)) => match presets.save(&name, s) {
                            Ok(_) => {
                                self.presets = presets.list();
                                sel.preset = s.has_counter().then(|| name.clone());
                                t!("settings.preset_saved", name = name).into_owned()
                            }
                            Err(e) => e.to_string(),
                        },
                        (None, _) => t!("settings.nothing_to_save").into_owned(),
                        (_, Err(e)) => e.to_string(),
                    });
                }
            }
        }
        Action::None
    }

    fn edit(&mut self, edit: FormEdit, ctx: &Context) {
        let f = &mut self.form;
        match edit {
            FormEdit::AddMyKeys => {
                for key in &ctx.host.ssh_keys {
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

    pub fn error(&self, field: Field) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    }

    /// Checks the form and turns it into settings (secrets hashed here, the plain text
    /// dropped; an empty password field keeps what `before` hashed). `None` when something
    /// is wrong: every problem is then next to its field, and what was saved before stays
    /// (its hashes are the only copy of passwords typed then).
    pub fn settings_from_form(&mut self, before: Option<&Settings>) -> Option<Option<Settings>> {
        let f = &self.form;
        let mut errors = Vec::new();
        let mut s = Settings {
            counter: before.map_or(0, |b| b.counter),
            ..Settings::default()
        };
        let mut check = |field, result: Result<(), cardsmith_customize::Error>| {
            if let Err(e) = result {
                errors.push((field, e.to_string()));
            }
        };
        if !f.hostname.trim().is_empty() {
            let h = f.hostname.trim().to_owned();
            // `node{n:02}` counts per card: checked as the name it gives this card.
            check(
                Field::Hostname,
                render_hostname(&h, s.counter).and_then(|name| validate::hostname(&name)),
            );
            s.hostname = Some(h);
        }
        if !f.user.trim().is_empty() {
            check(Field::User, validate::user(f.user.trim()));
            let kept = before
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
            let kept = before
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
        for (typed, field, is_tz) in [
            (&f.timezone, Field::Timezone, true),
            (&f.keymap, Field::Keymap, false),
        ] {
            let value = typed.trim().to_owned();
            if value.is_empty() {
                continue;
            }
            let checked = if is_tz {
                validate::timezone(&value)
            } else {
                validate::keymap(&value)
            };
            if let Err(e) = checked {
                errors.push((field, e.to_string()));
            }
            if is_tz {
                s.timezone = Some(value);
            } else {
                s.keymap = Some(value);
            }
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
        if !self.errors.is_empty() {
            return None;
        }
        // Hashed: the typed text is not kept.
        self.form.password.clear();
        self.form.wifi_password.clear();
        self.form.wifi_password2.clear();
        Some((!s.is_empty()).then_some(s))
    }

    pub fn view<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        if self.editing {
            self.editor(ctx, sel)
        } else {
            self.question(ctx, sel)
        }
    }

    fn question<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let takes_none = matches!(ctx.inspection(sel.os.as_ref()), Some(Inspected::None(_)));
        let can_apply = sel.settings.is_some() && !takes_none;
        widget::screen(t!("ask.title").into_owned())
            .push(inspection(ctx, sel))
            .push(text(t!("ask.question")))
            .push(widget::buttons([
                button(text(t!("ask.edit")))
                    .on_press_maybe((!takes_none).then_some(Message::Edit))
                    .into(),
                button(text(t!("ask.yes")))
                    .on_press_maybe(can_apply.then_some(Message::Answer(true)))
                    .style(button::primary)
                    .into(),
                button(text(t!("ask.no")))
                    .on_press(Message::Answer(false))
                    .style(button::secondary)
                    .into(),
            ]))
            .push(widget::back(Message::Back))
            .into()
    }

    fn editor<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let f = &self.form;
        let refused = |setting: &'static str| ctx.refused(sel.os.as_ref(), setting);
        let field = |id,
                     label: String,
                     value: &'a str,
                     field: Field,
                     edit: fn(String) -> FormEdit,
                     secret: bool| {
            self.field(ctx, sel, id, label, value, field, edit, secret)
        };
        let picker = |label: String,
                      state: &'a combo_box::State<String>,
                      value: &'a String,
                      field: Field,
                      edit: fn(String) -> FormEdit| {
            let control = match refused(field.setting()) {
                // Greyed out: a text field that takes no input.
                Some(_) => text_input("", value).padding(6).into(),
                None => combo_box(state, &t!("settings.search"), Some(value), move |v| {
                    Message::Form(edit(v))
                })
                .padding(6)
                .into(),
            };
            widget::labelled(label, control, refused(field.setting()), self.error(field))
        };
        let toggle =
            |on: bool, label: String, setting: &'static str, edit: fn(bool) -> FormEdit| {
                checkbox(on).label(label).on_toggle_maybe(
                    refused(setting)
                        .is_none()
                        .then_some(move |b| Message::Form(edit(b))),
                )
            };
        // The open tab stands out; the others are quiet.
        let tab = |label, tab| {
            button(text(label))
                .on_press(Message::Tab(tab))
                .style(if self.tab == tab {
                    button::primary
                } else {
                    button::secondary
                })
        };
        let tabs = row![
            tab(t!("settings.general"), Tab::General),
            tab(t!("settings.services"), Tab::Services),
            tab(t!("settings.options"), Tab::Options),
        ]
        .spacing(8);
        let body: Column<'a, Message> = match self.tab {
            Tab::General => column![
                field(
                    "hostname",
                    t!("settings.hostname").into_owned(),
                    &f.hostname,
                    Field::Hostname,
                    FormEdit::Hostname,
                    false
                ),
                field(
                    "user",
                    t!("settings.user").into_owned(),
                    &f.user,
                    Field::User,
                    FormEdit::User,
                    false
                ),
                field(
                    "password",
                    t!("settings.password").into_owned(),
                    &f.password,
                    Field::Password,
                    FormEdit::Password,
                    true
                ),
                checkbox(self.show_passwords)
                    .label(t!("settings.show_passwords"))
                    .on_toggle(Message::ShowPasswords),
                field(
                    "ssid",
                    t!("settings.ssid").into_owned(),
                    &f.ssid,
                    Field::Ssid,
                    FormEdit::Ssid,
                    false
                ),
                field(
                    "wifi-password",
                    t!("settings.wifi_password").into_owned(),
                    &f.wifi_password,
                    Field::WifiPassword,
                    FormEdit::WifiPassword,
                    true
                ),
                toggle(
                    f.wifi_hidden,
                    t!("settings.wifi_hidden").into_owned(),
                    "wifi",
                    FormEdit::WifiHidden
                ),
                field(
                    "ssid-2",
                    t!("settings.ssid2").into_owned(),
                    &f.ssid2,
                    Field::Ssid2,
                    FormEdit::Ssid2,
                    false
                ),
                field(
                    "wifi-password-2",
                    t!("settings.wifi_password2").into_owned(),
                    &f.wifi_password2,
                    Field::WifiPassword2,
                    FormEdit::WifiPassword2,
                    true
                ),
                picker(
                    t!("settings.country").into_owned(),
                    &self.pickers.country,
                    &f.country,
                    Field::Country,
                    FormEdit::Country
                ),
                picker(
                    t!("settings.timezone").into_owned(),
                    &self.pickers.timezone,
                    &f.timezone,
                    Field::Timezone,
                    FormEdit::Timezone
                ),
                picker(
                    t!("settings.keymap").into_owned(),
                    &self.pickers.keymap,
                    &f.keymap,
                    Field::Keymap,
                    FormEdit::Keymap
                ),
            ],
            Tab::Services => column![
                toggle(f.ssh, t!("settings.ssh").into_owned(), "ssh", FormEdit::Ssh),
                toggle(
                    f.ssh_password_auth,
                    t!("settings.ssh_password").into_owned(),
                    "ssh",
                    FormEdit::SshPasswordAuth
                ),
                field(
                    "ssh-keys",
                    t!("settings.ssh_keys").into_owned(),
                    &f.ssh_keys,
                    Field::SshKeys,
                    FormEdit::SshKeys,
                    false
                ),
                self.offered_keys(ctx, sel),
            ],
            Tab::Options => column![
                checkbox(f.passwordless_sudo)
                    .label(t!("settings.sudo"))
                    .on_toggle(|b| Message::Form(FormEdit::Sudo(b))),
                field(
                    "static-ethernet",
                    t!("settings.static_ethernet").into_owned(),
                    &f.static_ethernet,
                    Field::StaticEthernet,
                    FormEdit::StaticEthernet,
                    false
                ),
                field(
                    "static-wifi",
                    t!("settings.static_wifi").into_owned(),
                    &f.static_wifi,
                    Field::StaticWifi,
                    FormEdit::StaticWifi,
                    false
                ),
            ],
        };
        let save_as = (!self.preset_name.trim().is_empty()).then_some(Message::SavePreset);
        let preset_row = row![
            pick_list(self.presets.clone(), None::<String>, Message::PickPreset)
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
        let mut col = widget::screen(t!("settings.title").into_owned())
            .push(inspection(ctx, sel))
            .push(preset_row);
        if let Some(note) = &self.preset_note {
            col = col.push(text(note.clone()).size(size::SMALL));
        }
        col.push(tabs)
            .push(body.spacing(space::LIST))
            .push(widget::buttons([
                button(text(t!("settings.save")))
                    .on_press(Message::Save)
                    .style(button::primary)
                    .into(),
                widget::back(Message::Back),
            ]))
            .into()
    }

    /// A text field under its label; a secret already hashed is not shown again, the
    /// field says it is kept. A setting the image cannot take takes no input.
    #[allow(clippy::too_many_arguments)]
    fn field<'a>(
        &'a self,
        ctx: &'a Context,
        sel: &'a Selection,
        id: &'static str,
        label: String,
        value: &'a str,
        field: Field,
        edit: fn(String) -> FormEdit,
        secret: bool,
    ) -> Element<'a, Message> {
        let kept = match (field, &sel.settings) {
            (Field::Password, Some(s)) if s.user.is_some() => t!("settings.secret_kept"),
            (Field::WifiPassword, Some(s)) if !s.wifi.is_empty() => t!("settings.secret_kept"),
            (Field::WifiPassword2, Some(s)) if s.wifi.len() > 1 => t!("settings.secret_kept"),
            _ => "".into(),
        };
        let refused = ctx.refused(sel.os.as_ref(), field.setting());
        let input = text_input(&kept, value)
            .id(id)
            .on_input_maybe(refused.is_none().then_some(move |s| Message::Form(edit(s))))
            .secure(secret && !self.show_passwords)
            .padding(6);
        widget::labelled(label, input.into(), refused, self.error(field))
    }

    /// The SSH keys this computer has, offered: one click adds them (and turns SSH on).
    fn offered_keys<'a>(&'a self, ctx: &'a Context, sel: &'a Selection) -> Element<'a, Message> {
        let missing = ctx
            .host
            .ssh_keys
            .iter()
            .filter(|k| !self.form.ssh_keys.lines().any(|l| l.trim() == k.as_str()))
            .count();
        if missing == 0 || ctx.refused(sel.os.as_ref(), "ssh").is_some() {
            return column![].into();
        }
        button(text(t!("settings.add_my_keys", count = missing)))
            .on_press(Message::Form(FormEdit::AddMyKeys))
            .style(button::secondary)
            .into()
    }
}

/// The form for saved settings: every value but the secrets, which stay hashed.
fn form_from(s: &Settings) -> Form {
    let ssid = |i: usize| {
        s.wifi
            .get(i)
            .map(|w| String::from_utf8_lossy(&w.ssid).into_owned())
            .unwrap_or_default()
    };
    let fixed = |interface: Interface| {
        s.static_ip
            .iter()
            .find(|ip| ip.interface == interface)
            .map(|ip| {
                let mut typed = ip.cidr();
                if ip.gateway.is_some() || !ip.dns.is_empty() {
                    typed += ",";
                    typed += &ip.gateway.map(|g| g.to_string()).unwrap_or_default();
                }
                for dns in &ip.dns {
                    typed += &format!(",{dns}");
                }
                typed
            })
            .unwrap_or_default()
    };
    Form {
        hostname: s.hostname.clone().unwrap_or_default(),
        user: s.user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
        ssh: s.ssh.is_some(),
        ssh_password_auth: s.ssh.as_ref().is_some_and(|x| x.password_auth),
        ssh_keys: s
            .ssh
            .as_ref()
            .map(|x| x.keys.iter().map(|k| format!("{k}\n")).collect())
            .unwrap_or_default(),
        ssid: ssid(0),
        wifi_hidden: s.wifi.first().is_some_and(|w| w.hidden),
        ssid2: ssid(1),
        country: s
            .wifi
            .first()
            .map(|w| w.country.clone())
            .unwrap_or_else(|| "GB".into()),
        static_ethernet: fixed(Interface::Ethernet),
        static_wifi: fixed(Interface::Wifi),
        timezone: s.timezone.clone().unwrap_or_default(),
        keymap: s.keymap.clone().unwrap_or_default(),
        passwordless_sudo: s.passwordless_sudo,
        ..Form::default()
    }
}

/// What looking inside the chosen OS found: how it takes settings, and what each does.
pub fn inspection<'a, M: 'a>(ctx: &'a Context, sel: &'a Selection) -> Element<'a, M> {
    let mut col = column![].spacing(2);
    match ctx.inspection(sel.os.as_ref()) {
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
            col = col.push(text(t!("inspect.found", os = os, format = format, why = why)).size(13));
            if let Some(note) = note {
                col = col.push(text(note.clone()).size(size::SMALL).style(text::warning));
            }
            for effect in effects {
                let line = text(format!("• {}", effect.describe())).size(size::SMALL);
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
