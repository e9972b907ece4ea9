//! The `cloudinit` and `cloudinit-rpi` formats (Raspberry Pi OS Trixie, Ubuntu): NoCloud
//! `user-data`, `network-config` (netplan v2) and `meta-data` on the boot partition.

use crate::quote::yaml;
use crate::settings::{Interface, Serial, Settings, StaticIp};
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
/// cloudinit-rpi images. `first_user`: the image's uid-1000 user, when inspection found
/// one: it is renamed to the user set (before cloud-init's user step), so the user keeps
/// uid 1000, its groups and its home, as Raspberry Pi OS's userconf does. `keyfiles`:
/// NetworkManager connections (path, content) for images that use it, written with
/// `write_files` rather than through netplan, which loses some SSIDs and every priority.
pub fn user_data(
    settings: &Settings,
    hostname: Option<&str>,
    password_hash: Option<&str>,
    rpi: bool,
    first_user: Option<&str>,
    keyfiles: &[(String, String)],
) -> Result<String, Error> {
    let mut y = String::from("#cloud-config\n# Written by cardsmith.\n");
    if let (Some(user), Some(old)) = (&settings.user, first_user) {
        if user.name != old {
            // Once per instance (bootcmd runs at every boot): a later rename by the owner
            // stays.
            let name =
                String::from_utf8_lossy(&crate::quote::sh(user.name.as_bytes())).into_owned();
            let home = String::from_utf8_lossy(&crate::quote::sh(
                format!("/home/{}", user.name).as_bytes(),
            ))
            .into_owned();
            let rename = format!(
                "old=$(getent passwd 1000 | cut -d: -f1); if [ -n \"$old\" ] && [ \"$old\" != {name} ]; \
                 then usermod -l {name} \"$old\" && usermod -m -d {home} {name} && \
                 groupmod -n {name} \"$old\"; fi"
            );
            y += &format!(
                "bootcmd:\n- [cloud-init-per, instance, cardsmith-first-user, sh, -c, {}]\n",
                yaml(&rename)
            );
        }
    }
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
        // Applied to an existing user too (the renamed uid-1000 user), unlike `passwd`.
        y += &format!("  hashed_passwd: {}\n", yaml(hash));
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
    let mut runcmd = Vec::new();
    if let Some(ssh) = &settings.ssh {
        y += &format!("ssh_pwauth: {}\n", crate::systemd::password_logins(ssh));
        runcmd.push("[systemctl, enable, --now, ssh]");
    }
    if !keyfiles.is_empty() {
        y += "write_files:\n";
        for (path, content) in keyfiles {
            y += &format!("- path: {}\n", yaml(path));
            y += "  owner: root:root\n  permissions: \"0600\"\n";
            y += &format!("  content: {}\n", yaml(content));
        }
        // NetworkManager reads new keyfiles when told to.
        runcmd.push("[nmcli, connection, reload]");
    }
    if !runcmd.is_empty() {
        y += "runcmd:\n";
        for command in runcmd {
            y += &format!("- {command}\n");
        }
    }
    // Only cloudinit-rpi carries them (`Format::takes`, checked by `render`).
    if rpi && settings.rpi.any() {
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

/// `network-config`: netplan v2, or `None` when there is nothing for it (the image's own
/// file then stays). Where the image uses NetworkManager (`network_manager`), Wi-Fi goes
/// to keyfiles instead, and this file carries only a fixed Ethernet address.
pub fn network_config(settings: &Settings, network_manager: bool) -> Result<Option<String>, Error> {
    let wifi = !network_manager && !settings.wifi.is_empty();
    let ethernet = settings.static_ip(Interface::Ethernet).is_some();
    if !wifi && !ethernet {
        return Ok(None);
    }
    Ok(Some(netplan(settings, true, network_manager, wifi)?))
}

/// netplan v2 YAML: Ethernet (DHCP, or its fixed address) and, `with_wifi`, the Wi-Fi
/// networks (with their fixed address; netplan has no priority, and holds only UTF-8
/// SSIDs). `header`: say who wrote it. `network_manager`: name NetworkManager as the
/// renderer (netplan checks each file on its own).
pub fn netplan(
    settings: &Settings,
    header: bool,
    network_manager: bool,
    with_wifi: bool,
) -> Result<String, Error> {
    let mut y = String::new();
    if header {
        y += "# Written by cardsmith.\n";
    }
    y += "network:\n  version: 2\n";
    if network_manager {
        y += "  renderer: NetworkManager\n";
    }
    y += "  ethernets:\n    eth0:\n";
    addresses(&mut y, settings.static_ip(Interface::Ethernet));
    y += "      optional: true\n";
    if !with_wifi || settings.wifi.is_empty() {
        return Ok(y);
    }
    y += "  wifis:\n    wlan0:\n";
    addresses(&mut y, settings.static_ip(Interface::Wifi));
    y += "      optional: true\n";
    y += &format!(
        "      regulatory-domain: {}\n",
        yaml(&settings.wifi[0].country)
    );
    y += "      access-points:\n";
    for wifi in &settings.wifi {
        let ssid = utf8(&wifi.ssid, "Wi-Fi SSID")?;
        y += &format!("        {}:\n", yaml(ssid));
        y += &format!("          password: {}\n", yaml(&wifi.psk));
        if wifi.hidden {
            y += "          hidden: true\n";
        }
    }
    Ok(y)
}

fn addresses(y: &mut String, fixed: Option<&StaticIp>) {
    let Some(fixed) = fixed else {
        *y += "      dhcp4: true\n";
        return;
    };
    *y += "      dhcp4: false\n";
    *y += &format!("      addresses: [{}]\n", yaml(&fixed.cidr()));
    if let Some(gw) = fixed.gateway {
        *y += &format!("      routes:\n      - to: default\n        via: {gw}\n");
    }
    if !fixed.dns.is_empty() {
        let servers: Vec<String> = fixed.dns.iter().map(|d| d.to_string()).collect();
        *y += &format!(
            "      nameservers:\n        addresses: [{}]\n",
            servers.join(", ")
        );
    }
}

/// `meta-data`: a fresh instance id, so cloud-init runs again for this card.
pub fn meta_data(hostname: Option<&str>, instance: &str) -> String {
    let mut y = format!("instance-id: {}\n", yaml(instance));
    if let Some(name) = hostname {
        y += &format!("local-hostname: {}\n", yaml(name));
    }
    y
}
