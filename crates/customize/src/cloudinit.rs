//! The `cloudinit` and `cloudinit-rpi` formats (Raspberry Pi OS Trixie, Ubuntu): NoCloud
//! `user-data`, `network-config` (netplan v2) and `meta-data` on the boot partition.

use crate::quote::yaml;
use crate::settings::{Serial, Settings};
use crate::Error;

/// The groups Raspberry Pi OS gives its first user.
const GROUPS: &str =
    "users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo";

fn utf8<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|_| {
        Error::invalid(
            what,
            String::from_utf8_lossy(bytes),
            "cloud-init files are YAML, which holds only UTF-8 text",
        )
    })
}

/// `user-data`: `#cloud-config` YAML. `rpi` (interfaces, USB gadget) only for
/// cloudinit-rpi images.
pub fn user_data(
    settings: &Settings,
    hostname: Option<&str>,
    password_hash: Option<&str>,
    rpi: bool,
) -> Result<String, Error> {
    let mut y = String::from("#cloud-config\n# Written by cardsmith.\n");
    if let Some(name) = hostname {
        y += &format!("hostname: {}\nmanage_etc_hosts: true\n", yaml(name));
    }
    if let Some(tz) = &settings.timezone {
        y += &format!("timezone: {}\n", yaml(tz));
    }
    if let Some(map) = &settings.keymap {
        y += &format!("keyboard:\n  model: pc105\n  layout: {}\n", yaml(map));
    }
    if let (Some(user), Some(hash)) = (&settings.user, password_hash) {
        y += "users:\n";
        y += &format!("- name: {}\n", yaml(&user.name));
        y += &format!("  groups: {}\n", yaml(GROUPS));
        y += "  shell: /bin/bash\n  lock_passwd: false\n";
        y += &format!("  passwd: {}\n", yaml(hash));
        if settings.passwordless_sudo {
            y += "  sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n";
        }
        if let Some(ssh) = settings.ssh.as_ref().filter(|s| !s.keys.is_empty()) {
            y += "  ssh_authorized_keys:\n";
            for key in &ssh.keys {
                y += &format!("  - {}\n", yaml(key));
            }
        }
    }
    if let Some(ssh) = settings
        .ssh
        .as_ref()
        .filter(|s| !s.keys.is_empty() && settings.user.is_none())
    {
        // No user of ours: the keys go to the image's default user.
        y += "ssh_authorized_keys:\n";
        for key in &ssh.keys {
            y += &format!("- {}\n", yaml(key));
        }
    }
    if let Some(ssh) = &settings.ssh {
        y += &format!("ssh_pwauth: {}\n", crate::systemd::password_logins(ssh));
        y += "runcmd:\n- [systemctl, enable, --now, ssh]\n";
    }
    if settings.rpi.any() {
        if !rpi {
            return Err(Error::NeedsCloudInitRpi {
                setting: "--enable-i2c/--enable-spi/--enable-onewire/--enable-serial/--usb-gadget",
                format: "cloudinit",
            });
        }
        y += "rpi:\n";
        let r = &settings.rpi;
        if r.i2c || r.spi || r.onewire || r.serial.is_some() {
            y += "  interfaces:\n";
            for (on, name) in [(r.i2c, "i2c"), (r.spi, "spi"), (r.onewire, "onewire")] {
                if on {
                    y += &format!("    {name}: true\n");
                }
            }
            match r.serial {
                Some(Serial::Console) => {
                    y += "    serial:\n      console: true\n      hardware: true\n"
                }
                Some(Serial::Hardware) => {
                    y += "    serial:\n      console: false\n      hardware: true\n"
                }
                None => {}
            }
        }
        if r.usb_gadget {
            y += "  enable_usb_gadget: true\n";
        }
    }
    Ok(y)
}

/// `network-config`: netplan v2 with the Wi-Fi network, or `None` without Wi-Fi (the image's
/// own file then stays).
pub fn network_config(settings: &Settings) -> Result<Option<String>, Error> {
    let Some(wifi) = &settings.wifi else {
        return Ok(None);
    };
    let ssid = utf8(&wifi.ssid, "Wi-Fi SSID")?;
    let mut y = String::from("# Written by cardsmith.\nnetwork:\n  version: 2\n  wifis:\n");
    y += "    wlan0:\n      dhcp4: true\n      optional: true\n";
    y += &format!("      regulatory-domain: {}\n", yaml(&wifi.country));
    y += "      access-points:\n";
    y += &format!("        {}:\n", yaml(ssid));
    y += &format!("          password: {}\n", yaml(&wifi.psk));
    if wifi.hidden {
        y += "          hidden: true\n";
    }
    Ok(Some(y))
}

/// `meta-data`: a fresh instance id, so cloud-init runs again for this card.
pub fn meta_data(hostname: Option<&str>, instance: &str) -> String {
    let mut y = format!("instance-id: {}\n", yaml(instance));
    if let Some(name) = hostname {
        y += &format!("local-hostname: {}\n", yaml(name));
    }
    y
}
