//! cardsmith-customize makes a Raspberry Pi reachable on its first boot with no screen or
//! keyboard: it writes host name, user, SSH, Wi-Fi networks, fixed addresses, time zone and
//! keymap onto the FAT boot partition of a written card or an image file, without mounting
//! anything.
//!
//! [`Settings`] holds what to set (secrets only as hashes: [`PasswordHashes`], the Wi-Fi
//! PSKs), checked by [`Settings::validate`]. [`prepare`] finds the first FAT partition (MBR
//! or GPT), reads the image's root filesystem ([`inspect`]: os-release, fstab, the
//! uid-1000 user, systemd, cloud-init, the network manager, Raspberry Pi OS's helpers),
//! chooses the [`Format`] (the catalog's `init_format` or the user's, else what will run
//! there; an image where nothing will is refused), and renders the files: `firstrun.sh`
//! plus `cmdline.txt` naming the path the first boot finds for `systemd`; NoCloud
//! `user-data`/`network-config`/`meta-data` and `ds=nocloud` on `cmdline.txt` for
//! `cloudinit` and `cloudinit-rpi`. [`Prepared::apply`] writes them through `fatfs`, syncs,
//! and reads them back from the medium to compare. [`examine`] inspects without writing.
//! [`presets`] keeps named settings for whole clusters, with a hostname counter.
//!
//! This crate does not write images and does not prompt; secrets reach it already read.

mod boot;
mod cloudinit;
mod error;
pub mod expand;
pub mod inspect;
mod network;
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
pub use inspect::{Choice, Effect, Inspection};
pub use secret::{wifi_psk, PasswordHashes};
pub use settings::{render_hostname, Interface, Rpi, Serial, Settings, Ssh, StaticIp, User, Wifi};

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

    /// Whether this format can carry everything `settings` asks for: the Raspberry Pi
    /// interfaces only go through `cloudinit-rpi`.
    pub fn takes(self, settings: &Settings) -> Result<(), Error> {
        if settings.rpi.any() && self != Format::CloudInitRpi {
            return Err(Error::NeedsCloudInitRpi {
                setting: "--enable-i2c/--enable-spi/--enable-onewire/--enable-serial/--usb-gadget",
                format: self.name(),
            });
        }
        Ok(())
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
    /// The catalog's `init_format` or the user's `--init-format`; `None`: inspect the image.
    pub format: Option<&'a str>,
    /// Who gave `format`, for messages: "the catalog", "--init-format".
    pub format_by: &'a str,
    /// The image's release date ("2024-11-19"), when the catalog says it.
    pub release_date: Option<&'a str>,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub format: Format,
    /// Whether the format was found from the image rather than given.
    pub detected: bool,
    /// Why this format: "the catalog says systemd", "cloud-init reads NoCloud seeds".
    pub why: String,
    /// What inspection found against a given format.
    pub disagreement: Option<String>,
    /// What the image's root filesystem showed; `None` when it could not be read.
    pub inspection: Option<Inspection>,
    /// What each setting asked for does on this image.
    pub effects: Vec<Effect>,
    /// The files written to the boot partition.
    pub files: Vec<String>,
    pub hostname: Option<String>,
    /// "yescrypt" or "sha256-crypt", when a password was set.
    pub password_hash: Option<&'static str>,
    /// Things worth knowing: an unreadable root filesystem, a boot partition mounted
    /// `nofail`.
    pub notes: Vec<String>,
}

/// What the files are rendered for: the path cmdline.txt names for firstrun.sh, and the
/// image's uid-1000 user (which cloud-init renames rather than adding a second user).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub script: &'a str,
    pub first_user: Option<&'a str>,
    /// NetworkManager renders the image's network configuration.
    pub network_manager: bool,
    /// Where NoCloud finds its seed when the image's cloud-init configuration does not
    /// say (`file:///boot/firmware/`): added to the `ds=` word as `s=`.
    pub seed: Option<&'a str>,
}

impl Default for Facts<'_> {
    fn default() -> Self {
        Facts {
            script: systemd::LEGACY_SCRIPT,
            first_user: None,
            network_manager: false,
            seed: None,
        }
    }
}

/// The boot partition's files that tell how the image boots: read by [`survey`].
const SEED_FILES: [&str; 3] = ["cmdline.txt", "issue.txt", "user-data"];

/// What [`prepare`] and [`examine`] both start from: the boot partition, its first-boot
/// files, and what the root filesystem shows (or why it could not be read).
struct Survey {
    /// The image or card, without O_DIRECT (fatfs reads odd sizes).
    disk: File,
    span: boot::Span,
    /// cmdline.txt, issue.txt and user-data, where present.
    seeds: [Option<Vec<u8>>; 3],
    inspection: Result<Inspection, String>,
}

impl Survey {
    fn seeds(&self) -> [Option<&[u8]>; 3] {
        [0, 1, 2].map(|i| self.seeds[i].as_deref())
    }
}

/// Finds the boot partition of the image or card open in `file`, reads its first-boot
/// files and inspects the root filesystem; changes nothing.
fn survey(file: &File, path: &Path) -> Result<Survey, Error> {
    let io = |what: &'static str| {
        move |source: io::Error| Error::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let mut disk = file.try_clone().map_err(io("reopen"))?;
    // fatfs reads and writes odd sizes, which O_DIRECT (as the engine left the descriptor)
    // refuses; the page cache takes them, and is synced after writing.
    boot::set_direct(&disk, false).map_err(io("switch off O_DIRECT on"))?;
    let span = boot::find(&mut disk, path)?;
    let read = boot::read_files(boot::Slice::new(boot::ReadOnly(&disk), span), &SEED_FILES)
        .map_err(|e| Error::Fat {
            path: path.to_owned(),
            what: "read",
            detail: e.to_string(),
        })?;
    let mut read = read.into_iter();
    let seeds = [(); 3].map(|_| read.next().flatten());
    let inspection = inspect_root(&disk, span, seeds[0].as_deref());
    Ok(Survey {
        disk,
        span,
        seeds,
        inspection,
    })
}

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
    let Survey {
        mut disk,
        span,
        seeds,
        inspection,
    } = survey(file, path)?;
    let [cmdline, issue, user_data] = seeds;
    let given = request
        .format
        .map(Format::parse)
        .transpose()?
        .map(|format| inspect::Given {
            format,
            by: request.format_by,
        });
    let mut notes = Vec::new();
    let inspection = match inspection {
        Ok(found) => Some(found),
        Err(why) => {
            notes.push(format!(
                "the image's root filesystem could not be inspected ({why}): the format is \
                 taken from the boot partition's files"
            ));
            None
        }
    };
    let choice = decide(
        inspection.as_ref(),
        given,
        [cmdline.as_deref(), issue.as_deref(), user_data.as_deref()],
        path,
    )?;
    let format = choice.format;
    format.takes(settings)?;
    let effects = match &inspection {
        Some(found) => {
            let refused = inspect::refusals(found, format, settings);
            if !refused.is_empty() {
                return Err(Error::SettingsRefused {
                    os: inspect::os_name(found),
                    format: format.name(),
                    refused: refused
                        .iter()
                        .map(Effect::describe)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            match &found.boot_mount {
                Some(m) if m.nofail && format == Format::Systemd => notes.push(format!(
                    "the image mounts its boot partition at {} with nofail, so the first \
                     boot may run before it is there and miss firstrun.sh",
                    m.point
                )),
                None if format == Format::Systemd => notes.push(
                    "the image's fstab does not mount the boot partition, so its first boot \
                     may not find firstrun.sh"
                        .into(),
                ),
                _ => {}
            }
            inspect::effects(found, format)
                .into_iter()
                .filter(|e| inspect::asked(settings, e.setting))
                .collect()
        }
        None => Vec::new(),
    };
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
    let seed = inspection.as_ref().and_then(seed_for);
    let facts = Facts {
        script: choice.script.as_deref().unwrap_or(systemd::LEGACY_SCRIPT),
        first_user: inspection.as_ref().and_then(|i| i.first_user.as_deref()),
        network_manager: inspection.as_ref().is_some_and(|i| i.network_manager),
        seed: seed.as_deref(),
    };
    let files = render(
        format,
        settings,
        hostname.as_deref(),
        hash.as_deref(),
        cmdline.as_deref(),
        facts,
    )?;
    let report = Report {
        format,
        detected: given.is_none(),
        why: choice.why,
        disagreement: choice.disagreement,
        effects,
        notes,
        files: files.iter().map(|(name, _)| name.clone()).collect(),
        hostname,
        password_hash: settings
            .user
            .as_ref()
            .map(|_| if modern { "yescrypt" } else { "sha256-crypt" }),
        inspection,
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

/// What inspecting an image or a card found, and how it would take settings.
pub struct Examined {
    /// What its root filesystem shows, or why it could not be read.
    pub inspection: Result<Inspection, String>,
    /// The format chosen (from inspection, or the boot partition's files when the root
    /// could not be read), or why the image cannot take settings.
    pub choice: Result<Choice, Error>,
    /// What each setting would do.
    pub effects: Vec<Effect>,
}

impl Examined {
    /// The system's name from its os-release (PRETTY_NAME, else NAME), when its root
    /// filesystem could be read and has one.
    pub fn os_name(&self) -> Option<&str> {
        let os = self.inspection.as_ref().ok()?.os.as_ref()?;
        Some(&os.name)
    }
}

/// A root-folder file of the boot partition of the image open in `file` (`None` when it is
/// not there); an error when there is no FAT boot partition.
pub fn boot_file(file: &File, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let path = Path::new("the image");
    let mut disk = file.try_clone().map_err(|source| Error::Io {
        what: "reopen",
        path: path.to_owned(),
        source,
    })?;
    let span = boot::find(&mut disk, path)?;
    let mut files = boot::read_files(boot::Slice::new(boot::ReadOnly(&disk), span), &[name])
        .map_err(|e| Error::Fat {
            path: path.to_owned(),
            what: "read",
            detail: e.to_string(),
        })?;
    Ok(files.pop().flatten())
}

/// Inspects the image or card open in `file` (at `path`) without changing it: its boot
/// partition's cmdline.txt and its root filesystem, and the format `given` (or found).
pub fn examine(
    file: &File,
    path: &Path,
    given: Option<inspect::Given<'_>>,
) -> Result<Examined, Error> {
    let found = survey(file, path)?;
    let choice = decide(found.inspection.as_ref().ok(), given, found.seeds(), path);
    let inspection = found.inspection;
    let effects = match (&inspection, &choice) {
        (Ok(found), Ok(c)) => inspect::effects(found, c.format),
        _ => Vec::new(),
    };
    Ok(Examined {
        inspection,
        choice,
        effects,
    })
}

/// The format for an image: from inspection when its root filesystem could be read, else
/// the one given, else the one the boot partition's files (`[cmdline.txt, issue.txt,
/// user-data]`) suggest.
fn decide(
    inspection: Option<&Inspection>,
    given: Option<inspect::Given<'_>>,
    [cmdline, issue, user_data]: [Option<&[u8]>; 3],
    path: &Path,
) -> Result<Choice, Error> {
    if let Some(found) = inspection {
        return inspect::choose(found, given);
    }
    let format = match given {
        Some(g) => g.format,
        None => detect(cmdline.is_some(), user_data.is_some(), issue).ok_or_else(|| {
            Error::UnknownFormat {
                path: path.to_owned(),
            }
        })?,
    };
    Ok(Choice {
        format,
        why: match given {
            Some(g) => format!("{} says {}", g.by, format.name()),
            None => "found from the boot partition's files".into(),
        },
        disagreement: None,
        script: (format == Format::Systemd).then(|| systemd::LEGACY_SCRIPT.to_owned()),
    })
}

/// Where NoCloud is to look for the seed, when the image's cloud-init configuration names
/// no place (no `seedfrom`, no `fs_label`; the boot partition is not labelled "cidata"):
/// the boot partition's mount point.
fn seed_for(ins: &Inspection) -> Option<String> {
    let cloud = ins.cloud_init.as_ref()?;
    if cloud.seedfrom.is_some() || cloud.fs_label.is_some() {
        return None;
    }
    let point = &ins.boot_mount.as_ref()?.point;
    Some(format!("file://{}/", point.trim_end_matches('/')))
}

/// Inspects the image's root filesystem: the first ext2/3/4 partition other than the boot
/// partition. The error says why there is nothing to inspect.
pub fn inspect_root(
    disk: &File,
    boot: boot::Span,
    cmdline: Option<&[u8]>,
) -> Result<Inspection, String> {
    let mut reader = disk;
    let table = boot::partitions(&mut reader)?;
    let root = table
        .spans
        .iter()
        .map(|&(_, span)| span)
        .find(|&span| span != boot && inspect::is_ext(disk, span))
        .ok_or("it has no ext2/3/4 root partition")?;
    inspect::inspect(disk, root, cmdline)
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
/// cmdline.txt (needed by `systemd`; cloud-init gets its `ds=` word there).
pub fn render(
    format: Format,
    settings: &Settings,
    hostname: Option<&str>,
    hash: Option<&str>,
    cmdline: Option<&[u8]>,
    facts: Facts<'_>,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    format.takes(settings)?;
    let mut files = Vec::new();
    match format {
        Format::Systemd => {
            let original = cmdline.ok_or_else(|| {
                Error::invalid("image", "", "a systemd image needs a cmdline.txt on its boot partition, and this one has none")
            })?;
            files.push((
                "firstrun.sh".into(),
                systemd::firstrun(settings, hostname, hash, &uuids(settings)?),
            ));
            files.push((
                "cmdline.txt".into(),
                systemd::cmdline(original, settings, facts.script),
            ));
        }
        Format::CloudInit | Format::CloudInitRpi => {
            let rpi = format == Format::CloudInitRpi;
            // Ethernet goes through network-config, Wi-Fi through NetworkManager's keyfiles.
            let keyfiles = match facts.network_manager {
                true => network::keyfiles(settings, &uuids(settings)?, false),
                false => Vec::new(),
            };
            files.push((
                "user-data".into(),
                cloudinit::user_data(settings, hostname, hash, rpi, facts.first_user, &keyfiles)?
                    .into_bytes(),
            ));
            let instance = format!("cardsmith-{}", random_hex(8)?);
            files.push((
                "meta-data".into(),
                cloudinit::meta_data(hostname, &instance).into_bytes(),
            ));
            if let Some(network) = cloudinit::network_config(settings, facts.network_manager)? {
                files.push(("network-config".into(), network.into_bytes()));
            }
            if let Some(original) = cmdline {
                let line = systemd::cloud_cmdline(original, settings, &instance, facts.seed);
                files.push(("cmdline.txt".into(), line));
            }
        }
    }
    Ok(files)
}

/// One connection id per Wi-Fi network, and one for Ethernet.
fn uuids(settings: &Settings) -> Result<Vec<String>, Error> {
    (0..=settings.wifi.len()).map(|_| random_uuid()).collect()
}

fn random_uuid() -> Result<String, Error> {
    let id = random_hex(16)?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    ))
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
