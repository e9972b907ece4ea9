//! What an image's root filesystem says about how it applies first-boot settings, read
//! without mounting anything (the `ext4-view` crate reads ext2/3/4 read-only, replaying
//! the journal in memory), and the format and per-setting ways chosen from it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use ext4_view::{Ext4, Ext4Error, Ext4Read};
use serde::Serialize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::boot::Span;
use crate::settings::Settings;
use crate::systemd::{FIRMWARE_SCRIPT, LEGACY_SCRIPT};
use crate::{Error, Format};

/// Raspberry Pi OS's helpers, where its packages put them.
const IMAGER_CUSTOM: &str = "/usr/lib/raspberrypi-sys-mods/imager_custom";
pub(crate) const FIRSTBOOT: &str = "/usr/lib/raspberrypi-sys-mods/firstboot";
const USERCONF: &str = "/usr/lib/userconf-pi/userconf";
/// The initramfs steps that grow the root partition on first boot: Bookworm's (acting on
/// `init=…/firstboot`) and Trixie's (acting on the `resize` word).
const GROW_FIRSTBOOT: &str = "/usr/share/initramfs-tools/scripts/local-premount/firstboot";
const GROW_RESIZE: &str = "/usr/share/initramfs-tools/scripts/local-premount/resize_early";
/// Trixie's unit that has systemd grow the root filesystem on a first boot.
const RPI_RESIZE: [&str; 2] = [
    "/usr/lib/systemd/system/rpi-resize.service",
    "/lib/systemd/system/rpi-resize.service",
];
const IMAGER_FIXUP: [&str; 2] = [
    "/usr/share/initramfs-tools/scripts/local-bottom/imager_fixup",
    "/etc/initramfs-tools/scripts/local-bottom/imager_fixup",
];

/// What inspection found on the root filesystem (and the boot partition's cmdline.txt).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// os-release: PRETTY_NAME (else NAME), VERSION_ID, VERSION_CODENAME.
    pub os: Option<OsRelease>,
    /// Where fstab mounts the FAT partition.
    pub boot_mount: Option<BootMount>,
    pub imager_custom: bool,
    pub userconf: bool,
    /// The initramfs step that rewrites `/boot/firstrun.sh` to `/boot/firmware/firstrun.sh`.
    pub imager_fixup: bool,
    /// `/usr/lib/raspberrypi-sys-mods/firstboot` (Bookworm's `init=` first boot).
    pub firstboot: bool,
    /// The initramfs step that grows the root partition and filesystem when `init=` names
    /// the first-boot script (Bookworm).
    pub grow_on_firstboot: bool,
    /// The initramfs step that grows the root partition on the `resize` word (Trixie).
    pub grow_on_resize: bool,
    /// rpi-resize.service: systemd grows the root filesystem on a first boot (Trixie).
    pub rpi_resize: bool,
    /// cloud-utils' growpart, which cloud-init's growpart module runs.
    pub growpart: bool,
    pub raspi_config: bool,
    pub cloud_init: Option<CloudInit>,
    pub network_manager: bool,
    pub netplan: bool,
    pub wpa_supplicant: bool,
    pub dhcpcd: bool,
    pub openssh_server: bool,
    pub systemd: bool,
    /// The name of the user with uid 1000.
    pub first_user: Option<String>,
    /// The words on cmdline.txt that matter to first boot.
    pub cmdline: Cmdline,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    pub name: String,
    pub version: Option<String>,
    pub codename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootMount {
    /// "/boot/firmware" or "/boot".
    pub point: String,
    /// `nofail`: booting does not wait for it, so a first-boot script there may be missed.
    pub nofail: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CloudInit {
    /// `datasource_list`, when the configuration limits it.
    pub datasources: Option<Vec<String>>,
    /// NoCloud's `seedfrom`, when configured.
    pub seedfrom: Option<String>,
    /// NoCloud's `fs_label`, when configured (cloud-init's default is "cidata").
    pub fs_label: Option<String>,
    /// `/etc/rpi-issue`: cloud-init's Raspberry Pi module acts only where it exists.
    pub rpi_issue: bool,
    /// cloud-init's Raspberry Pi module (`cc_raspberry_pi`, cloud-init 25.2 on).
    pub rpi_module: bool,
}

impl CloudInit {
    /// Whether cloud-init will look for NoCloud seeds at all.
    pub fn reads_nocloud(&self) -> bool {
        self.datasources
            .as_ref()
            .is_none_or(|list| list.iter().any(|d| d.eq_ignore_ascii_case("nocloud")))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cmdline {
    /// An `init=` word (`/usr/lib/raspberrypi-sys-mods/firstboot` on Bookworm).
    pub init: Option<String>,
    /// Trixie's `resize` word.
    pub resize: bool,
    /// A `ds=` word (cloud-init).
    pub ds: Option<String>,
    /// A `systemd.run=` word left by an earlier customisation.
    pub systemd_run: Option<String>,
}

impl Cmdline {
    pub fn parse(text: &[u8]) -> Cmdline {
        let line = String::from_utf8_lossy(text);
        let first = line.lines().next().unwrap_or_default();
        let mut words = Cmdline::default();
        for word in first.split_whitespace() {
            if let Some(v) = word.strip_prefix("init=") {
                words.init = Some(v.to_owned());
            } else if word == "resize" {
                words.resize = true;
            } else if word.starts_with("ds=") {
                words.ds = Some(word.to_owned());
            } else if let Some(v) = word.strip_prefix("systemd.run=") {
                words.systemd_run = Some(v.to_owned());
            }
        }
        words
    }
}

/// Reads a partition of an image or card through positioned reads.
struct Partition {
    file: File,
    span: Span,
}

impl Ext4Read for Partition {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        start
            .checked_add(dst.len() as u64)
            .filter(|&end| end <= self.span.len)
            .ok_or("a read past the end of the partition")?;
        self.file.read_exact_at(dst, self.span.offset + start)?;
        Ok(())
    }
}

/// Whether the partition at `span` holds an ext2/3/4 filesystem (its superblock magic).
pub fn is_ext(file: &File, span: Span) -> bool {
    let mut magic = [0u8; 2];
    span.len > 2048
        && file
            .read_exact_at(&mut magic, span.offset + 1024 + 56)
            .is_ok()
        && magic == [0x53, 0xEF]
}

/// Inspects the ext2/3/4 root filesystem at `span` of `file` (a descriptor without
/// O_DIRECT), with the boot partition's cmdline.txt.
pub fn inspect(file: &File, span: Span, cmdline: Option<&[u8]>) -> Result<Inspection, String> {
    let reader = Partition {
        file: file.try_clone().map_err(|e| e.to_string())?,
        span,
    };
    let fs = Ext4::load(Box::new(reader)).map_err(|e| e.to_string())?;
    let root = Root(fs);
    Ok(Inspection {
        os: root
            .text("/etc/os-release")
            .or_else(|| root.text("/usr/lib/os-release"))
            .map(|t| os_release(&t)),
        boot_mount: root.text("/etc/fstab").and_then(|t| boot_mount(&t)),
        imager_custom: root.exists(IMAGER_CUSTOM),
        userconf: root.exists(USERCONF),
        imager_fixup: IMAGER_FIXUP.iter().any(|p| root.exists(p)),
        firstboot: root.exists(FIRSTBOOT),
        grow_on_firstboot: root.exists(GROW_FIRSTBOOT),
        grow_on_resize: root.exists(GROW_RESIZE),
        rpi_resize: root.any(&RPI_RESIZE),
        growpart: root.any(&["/usr/bin/growpart", "/usr/sbin/growpart"]),
        raspi_config: root.any(&["/usr/bin/raspi-config"]),
        cloud_init: cloud_init(&root),
        network_manager: root.any(&["/usr/sbin/NetworkManager", "/sbin/NetworkManager"]),
        netplan: root.any(&["/usr/sbin/netplan", "/sbin/netplan", "/usr/bin/netplan"]),
        wpa_supplicant: root.any(&["/usr/sbin/wpa_supplicant", "/sbin/wpa_supplicant"]),
        dhcpcd: root.any(&["/usr/sbin/dhcpcd", "/sbin/dhcpcd"]),
        openssh_server: root.any(&["/usr/sbin/sshd"]),
        systemd: root.any(&["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]),
        first_user: root.text("/etc/passwd").and_then(|t| first_user(&t)),
        cmdline: cmdline.map(Cmdline::parse).unwrap_or_default(),
    })
}

struct Root(Ext4);

impl Root {
    fn exists(&self, path: &str) -> bool {
        // A dangling or looping link, or an unreadable directory, counts as absent.
        matches!(self.0.exists(path), Ok(true))
    }

    fn any(&self, paths: &[&str]) -> bool {
        paths.iter().any(|p| self.exists(p))
    }

    fn text(&self, path: &str) -> Option<String> {
        let bytes: Result<Vec<u8>, Ext4Error> = self.0.read(path);
        bytes.ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn names(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = self.0.read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().as_str().ok().map(str::to_owned))
            .collect();
        names.sort();
        names
    }
}

fn os_release(text: &str) -> OsRelease {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
            .filter(|v| !v.is_empty())
    };
    OsRelease {
        name: value("PRETTY_NAME")
            .or_else(|| value("NAME"))
            .unwrap_or_else(|| "an unnamed system".into()),
        version: value("VERSION_ID"),
        codename: value("VERSION_CODENAME"),
    }
}

/// The fstab line that mounts a FAT filesystem (or anything at /boot/firmware).
fn boot_mount(fstab: &str) -> Option<BootMount> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .find(|f| f[2] == "vfat" || f[1] == "/boot/firmware")
        .map(|f| BootMount {
            point: f[1].to_owned(),
            nofail: f
                .get(3)
                .is_some_and(|o| o.split(',').any(|o| o == "nofail")),
        })
}

fn first_user(passwd: &str) -> Option<String> {
    passwd.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(':').collect();
        (fields.len() >= 7 && fields[2] == "1000").then(|| fields[0].to_owned())
    })
}

/// cloud-init, unless it is missing or switched off, with what its configuration files
/// (cloud.cfg, then cloud.cfg.d/*.cfg in order, later ones winning) say about NoCloud.
fn cloud_init(root: &Root) -> Option<CloudInit> {
    let installed = root.any(&["/usr/bin/cloud-init", "/bin/cloud-init"]);
    if !installed || root.exists("/etc/cloud/cloud-init.disabled") {
        return None;
    }
    let mut found = CloudInit {
        rpi_issue: root.exists("/etc/rpi-issue"),
        rpi_module: root.any(&[
            "/usr/lib/python3/dist-packages/cloudinit/config/cc_raspberry_pi.py",
            "/usr/lib/python3/site-packages/cloudinit/config/cc_raspberry_pi.py",
        ]),
        ..CloudInit::default()
    };
    let files = std::iter::once("/etc/cloud/cloud.cfg".to_owned()).chain(
        root.names("/etc/cloud/cloud.cfg.d")
            .into_iter()
            .filter(|n| n.ends_with(".cfg"))
            .map(|n| format!("/etc/cloud/cloud.cfg.d/{n}")),
    );
    for path in files {
        let Some(text) = root.text(&path) else {
            continue;
        };
        let Ok(docs) = YamlLoader::load_from_str(&text) else {
            continue;
        };
        let Some(doc) = docs.first() else { continue };
        if let Some(list) = doc["datasource_list"].as_vec() {
            found.datasources = Some(
                list.iter()
                    .filter_map(Yaml::as_str)
                    .map(str::to_owned)
                    .collect(),
            );
        }
        let nocloud = &doc["datasource"]["NoCloud"];
        if let Some(seed) = nocloud["seedfrom"].as_str() {
            found.seedfrom = Some(seed.to_owned());
        }
        if let Some(label) = nocloud["fs_label"].as_str() {
            found.fs_label = Some(label.to_owned());
        }
    }
    Some(found)
}

/// The format chosen for an image, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    #[serde(serialize_with = "format_name")]
    pub format: Format,
    pub why: String,
    /// What inspection found against a format given by the catalog or the user.
    pub disagreement: Option<String>,
    /// systemd: the path cmdline.txt names for firstrun.sh.
    pub script: Option<String>,
}

fn format_name<S: serde::Serializer>(format: &Format, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(format.name())
}

/// Where the format came from when it was given: "the catalog", "--init-format".
#[derive(Debug, Clone, Copy)]
pub struct Given<'a> {
    pub format: Format,
    pub by: &'a str,
}

/// Chooses the format for an image: the one given (saying where inspection disagrees),
/// else the one inspection finds will run. An image with neither systemd nor cloud-init
/// is refused.
pub fn choose(inspection: &Inspection, given: Option<Given<'_>>) -> Result<Choice, Error> {
    let ins = inspection;
    let nocloud = ins.cloud_init.as_ref().filter(|c| c.reads_nocloud());
    if !ins.systemd && nocloud.is_none() {
        let why = match &ins.cloud_init {
            Some(_) => "it has no systemd, and its cloud-init does not read NoCloud seeds",
            None => "it has neither systemd nor cloud-init",
        };
        return Err(Error::NoMechanism {
            os: os_name(ins),
            why: why.to_owned(),
        });
    }
    let found = match nocloud {
        Some(c) if c.rpi_issue => Format::CloudInitRpi,
        Some(_) => Format::CloudInit,
        None => Format::Systemd,
    };
    let (format, why, disagreement) = match given {
        // A format given for a mechanism the image lacks would apply nothing: the one
        // that runs there is used instead, and the output says so.
        Some(g) if !runs(ins, g.format) => {
            let lacks = match g.format {
                Format::Systemd => "the image has no systemd",
                _ if ins.cloud_init.is_none() => "the image has no cloud-init",
                _ => "the image's cloud-init does not read NoCloud seeds",
            };
            let note = format!(
                "{} says {}, but {lacks}: using {} instead",
                g.by,
                g.format.name(),
                found.name()
            );
            (found, found_why(ins, found), Some(note))
        }
        Some(g) => {
            let note = (found != g.format).then(|| {
                format!(
                    "{} says {}, but inspection finds {}",
                    g.by,
                    g.format.name(),
                    found.name()
                )
            });
            (g.format, format!("{} says {}", g.by, g.format.name()), note)
        }
        None => (found, found_why(ins, found), None),
    };
    let script = (format == Format::Systemd).then(|| script_path(ins));
    Ok(Choice {
        format,
        why,
        disagreement,
        script,
    })
}

/// The image's name from its os-release, for messages.
pub(crate) fn os_name(ins: &Inspection) -> String {
    ins.os
        .as_ref()
        .map(|o| o.name.clone())
        .unwrap_or_else(|| "the image".into())
}

fn found_why(ins: &Inspection, found: Format) -> String {
    match found {
        Format::CloudInitRpi => {
            "cloud-init reads NoCloud seeds, and /etc/rpi-issue marks Raspberry Pi OS".into()
        }
        Format::CloudInit => "cloud-init reads NoCloud seeds".into(),
        Format::Systemd if ins.imager_fixup => {
            "systemd runs firstrun.sh, with Raspberry Pi OS's initramfs fixing its path".into()
        }
        Format::Systemd => "systemd runs firstrun.sh (no cloud-init)".into(),
    }
}

/// Whether the image runs what `format` needs.
fn runs(ins: &Inspection, format: Format) -> bool {
    match format {
        Format::Systemd => ins.systemd,
        _ => ins
            .cloud_init
            .as_ref()
            .is_some_and(CloudInit::reads_nocloud),
    }
}

/// The path cmdline.txt names: `/boot/firstrun.sh` where the initramfs rewrites it to
/// `/boot/firmware/firstrun.sh`; elsewhere the path where fstab mounts the FAT partition
/// (`/boot/firmware/firstrun.sh` on Trixie and custom images); `/boot/firstrun.sh` when
/// fstab does not say (prepare notes that the first boot may not find it).
fn script_path(ins: &Inspection) -> String {
    match &ins.boot_mount {
        Some(m) if m.point == "/boot/firmware" && ins.imager_fixup => LEGACY_SCRIPT.into(),
        Some(m) if m.point == "/boot/firmware" => FIRMWARE_SCRIPT.into(),
        Some(m) if m.point.starts_with('/') && !m.point.contains(char::is_whitespace) => {
            format!("{}/firstrun.sh", m.point.trim_end_matches('/'))
        }
        _ => LEGACY_SCRIPT.into(),
    }
}

/// One setting, and what it will do on the image (or why it cannot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effect {
    /// "hostname", "user", "ssh", "wifi", "static_ip", "timezone", "keymap", "rpi".
    pub setting: &'static str,
    /// How it is applied, or `None` when the image cannot take it.
    pub how: Option<String>,
    /// Why not, when it cannot.
    pub refused: Option<String>,
}

impl Effect {
    fn ok(setting: &'static str, how: impl Into<String>) -> Effect {
        Effect {
            setting,
            how: Some(how.into()),
            refused: None,
        }
    }

    fn no(setting: &'static str, why: impl Into<String>) -> Effect {
        Effect {
            setting,
            how: None,
            refused: Some(why.into()),
        }
    }

    /// "Wi-Fi: NetworkManager keyfile", "SSH: refused: no openssh-server".
    pub fn describe(&self) -> String {
        match (&self.how, &self.refused) {
            (Some(how), _) => format!("{}: {how}", label(self.setting)),
            (None, Some(why)) => format!("{}: refused: {why}", label(self.setting)),
            (None, None) => label(self.setting).to_owned(),
        }
    }
}

/// The names settings go by in messages.
pub fn label(setting: &str) -> &str {
    match setting {
        "hostname" => "Host name",
        "user" => "User",
        "ssh" => "SSH",
        "wifi" => "Wi-Fi",
        "static_ip" => "Static IP",
        "timezone" => "Time zone",
        "keymap" => "Keyboard",
        "rpi" => "Interfaces",
        other => other,
    }
}

/// What every setting will do on the inspected image with `format`.
pub fn effects(ins: &Inspection, format: Format) -> Vec<Effect> {
    let helper = ins.imager_custom;
    let first = ins.first_user.as_deref();
    let mut all = Vec::new();
    if format == Format::Systemd {
        all.push(match helper {
            true => Effect::ok("hostname", "set through imager_custom"),
            false => Effect::ok("hostname", "written to /etc/hostname and /etc/hosts"),
        });
        all.push(match (ins.userconf, first) {
            (true, Some(u)) => Effect::ok(
                "user",
                format!("uid-1000 user {u} renamed and given the password through userconf"),
            ),
            (true, None) => Effect::ok("user", "set through userconf"),
            (false, Some(u)) => Effect::ok(
                "user",
                format!("uid-1000 user {u} renamed (usermod) and given the password (chpasswd)"),
            ),
            (false, None) => Effect::no(
                "user",
                "the image has no uid-1000 user to rename, and no userconf",
            ),
        });
        all.push(match (ins.openssh_server, helper) {
            (false, _) => Effect::no("ssh", "the image has no openssh-server"),
            (true, true) => Effect::ok("ssh", "enabled through imager_custom"),
            (true, false) => Effect::ok(
                "ssh",
                "enabled with systemctl, keys written to the uid-1000 user",
            ),
        });
        all.push(if ins.network_manager {
            Effect::ok("wifi", "NetworkManager keyfile")
        } else if ins.netplan {
            Effect::ok("wifi", "netplan")
        } else if ins.wpa_supplicant {
            Effect::ok("wifi", "wpa_supplicant.conf")
        } else {
            Effect::no(
                "wifi",
                "the image has no NetworkManager, netplan or wpa_supplicant",
            )
        });
        all.push(if ins.network_manager {
            Effect::ok("static_ip", "NetworkManager keyfile")
        } else if ins.netplan {
            Effect::ok("static_ip", "netplan")
        } else if ins.dhcpcd {
            Effect::ok("static_ip", "dhcpcd.conf")
        } else {
            Effect::no(
                "static_ip",
                "the image has no NetworkManager, netplan or dhcpcd",
            )
        });
        let locale = match helper {
            true => "set through imager_custom",
            false => "dpkg-reconfigure",
        };
        all.push(Effect::ok("timezone", locale));
        all.push(Effect::ok("keymap", locale));
        all.push(Effect::no("rpi", "only cloudinit-rpi images take them"));
    } else {
        all.push(Effect::ok("hostname", "cloud-init"));
        all.push(match first {
            Some(u) => Effect::ok("user", format!("cloud-init, after renaming the uid-1000 user {u} (bootcmd), so it keeps uid 1000")),
            None => Effect::ok("user", "created by cloud-init"),
        });
        all.push(match ins.openssh_server {
            true => Effect::ok(
                "ssh",
                "cloud-init (ssh_pwauth, keys), enabled with systemctl",
            ),
            false => Effect::no("ssh", "the image has no openssh-server"),
        });
        all.push(if ins.network_manager {
            Effect::ok("wifi", "NetworkManager keyfile (cloud-init write_files)")
        } else if ins.netplan {
            Effect::ok("wifi", "cloud-init network-config (netplan)")
        } else {
            Effect::no("wifi", "cloud-init sets Wi-Fi only through netplan or NetworkManager, and the image has neither")
        });
        all.push(Effect::ok("static_ip", "cloud-init network-config"));
        all.push(Effect::ok("timezone", "cloud-init"));
        all.push(Effect::ok("keymap", "cloud-init"));
        let cloud = ins.cloud_init.clone().unwrap_or_default();
        all.push(match (format, cloud.rpi_module, cloud.rpi_issue) {
            (Format::CloudInitRpi, true, true) => Effect::ok("rpi", "cloud-init's Raspberry Pi module"),
            (Format::CloudInitRpi, false, _) => Effect::no("rpi", "the image's cloud-init has no Raspberry Pi module (cloud-init 25.2 or later has it)"),
            (Format::CloudInitRpi, true, false) => Effect::no("rpi", "cloud-init's Raspberry Pi module acts only where /etc/rpi-issue exists"),
            _ => Effect::no("rpi", "only cloudinit-rpi images take them"),
        });
    }
    all
}

/// Whether `settings` sets `setting` (a name from [`Effect::setting`]).
pub fn asked(settings: &Settings, setting: &str) -> bool {
    match setting {
        "hostname" => settings.hostname.is_some(),
        "user" => settings.user.is_some(),
        "ssh" => settings.ssh.is_some(),
        "wifi" => !settings.wifi.is_empty(),
        "static_ip" => !settings.static_ip.is_empty(),
        "timezone" => settings.timezone.is_some(),
        "keymap" => settings.keymap.is_some(),
        "rpi" => settings.rpi.any(),
        _ => false,
    }
}

/// The settings `settings` asks for that the image cannot take.
pub fn refusals(ins: &Inspection, format: Format, settings: &Settings) -> Vec<Effect> {
    let mut refused: Vec<Effect> = effects(ins, format)
        .into_iter()
        .filter(|e| e.how.is_none() && asked(settings, e.setting))
        .collect();
    // netplan's YAML holds only UTF-8 text; NetworkManager's keyfiles hold any bytes.
    let netplan_only = !ins.network_manager && (ins.netplan || format != Format::Systemd);
    let odd = settings
        .wifi
        .iter()
        .find(|w| std::str::from_utf8(&w.ssid).is_err());
    if let (true, Some(w)) = (netplan_only, odd) {
        refused.push(Effect::no(
            "wifi",
            format!(
                "the SSID {:?} is not UTF-8 text, which netplan (how this image takes Wi-Fi) cannot hold",
                String::from_utf8_lossy(&w.ssid)
            ),
        ));
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bookworm() -> Inspection {
        Inspection {
            os: Some(os_release(
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
            )),
            boot_mount: boot_mount("PARTUUID=1-01 /boot/firmware vfat defaults 0 2\n"),
            systemd: true,
            network_manager: true,
            openssh_server: true,
            first_user: Some("pi".into()),
            ..Inspection::default()
        }
    }

    #[test]
    fn os_release_fstab_and_passwd_are_read() {
        let ins = bookworm();
        let os = ins.os.unwrap();
        assert_eq!(os.name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os.version.as_deref(), Some("12"));
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
        let m = boot_mount(
            "# c\nUUID=x / ext4 defaults 0 1\n/dev/mmcblk0p1  /boot  vfat  defaults,nofail 0 2\n",
        )
        .unwrap();
        assert_eq!((m.point.as_str(), m.nofail), ("/boot", true));
        assert_eq!(
            first_user("root:x:0:0::/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
                .as_deref(),
            Some("pi")
        );
        let words = Cmdline::parse(
            b"console=tty1 init=/usr/lib/raspberrypi-sys-mods/firstboot resize ds=nocloud;i=x\n",
        );
        assert_eq!(
            words.init.as_deref(),
            Some("/usr/lib/raspberrypi-sys-mods/firstboot")
        );
        assert!(words.resize);
        assert_eq!(words.ds.as_deref(), Some("ds=nocloud;i=x"));
    }

    #[test]
    fn the_script_path_follows_the_fixup_and_the_mount() {
        let mut ins = bookworm();
        let script = |ins: &Inspection| choose(ins, None).unwrap().script.unwrap();
        assert_eq!(script(&ins), FIRMWARE_SCRIPT);
        ins.imager_fixup = true;
        assert_eq!(script(&ins), LEGACY_SCRIPT);
        ins.imager_fixup = false;
        ins.boot_mount = boot_mount("/dev/mmcblk0p1 /boot vfat defaults 0 2");
        assert_eq!(script(&ins), LEGACY_SCRIPT);
        ins.boot_mount = boot_mount("/dev/mmcblk0p1 /efi vfat defaults 0 2");
        assert_eq!(script(&ins), "/efi/firstrun.sh");
    }

    #[test]
    fn cloud_init_wins_where_it_reads_nocloud_and_the_catalog_is_heard() {
        let mut ins = bookworm();
        ins.cloud_init = Some(CloudInit {
            datasources: Some(vec!["NoCloud".into(), "None".into()]),
            seedfrom: Some("file:///boot/firmware/".into()),
            fs_label: None,
            rpi_issue: true,
            rpi_module: false,
        });
        let c = choose(&ins, None).unwrap();
        assert_eq!((c.format, c.script), (Format::CloudInitRpi, None));
        // A format for a mechanism the image lacks would apply nothing.
        let mut bare = ins.clone();
        bare.cloud_init = None;
        let c = choose(
            &bare,
            Some(Given {
                format: Format::CloudInit,
                by: "the catalog",
            }),
        )
        .unwrap();
        assert_eq!(c.format, Format::Systemd);
        assert_eq!(
            c.disagreement.as_deref(),
            Some("the catalog says cloudinit, but the image has no cloud-init: using systemd instead")
        );
        let given = Given {
            format: Format::Systemd,
            by: "the catalog",
        };
        let c = choose(&ins, Some(given)).unwrap();
        assert_eq!(c.format, Format::Systemd);
        assert_eq!(
            c.script.as_deref(),
            Some(FIRMWARE_SCRIPT),
            "the Trixie systemd path"
        );
        assert_eq!(
            c.disagreement.as_deref(),
            Some("the catalog says systemd, but inspection finds cloudinit-rpi")
        );
        ins.cloud_init.as_mut().unwrap().datasources = Some(vec!["Ec2".into()]);
        assert_eq!(choose(&ins, None).unwrap().format, Format::Systemd);
    }

    #[test]
    fn an_image_without_systemd_or_cloud_init_is_refused() {
        let ins = Inspection {
            os: Some(os_release("NAME=LibreELEC\n")),
            ..Inspection::default()
        };
        let e = choose(&ins, None).unwrap_err().to_string();
        assert!(
            e.contains("LibreELEC") && e.contains("neither systemd nor cloud-init"),
            "{e}"
        );
        let given = Given {
            format: Format::Systemd,
            by: "--init-format",
        };
        assert!(choose(&ins, Some(given)).is_err());
    }

    #[test]
    fn settings_the_image_cannot_take_are_named() {
        let mut ins = bookworm();
        ins.openssh_server = false;
        ins.first_user = None;
        let s = Settings {
            ssh: Some(crate::Ssh {
                password_auth: false,
                keys: vec!["ssh-ed25519 AAAA".into()],
            }),
            timezone: Some("Europe/London".into()),
            ..Settings::default()
        };
        let refused: Vec<String> = refusals(&ins, Format::Systemd, &s)
            .iter()
            .map(Effect::describe)
            .collect();
        assert_eq!(refused, ["SSH: refused: the image has no openssh-server"]);
        let wifi = effects(&ins, Format::Systemd)
            .into_iter()
            .find(|e| e.setting == "wifi")
            .unwrap();
        assert_eq!(wifi.describe(), "Wi-Fi: NetworkManager keyfile");
    }

    #[test]
    fn an_ssid_netplan_cannot_hold_is_refused_where_netplan_is_the_way() {
        let mut ins = bookworm();
        ins.network_manager = false;
        ins.netplan = true;
        let s = Settings {
            wifi: vec![crate::Wifi {
                ssid: b"caf\xe9".to_vec(),
                psk: "ab".repeat(32),
                hidden: false,
                country: "FR".into(),
            }],
            ..Settings::default()
        };
        let refused = refusals(&ins, Format::Systemd, &s);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].describe().contains("not UTF-8"), "{refused:?}");
        ins.network_manager = true;
        assert!(
            refusals(&ins, Format::Systemd, &s).is_empty(),
            "keyfiles take any bytes"
        );
        assert!(refusals(&ins, Format::CloudInit, &s).is_empty());
    }
}
