//! NetworkManager keyfiles for the Wi-Fi networks and a fixed Ethernet address: what both
//! formats write where the image uses NetworkManager (firstrun.sh through the shell,
//! cloud-init through `write_files`). A keyfile names the SSID as a list of byte values, so
//! any SSID, quotes, `$`, backslashes and bytes that are not UTF-8 included, arrives exact.

use crate::settings::{Interface, Settings, StaticIp, Wifi};

pub const CONNECTIONS: &str = "/etc/NetworkManager/system-connections";

/// The connection name of the `n`th Wi-Fi network: the first is called as Raspberry Pi
/// Imager calls it.
pub fn connection_id(n: usize) -> String {
    match n {
        0 => "preconfigured".to_owned(),
        _ => format!("preconfigured-{}", n + 1),
    }
}

/// Every keyfile the settings need: path and content; the fixed Ethernet address only
/// `with_ethernet` (cloud-init sets it through network-config). `uuids` holds one id per
/// Wi-Fi network, then one for Ethernet.
pub fn keyfiles(
    settings: &Settings,
    uuids: &[String],
    with_ethernet: bool,
) -> Vec<(String, String)> {
    let count = settings.wifi.len();
    let mut files: Vec<(String, String)> = settings
        .wifi
        .iter()
        .enumerate()
        .map(|(n, wifi)| {
            let id = connection_id(n);
            // The first network is the most preferred.
            let priority = count - n;
            let text = wifi_keyfile(
                &id,
                &uuids[n],
                priority,
                wifi,
                settings.static_ip(Interface::Wifi),
            );
            (format!("{CONNECTIONS}/{id}.nmconnection"), text)
        })
        .collect();
    if let Some(fixed) = settings
        .static_ip(Interface::Ethernet)
        .filter(|_| with_ethernet)
    {
        let mut k = Keyfile::default();
        k.line("[connection]");
        k.line("id=cardsmith-ethernet");
        k.line(&format!("uuid={}", uuids[count]));
        k.line("type=ethernet");
        k.line("interface-name=eth0");
        // Above the wired connection NetworkManager makes up on its own (-999).
        k.line("autoconnect-priority=100");
        ipv4(&mut k, Some(fixed));
        ipv6(&mut k);
        files.push((
            format!("{CONNECTIONS}/cardsmith-ethernet.nmconnection"),
            k.0,
        ));
    }
    files
}

fn wifi_keyfile(
    id: &str,
    uuid: &str,
    priority: usize,
    wifi: &Wifi,
    fixed: Option<&StaticIp>,
) -> String {
    let mut k = Keyfile::default();
    k.line("[connection]");
    k.line(&format!("id={id}"));
    k.line(&format!("uuid={uuid}"));
    k.line("type=wifi");
    k.line(&format!("autoconnect-priority={priority}"));
    k.line("[wifi]");
    k.line("mode=infrastructure");
    let ssid_bytes: String = wifi.ssid.iter().map(|b| format!("{b};")).collect();
    k.line(&format!("ssid={ssid_bytes}"));
    if wifi.hidden {
        k.line("hidden=true");
    }
    k.line("[wifi-security]");
    k.line("key-mgmt=wpa-psk");
    k.line(&format!("psk={}", wifi.psk));
    ipv4(&mut k, fixed);
    ipv6(&mut k);
    k.0
}

fn ipv4(k: &mut Keyfile, fixed: Option<&StaticIp>) {
    k.line("[ipv4]");
    let Some(fixed) = fixed else {
        k.line("method=auto");
        return;
    };
    k.line("method=manual");
    match fixed.gateway {
        Some(gw) => k.line(&format!("address1={},{gw}", fixed.cidr())),
        None => k.line(&format!("address1={}", fixed.cidr())),
    }
    if !fixed.dns.is_empty() {
        let servers: String = fixed.dns.iter().map(|d| format!("{d};")).collect();
        k.line(&format!("dns={servers}"));
    }
}

fn ipv6(k: &mut Keyfile) {
    k.line("[ipv6]");
    k.line("addr-gen-mode=default");
    k.line("method=auto");
}

#[derive(Default)]
struct Keyfile(String);

impl Keyfile {
    fn line(&mut self, text: &str) {
        self.0 += text;
        self.0.push('\n');
    }
}
