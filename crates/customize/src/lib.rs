//! cardsmith-customize makes a Raspberry Pi reachable on its first boot with no screen or
//! keyboard: it writes host name, user, SSH, Wi-Fi, time zone and keymap onto the FAT boot
//! partition of a written card or an image file, without mounting anything.
//!
//! [`Settings`] holds what to set (secrets only as hashes: [`PasswordHashes`], the Wi-Fi
//! PSK), checked by [`Settings::validate`]. [`customize`] finds the first FAT partition
//! (MBR or GPT), works out the [`Format`] (from the catalog's `init_format`, the user, or
//! the partition's files), renders the files — `firstrun.sh` plus `cmdline.txt` for
//! `systemd`, NoCloud `user-data`/`network-config`/`meta-data` for `cloudinit` and
//! `cloudinit-rpi` — writes them through `fatfs`, syncs, and reads them back from the
//! medium to compare. [`presets`] keeps named settings for whole clusters, with a hostname
//! counter.
//!
//! This crate does not write images and does not prompt; secrets reach it already read.

mod boot;
mod cloudinit;
mod error;
pub mod presets;
mod quote;
mod secret;
mod settings;
mod systemd;
pub mod validate;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use boot::format_card;
pub use error::Error;
pub use secret::{wifi_psk, PasswordHashes};
pub use settings::{render_hostname, Rpi, Serial, Settings, Ssh, User, Wifi};

/// How an image takes its first-boot settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Systemd,
    CloudInit,
    CloudInitRpi,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Systemd => "systemd",
            Format::CloudInit => "cloudinit",
            Format::CloudInitRpi => "cloudinit-rpi",
        }
    }

    /// A catalog's `init_format` or `--init-format`. "" and "none" mean the image takes no
    /// customisation.
    pub fn parse(text: &str) -> Result<Format, Error> {
        match text {
            "systemd" => Ok(Format::Systemd),
            "cloudinit" => Ok(Format::CloudInit),
            "cloudinit-rpi" => Ok(Format::CloudInitRpi),
            "" | "none" => Err(Error::NotCustomizable(text.to_owned())),
            other => Err(Error::invalid(
                "init format",
                other,
                "cardsmith knows systemd, cloudinit and cloudinit-rpi",
            )),
        }
    }
}

/// What to customise with.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub settings: &'a Settings,
    /// The catalog's `init_format` or the user's `--init-format`; `None`: detect it.
    pub format: Option<&'a str>,
    /// The image's release date ("2024-11-19"), when the catalog says it.
    pub release_date: Option<&'a str>,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub format: Format,
    /// Whether the format was found from the partition's files rather than given.
    pub detected: bool,
    /// The files written to the boot partition.
    pub files: Vec<String>,
    pub hostname: Option<String>,
    /// "yescrypt" or "sha256-crypt", when a password was set.
    pub password_hash: Option<&'static str>,
}

const SEED_FILES: [&str; 5] = [
    "cmdline.txt",
    "issue.txt",
    "user-data",
    "meta-data",
    "network-config",
];

/// Customises the image or card open in `file` (at `path`; `device` for a block device):
/// [`prepare`], then [`Prepared::apply`].
pub fn customize(
    file: &File,
    path: &Path,
    device: bool,
    request: Request<'_>,
) -> Result<Report, Error> {
    prepare(file, path, device, request)?.apply(file)
}

/// Everything decided, nothing written yet: the boot partition found, the format chosen,
/// the files rendered. Every refusal (no partition table, no cmdline.txt, a bad setting)
/// happens before this exists.
pub struct Prepared {
    disk: File,
    path: std::path::PathBuf,
    device: bool,
    span: boot::Span,
    files: Vec<(String, Vec<u8>)>,
    report: Report,
}

/// Reads the boot partition of the image or card open in `file` and renders the files the
/// settings need; writes nothing.
pub fn prepare(
    file: &File,
    path: &Path,
    device: bool,
    request: Request<'_>,
) -> Result<Prepared, Error> {
    let settings = request.settings;
    settings.validate()?;
    let io = |what: &'static str| {
        move |source: io::Error| Error::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let fat = |what: &'static str| {
        move |e: io::Error| Error::Fat {
            path: path.to_owned(),
            what,
            detail: e.to_string(),
        }
    };
    let mut disk = file.try_clone().map_err(io("reopen"))?;
    // fatfs reads and writes odd sizes, which O_DIRECT (as the engine left the descriptor)
    // refuses; the page cache takes them, and is synced below.
    boot::set_direct(&disk, false).map_err(io("switch off O_DIRECT on"))?;
    let span = boot::find(&mut disk, path)?;
    let existing =
        boot::read_files(boot::Slice::new(&mut disk, span), &SEED_FILES).map_err(fat("read"))?;
    let [cmdline, issue, user_data, ..] = [0, 1, 2].map(|i| existing[i].clone());
    let (format, detected) = match request.format {
        Some(text) => (Format::parse(text)?, false),
        None => (
            detect(cmdline.is_some(), user_data.is_some(), issue.as_deref()).ok_or_else(|| {
                Error::UnknownFormat {
                    path: path.to_owned(),
                }
            })?,
            true,
        ),
    };
    if settings.rpi.any() && format != Format::CloudInitRpi {
        return Err(Error::NeedsCloudInitRpi {
            setting: "--enable-i2c/--enable-spi/--enable-onewire/--enable-serial/--usb-gadget",
            format: format.name(),
        });
    }
    if format == Format::Systemd && cmdline.is_none() {
        return Err(Error::NoCmdline {
            path: path.to_owned(),
            partition: format!(
                "the FAT partition at byte {}, {} bytes",
                span.offset, span.len
            ),
        });
    }
    let label = boot::label(boot::Slice::new(&mut disk, span)).unwrap_or_default();
    let modern = is_modern(request.release_date, issue.as_deref(), &label);
    let hostname = settings.hostname_now()?;
    let hash = settings
        .user
        .as_ref()
        .map(|u| u.password.for_release(modern).to_owned());
    let files = render(
        format,
        settings,
        hostname.as_deref(),
        hash.as_deref(),
        cmdline.as_deref(),
    )?;
    let report = Report {
        format,
        detected,
        files: files.iter().map(|(name, _)| name.clone()).collect(),
        hostname,
        password_hash: settings
            .user
            .as_ref()
            .map(|_| if modern { "yescrypt" } else { "sha256-crypt" }),
    };
    Ok(Prepared {
        disk,
        path: path.to_owned(),
        device,
        span,
        files,
        report,
    })
}

impl Prepared {
    /// What will be (and, once applied, was) done.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Writes the files into the boot partition, flushes them, and reads them back from the
    /// medium through `file` (the descriptor [`prepare`] was given) to compare.
    pub fn apply(mut self, file: &File) -> Result<Report, Error> {
        let path = self.path.as_path();
        boot::write_files(boot::Slice::new(&mut self.disk, self.span), &self.files).map_err(
            |e| Error::Fat {
                path: path.to_owned(),
                what: "written",
                detail: e.to_string(),
            },
        )?;
        self.disk.sync_all().map_err(|source| Error::Flush {
            path: path.to_owned(),
            source,
        })?;
        read_back(file, path, self.device, self.span, &self.files)?;
        Ok(self.report)
    }
}

/// The format from the boot partition's files: cloud-init seeds mean cloud-init (the
/// Raspberry Pi flavour when issue.txt says Raspberry Pi OS made it), a cmdline.txt alone
/// means systemd.
fn detect(cmdline: bool, user_data: bool, issue: Option<&[u8]>) -> Option<Format> {
    let raspberry =
        issue.is_some_and(|t| String::from_utf8_lossy(t).contains("Raspberry Pi reference"));
    match (user_data, cmdline) {
        (true, _) if raspberry => Some(Format::CloudInitRpi),
        (true, _) => Some(Format::CloudInit),
        (false, true) => Some(Format::Systemd),
        (false, false) => None,
    }
}

/// yescrypt for images released on or after 2023-01-01: by the catalog's date, else the
/// date in issue.txt ("Raspberry Pi reference 2024-11-19"), else a modern layout (the boot
/// partition labelled "bootfs", as since Bookworm).
fn is_modern(release: Option<&str>, issue: Option<&[u8]>, label: &str) -> bool {
    let from_issue = issue.and_then(|t| {
        let text = String::from_utf8_lossy(t);
        let at = text.find("reference ")? + "reference ".len();
        text.get(at..at + 10).map(str::to_owned)
    });
    match release.map(str::to_owned).or(from_issue) {
        Some(date) if date.len() >= 10 => date.as_str() >= "2023-01-01",
        _ => label.eq_ignore_ascii_case("bootfs"),
    }
}

/// The files `customize` writes for `format`: name and content. `cmdline` is the image's
/// cmdline.txt (needed by `systemd`).
pub fn render(
    format: Format,
    settings: &Settings,
    hostname: Option<&str>,
    hash: Option<&str>,
    cmdline: Option<&[u8]>,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut files = Vec::new();
    match format {
        Format::Systemd => {
            let original = cmdline.ok_or_else(|| {
                Error::invalid("image", "", "a systemd image needs a cmdline.txt on its boot partition, and this one has none")
            })?;
            let id = random_hex(16)?;
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &id[..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..]
            );
            files.push((
                "firstrun.sh".into(),
                systemd::firstrun(settings, hostname, hash, &uuid),
            ));
            files.push(("cmdline.txt".into(), systemd::cmdline(original, settings)));
        }
        Format::CloudInit | Format::CloudInitRpi => {
            let rpi = format == Format::CloudInitRpi;
            files.push((
                "user-data".into(),
                cloudinit::user_data(settings, hostname, hash, rpi)?.into_bytes(),
            ));
            let instance = format!("cardsmith-{}", random_hex(8)?);
            files.push((
                "meta-data".into(),
                cloudinit::meta_data(hostname, &instance).into_bytes(),
            ));
            if let Some(network) = cloudinit::network_config(settings)? {
                files.push(("network-config".into(), network.into_bytes()));
            }
            if let (Some(original), Some(_)) = (cmdline, &settings.wifi) {
                let line = systemd::with_regdom(original, settings);
                files.push(("cmdline.txt".into(), line));
            }
        }
    }
    Ok(files)
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Crypto(format!("no random numbers: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the files back from the medium and compares them: through a fresh O_DIRECT handle
/// on a device (the same descriptor with O_DIRECT when a fresh one may not be opened, as for
/// a normal user's UDisks2 descriptor), through a fresh handle with its cache dropped on a
/// file.
fn read_back(
    file: &File,
    path: &Path,
    device: bool,
    span: boot::Span,
    files: &[(String, Vec<u8>)],
) -> Result<(), Error> {
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let fat = |e: io::Error| Error::Fat {
        path: path.to_owned(),
        what: "read back",
        detail: e.to_string(),
    };
    let got = if device {
        let fresh = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let handle = match fresh {
            Ok(f) => f,
            Err(_) => {
                let again = file.try_clone().map_err(fat)?;
                boot::set_direct(&again, true).map_err(fat)?;
                again
            }
        };
        drop_cache(&handle);
        boot::read_files(
            boot::Slice::new(boot::ReadOnly(boot::DirectReader::new(handle)), span),
            &names,
        )
        .map_err(fat)?
    } else {
        let fresh = File::open(path).map_err(fat)?;
        drop_cache(&fresh);
        boot::read_files(boot::Slice::new(boot::ReadOnly(fresh), span), &names).map_err(fat)?
    };
    for ((name, want), have) in files.iter().zip(got) {
        if have.as_ref() != Some(want) {
            return Err(Error::ReadBack {
                path: path.to_owned(),
                file: name.clone(),
            });
        }
    }
    Ok(())
}

fn drop_cache(file: &File) {
    // SAFETY: advisory call on a descriptor we own.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_from_the_boot_files() {
        let pi = Some(&b"Raspberry Pi reference 2025-10-01\n"[..]);
        assert_eq!(detect(true, true, pi), Some(Format::CloudInitRpi));
        assert_eq!(detect(true, true, None), Some(Format::CloudInit));
        assert_eq!(detect(true, false, pi), Some(Format::Systemd));
        assert_eq!(detect(false, false, None), None);
    }

    #[test]
    fn yescrypt_from_2023_on() {
        assert!(is_modern(Some("2023-01-01"), None, "boot"));
        assert!(!is_modern(Some("2022-09-22"), None, "bootfs"));
        assert!(!is_modern(
            None,
            Some(b"Raspberry Pi reference 2022-04-04\n"),
            "bootfs"
        ));
        assert!(is_modern(None, None, "bootfs"));
        assert!(!is_modern(None, None, "boot"));
    }
}
