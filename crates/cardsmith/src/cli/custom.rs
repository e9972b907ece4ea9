//! First-boot settings on the command line: the flags, secrets read from files, standard
//! input or a prompt (never from the command line), presets, and `cardsmith customize` and
//! `cardsmith preset`.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use cardsmith_customize::presets::Presets;
use cardsmith_customize::{
    prepare, validate, wifi_psk, PasswordHashes, Report, Request, Serial, Settings, Ssh, StaticIp,
    User, Wifi,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::confirm;
use super::report::{Reporter, Said};
use super::Stopped;
use crate::job::{self, Event, Failure, Left, Run};

#[derive(Clone, Copy, ValueEnum)]
pub enum SerialMode {
    /// A login console on the serial port
    Console,
    /// The UART only, for devices
    Hardware,
}

/// clap turns every `{n}` in help text into a line break (an old spelling of "\n"); an
/// empty style sequence inside the braces keeps it from seeing one, and disappears when
/// the help is printed (escape sequences are stripped off terminals, and invisible on them).
const HOSTNAME_HELP: &str =
    "Host name; `{\x1b[0mn}` or `{n:02}` is a counter that a preset advances per card";

/// The settings a card boots with. Secrets come from files (`-` is standard input) or a
/// prompt, never from the command line.
#[derive(Args, Clone, Default)]
pub struct SettingsArgs {
    #[arg(long, value_name = "NAME", help = HOSTNAME_HELP)]
    hostname: Option<String>,
    /// The first user's name (its password is asked for, or read from --password-file)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Read the user's password from this file (- for standard input)
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Enable the SSH server
    #[arg(long)]
    ssh: bool,
    /// Allow SSH logins with the password (otherwise keys only)
    #[arg(long)]
    ssh_password_auth: bool,
    /// Authorize this public key file for SSH (repeatable)
    #[arg(long, value_name = "FILE")]
    ssh_key: Vec<PathBuf>,
    /// Join this Wi-Fi network (any bytes; its password is asked for or read from a file).
    /// Repeatable: the first network given is preferred, then the next
    #[arg(long, value_name = "SSID")]
    wifi_ssid: Vec<OsString>,
    /// Read the Wi-Fi password (8-63 characters, or a 64-hex-digit PSK) from this file.
    /// Repeatable: one per --wifi-ssid, in the same order
    #[arg(long, value_name = "FILE")]
    wifi_password_file: Vec<PathBuf>,
    /// The Wi-Fi networks given do not broadcast their SSID
    #[arg(long)]
    wifi_hidden: bool,
    /// Wi-Fi country (ISO 3166-1 alpha-2, such as GB); required with --wifi-ssid
    #[arg(long, value_name = "CC")]
    wifi_country: Option<String>,
    /// A fixed IPv4 address instead of DHCP, for ethernet or wifi (every Wi-Fi network):
    /// INTERFACE:ADDRESS/PREFIX[,GATEWAY[,DNS...]], such as
    /// ethernet:192.168.1.50/24,192.168.1.1,1.1.1.1 (repeatable, one per interface)
    #[arg(long, value_name = "SPEC")]
    static_ip: Vec<String>,
    /// Time zone, such as Europe/London
    #[arg(long, value_name = "TZ")]
    timezone: Option<String>,
    /// Keyboard layout, such as us, gb or de
    #[arg(long, value_name = "LAYOUT")]
    keymap: Option<String>,
    /// Let the user run sudo without a password
    #[arg(long)]
    passwordless_sudo: bool,
    /// cloudinit-rpi images: enable I2C
    #[arg(long)]
    enable_i2c: bool,
    /// cloudinit-rpi images: enable SPI
    #[arg(long)]
    enable_spi: bool,
    /// cloudinit-rpi images: enable 1-Wire
    #[arg(long)]
    enable_onewire: bool,
    /// cloudinit-rpi images: enable the serial port
    #[arg(long, value_name = "MODE")]
    enable_serial: Option<SerialMode>,
    /// cloudinit-rpi images: USB gadget mode (Ethernet over USB)
    #[arg(long)]
    usb_gadget: bool,
}

/// Settings, a preset to start from, and the format to write them in.
#[derive(Args, Clone, Default)]
pub struct CustomArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Start from this saved preset (the flags given override it)
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// How the image takes settings: systemd, cloudinit or cloudinit-rpi (default: the
    /// catalog's, or found from the boot partition)
    #[arg(long, value_name = "FORMAT")]
    pub init_format: Option<String>,
}

/// A secret from a file, or with `-` from standard input: typed at a hidden prompt when
/// that is a terminal (never echoed), else read to its end. One line end is dropped.
fn read_secret_file(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        if let Some(typed) = confirm::read_secret(&format!("{} (not shown): ", capitalised(what))) {
            return Ok(typed);
        }
    }
    let mut data = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut data)
    } else {
        fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data))
    };
    read.map_err(|e| {
        Failure::Refused(format!(
            "cannot read the {what} from {}: {e}",
            path.display()
        ))
    })?;
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    Ok(data)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Asks for `what` at a hidden prompt (twice, for a new password, and both must match).
fn prompt_secret(what: &str, twice: bool, file_flag: &str) -> Result<Vec<u8>, Failure> {
    let no_terminal = || {
        Failure::Refused(format!(
            "the {what} is read from a file or a prompt, and there is no terminal: pass {file_flag} FILE (or - for standard input)"
        ))
    };
    let prompt = capitalised(what);
    let first = confirm::read_secret(&format!("{prompt}: ")).ok_or_else(no_terminal)?;
    if twice {
        let again = confirm::read_secret(&format!("{prompt}, again: ")).ok_or_else(no_terminal)?;
        if again != first {
            return Err(Failure::Refused(format!(
                "the {what} was typed differently the second time; nothing was changed: run the \
                 command again"
            )));
        }
    }
    Ok(first)
}

impl CustomArgs {
    /// The settings: the preset's, overridden by the flags, with secrets read and hashed.
    /// `None` when nothing is to be set.
    pub fn settings(&self) -> Result<Option<Settings>, Failure> {
        let mut s = match &self.preset {
            Some(name) => Presets::open()?.load(name)?,
            None => Settings::default(),
        };
        self.settings.apply(&mut s)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.validate()?;
        Ok(Some(s))
    }
}

impl SettingsArgs {
    fn apply(&self, s: &mut Settings) -> Result<(), Failure> {
        if let Some(h) = &self.hostname {
            s.hostname = Some(h.clone());
        }
        if let Some(name) = &self.user {
            validate::user(name)?;
            let password = match &self.password_file {
                Some(path) => read_secret_file(path, &format!("password for {name}"))?,
                None => prompt_secret(&format!("password for {name}"), true, "--password-file")?,
            };
            s.user = Some(User {
                name: name.clone(),
                password: PasswordHashes::new(&password)?,
            });
        } else if self.password_file.is_some() {
            return Err(Failure::Usage("--password-file needs --user".into()));
        }
        if self.ssh || self.ssh_password_auth || !self.ssh_key.is_empty() {
            let mut ssh = s.ssh.take().unwrap_or_default();
            ssh.password_auth |= self.ssh_password_auth;
            for path in &self.ssh_key {
                let text = fs::read_to_string(path).map_err(|e| {
                    Failure::Refused(format!("cannot read the SSH key {}: {e}", path.display()))
                })?;
                for line in text
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                {
                    ssh.keys.push(validate::ssh_key(line)?);
                }
            }
            s.ssh = Some(ssh);
        }
        self.apply_wifi(s)?;
        for text in &self.static_ip {
            let fixed = StaticIp::parse(text)?;
            s.static_ip.retain(|f| f.interface != fixed.interface);
            s.static_ip.push(fixed);
        }
        if let Some(tz) = &self.timezone {
            s.timezone = Some(tz.clone());
        }
        if let Some(map) = &self.keymap {
            s.keymap = Some(map.clone());
        }
        s.passwordless_sudo |= self.passwordless_sudo;
        s.rpi.i2c |= self.enable_i2c;
        s.rpi.spi |= self.enable_spi;
        s.rpi.onewire |= self.enable_onewire;
        s.rpi.usb_gadget |= self.usb_gadget;
        if let Some(mode) = self.enable_serial {
            s.rpi.serial = Some(match mode {
                SerialMode::Console => Serial::Console,
                SerialMode::Hardware => Serial::Hardware,
            });
        }
        Ok(())
    }
}

impl SettingsArgs {
    /// The Wi-Fi networks given replace a preset's; `--wifi-country` alone changes its
    /// country.
    fn apply_wifi(&self, s: &mut Settings) -> Result<(), Failure> {
        if self.wifi_ssid.is_empty() {
            if !self.wifi_password_file.is_empty() || self.wifi_hidden {
                return Err(Failure::Usage(
                    "--wifi-password-file and --wifi-hidden need --wifi-ssid".into(),
                ));
            }
            if let Some(cc) = self.wifi_country.as_ref().filter(|_| !s.wifi.is_empty()) {
                validate::country(cc)?;
                for wifi in &mut s.wifi {
                    wifi.country = cc.clone();
                }
                return Ok(());
            }
            if !self.wifi_password_file.is_empty()
                || self.wifi_hidden
                || self.wifi_country.is_some()
            {
                return Err(Failure::Usage("the Wi-Fi options need --wifi-ssid".into()));
            }
            return Ok(());
        }
        let files = &self.wifi_password_file;
        if !files.is_empty() && files.len() != self.wifi_ssid.len() {
            return Err(Failure::Usage(format!(
                "{} --wifi-ssid but {} --wifi-password-file: give one password file per \
                 network, in the same order (or none, to be asked for each)",
                self.wifi_ssid.len(),
                files.len()
            )));
        }
        let country = self
            .wifi_country
            .clone()
            .or_else(|| s.wifi_country().map(str::to_owned))
            .ok_or_else(|| {
                Failure::Usage("--wifi-ssid needs --wifi-country (such as GB or US)".into())
            })?;
        let mut networks = Vec::new();
        for (n, ssid) in self.wifi_ssid.iter().enumerate() {
            let ssid = ssid.as_bytes().to_vec();
            validate::ssid(&ssid)?;
            let what = match self.wifi_ssid.len() {
                1 => "Wi-Fi password".to_owned(),
                _ => format!("Wi-Fi password for {:?}", String::from_utf8_lossy(&ssid)),
            };
            let password = match files.get(n) {
                Some(path) => read_secret_file(path, &what)?,
                None => prompt_secret(&what, false, "--wifi-password-file")?,
            };
            networks.push(Wifi {
                psk: wifi_psk(&ssid, &password)?,
                ssid,
                hidden: self.wifi_hidden,
                country: country.clone(),
            });
        }
        s.wifi = networks;
        Ok(())
    }
}

impl CustomArgs {
    /// The preset whose host-name counter a card's name comes from (not overridden by
    /// `--hostname`): it moves on after each card.
    pub fn counting_preset(&self) -> Option<String> {
        self.preset
            .clone()
            .filter(|_| self.settings.hostname.is_none())
    }
}

#[derive(Args)]
pub struct CustomizeArgs {
    /// A card (block device) or an image file holding a written OS; or several, each
    /// with its own host name from the counter
    #[arg(required = true)]
    targets: Vec<PathBuf>,
    /// The number the first card's host-name counter ({n}) gets; each further one the next
    #[arg(long, value_name = "N")]
    first_number: Option<u64>,
    /// With several cards: leave out one that is refused and customise the others
    #[arg(long)]
    skip_refused: bool,
    #[command(flatten)]
    custom: CustomArgs,
    /// The release date of the image ("2024-11-19"), which picks the password hash
    #[arg(long, value_name = "DATE")]
    release_date: Option<String>,
    #[command(flatten)]
    allowed: super::PermissionArgs,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

impl CustomizeArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

pub fn customize_verb(args: CustomizeArgs, reporter: &mut Reporter) -> Result<(), Stopped> {
    let settings = args.custom.settings()?.ok_or_else(|| {
        Failure::Usage(
            "nothing to set: give settings (--hostname, --user, --ssh, --wifi-ssid, …) or --preset"
                .into(),
        )
    })?;
    let settings: Vec<Settings> = (0..args.targets.len())
        .map(|i| job::for_card(&settings, args.first_number, i))
        .collect();
    let request = |settings| Request {
        settings,
        format: args.custom.init_format.as_deref(),
        format_by: "--init-format",
        release_date: args.release_date.as_deref(),
    };
    if let [path] = args.targets.as_slice() {
        let mut run = Run::new(reporter, Left::Untouched);
        let outcome = customise(&args, path, request(&settings[0]), &mut run);
        let report = run.end(outcome)?;
        let mut run = Run::new(reporter, Left::Untouched);
        run.event(Event::Customized(Box::new(job::customised(&report))));
        advance(&args, &settings[..1], &mut run);
        reporter.success(
            Said::Note(&format!("{} is ready for its first boot.", path.display())),
            json!({ "command": "customize", "target": path, "init_format": report.format.name() }),
        );
        return Ok(());
    }
    let mut run = Run::new(reporter, Left::Untouched);
    let outcome = customise_all(&args, &settings, &request, &mut run);
    let cards = run.end(outcome)?;
    let mut run = Run::new(reporter, Left::Untouched);
    let done: Vec<Settings> = cards
        .iter()
        .zip(&settings)
        .filter(|(c, _)| c.result == job::CardResult::Written)
        .map(|(_, s)| s.clone())
        .collect();
    advance(&args, &done, &mut run);
    super::cards_done(
        &job::Report::Cards(job::CardsReport::new("customize", cards)),
        reporter,
    )
}

/// The preset's counter moves on past the last number a card got.
fn advance(args: &CustomizeArgs, done: &[Settings], run: &mut Run<'_>) {
    let last = done
        .iter()
        .filter(|s| s.has_counter())
        .map(|s| s.counter)
        .max();
    if let (Some(preset), Some(last)) = (args.custom.counting_preset(), last) {
        job::advance_preset(&preset, last, run);
    }
}

/// Several cards (and image files): the drives checked and asked for together (each
/// listed with its host name), then each customised in turn.
fn customise_all<'s>(
    args: &CustomizeArgs,
    settings: &'s [Settings],
    request: &dyn Fn(&'s Settings) -> Request<'s>,
    run: &mut Run<'_>,
) -> Result<Vec<job::Card>, Failure> {
    let is_device = |path: &Path| fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let wanted: Vec<job::Wanted> = args
        .targets
        .iter()
        .zip(settings)
        .filter(|(path, _)| is_device(path))
        .map(|(path, s)| job::Wanted {
            path: path.clone(),
            confirmed: None,
            gets: s
                .hostname_now()
                .ok()
                .flatten()
                .map(|h| format!("host name {h}")),
        })
        .collect();
    let mut drives = match wanted.is_empty() {
        true => Vec::new(),
        false => job::open_drives(
            &args.allowed.permission(),
            &wanted,
            &job::Incoming::customise(),
            args.skip_refused,
            run,
        )?,
    }
    .into_iter();
    let mut cards = Vec::new();
    for (index, (path, s)) in args.targets.iter().zip(settings).enumerate() {
        let started = std::time::Instant::now();
        let mut drive = None;
        let mut card_run = Run::new(run.sink, Left::Untouched);
        let outcome = if is_device(path) {
            drives
                .next()
                .expect("a drive for every device")
                .and_then(|opened| {
                    drive = Some(opened.drive.clone());
                    let file = opened.target.file();
                    let prepared = prepare(file, &opened.drive.path, true, request(s))?;
                    job::apply(prepared, file, &mut card_run)
                })
        } else {
            customise_file(path, request(s), &mut card_run)
        };
        let left = card_run.left;
        let outcome = match outcome {
            Ok(report) => {
                let said = job::customised(&report);
                run.card_event(index, path, Event::Customized(Box::new(said)));
                Ok(None)
            }
            Err(failure) => Err(job::Error { failure, left }),
        };
        cards.push(job::Card::of(
            path,
            drive.as_ref(),
            s.hostname_now().ok().flatten(),
            outcome,
            started.elapsed().as_secs_f64(),
        ));
    }
    Ok(cards)
}

/// Puts the settings on a card (asked and opened as write and erase do) or an image file.
fn customise(
    args: &CustomizeArgs,
    path: &Path,
    request: Request<'_>,
    run: &mut Run<'_>,
) -> Result<Report, Failure> {
    let is_device = fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    if is_device {
        // The same checks, question and rule as write and erase: a system drive or a fixed
        // disk is changed only after its name is typed, whatever --yes says.
        let incoming = job::Incoming::customise();
        let opened = job::open_drive(&args.allowed.permission(), path, None, &incoming, run)?;
        let file = opened.target.file();
        let prepared = prepare(file, &opened.drive.path, true, request)?;
        return job::apply(prepared, file, run);
    }
    customise_file(path, request, run)
}

/// Puts the settings into an image file.
fn customise_file(path: &Path, request: Request<'_>, run: &mut Run<'_>) -> Result<Report, Failure> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Failure::Refused(format!("cannot open {}: {e}", path.display())))?;
    // What was opened, not what the path looked like a moment ago: a device reached
    // through a path swapped meanwhile is only ever changed as a drive, above.
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(Failure::Refused(format!(
            "{} is not an image file (it changed while it was opened); nothing was changed",
            path.display()
        )));
    }
    let prepared = prepare(&file, path, false, request)?;
    // The image is about to hold password hashes and Wi-Fi keys.
    if let Some(mode) = cardsmith_engine::make_private(&file, path)? {
        job::made_private(path, mode, run);
    }
    job::apply(prepared, &file, run)
}

#[derive(Subcommand)]
pub enum PresetCommand {
    /// Save settings under a name (secrets are stored only as hashes)
    Save {
        name: String,
        #[command(flatten)]
        settings: Box<SettingsArgs>,
        /// The first number for a hostname counter
        #[arg(long, default_value_t = 1)]
        counter: u64,
    },
    /// List the saved presets
    List,
    /// Show a preset (hashes are not printed)
    Show { name: String },
    /// Delete a preset
    Delete { name: String },
}

pub fn preset(command: PresetCommand, reporter: &mut Reporter) -> Result<(), Failure> {
    let presets = Presets::open()?;
    match command {
        PresetCommand::Save {
            name,
            settings,
            counter,
        } => {
            let mut s = Settings {
                counter,
                ..Settings::default()
            };
            settings.as_ref().apply(&mut s)?;
            if s.is_empty() {
                return Err(Failure::Usage("nothing to save: give settings".into()));
            }
            let path = presets.save(&name, &s)?;
            reporter.note(
                &format!("Saved preset {name} in {}", path.display()),
                json!({ "event": "saved", "path": path }),
            );
        }
        PresetCommand::List => {
            for name in presets.list() {
                println!("{name}");
            }
        }
        PresetCommand::Show { name } => {
            let s = presets.load(&name)?;
            println!("{}", describe(&s));
        }
        PresetCommand::Delete { name } => {
            presets.delete(&name)?;
            reporter.note(
                &format!("Deleted preset {name}"),
                json!({ "event": "deleted", "preset": name }),
            );
        }
    }
    Ok(())
}

/// A preset for people: every setting, secrets shown only as "(set)".
fn describe(s: &Settings) -> String {
    let mut lines = Vec::new();
    if let Some(h) = &s.hostname {
        lines.push(format!("hostname        {h} (next number {})", s.counter));
    }
    if let Some(User { name, .. }) = &s.user {
        lines.push(format!("user            {name} (password set)"));
    }
    if let Some(Ssh {
        password_auth,
        keys,
    }) = &s.ssh
    {
        lines.push(format!(
            "ssh             on, {} key{}, password logins {}",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" },
            if *password_auth { "allowed" } else { "off" }
        ));
    }
    for (n, w) in s.wifi.iter().enumerate() {
        lines.push(format!(
            "wifi            {:?} ({}{}, password set{})",
            String::from_utf8_lossy(&w.ssid),
            w.country,
            if w.hidden { ", hidden" } else { "" },
            if s.wifi.len() > 1 {
                format!(", preference {}", n + 1)
            } else {
                String::new()
            }
        ));
    }
    for f in &s.static_ip {
        let mut text = format!("static ip       {} {}", f.interface.name(), f.cidr());
        if let Some(gw) = f.gateway {
            text += &format!(" via {gw}");
        }
        if !f.dns.is_empty() {
            let dns: Vec<String> = f.dns.iter().map(|d| d.to_string()).collect();
            text += &format!(", DNS {}", dns.join(" "));
        }
        lines.push(text);
    }
    for (label, value) in [("timezone", &s.timezone), ("keymap", &s.keymap)] {
        if let Some(v) = value {
            lines.push(format!("{label:<16}{v}"));
        }
    }
    if s.passwordless_sudo {
        lines.push("sudo            without a password".into());
    }
    lines.join("\n")
}
