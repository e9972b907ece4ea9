//! What a card is set up with on first boot. Secrets are held only as hashes: the crypt
//! strings of the password and the Wi-Fi PSK.

use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::PasswordHashes;
use crate::validate;
use crate::Error;

/// Everything `--hostname`, `--user`, `--ssh`, `--wifi-*`, … can set. `None`/false means
/// "leave the image's default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// A host name, or a template with a counter: `node{n}`, `node{n:02}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The next number for the hostname's counter (presets keep it).
    #[serde(default = "one")]
    pub counter: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
    /// Wi-Fi networks, the most preferred first. A preset saved before several networks
    /// were possible holds one network, not a list: it still loads.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub wifi: Vec<Wifi>,
    /// Fixed IPv4 addresses, at most one for Ethernet and one for Wi-Fi (every network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_ip: Vec<StaticIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keymap: Option<String>,
    #[serde(default)]
    pub passwordless_sudo: bool,
    /// Interfaces for cloudinit-rpi images.
    #[serde(default)]
    pub rpi: Rpi,
}

fn one() -> u64 {
    1
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            hostname: None,
            counter: 1,
            user: None,
            ssh: None,
            wifi: Vec::new(),
            static_ip: Vec::new(),
            timezone: None,
            keymap: None,
            passwordless_sudo: false,
            rpi: Rpi::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password: PasswordHashes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ssh {
    /// Allow logging in with the password (otherwise keys only).
    pub password_auth: bool,
    pub keys: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wifi {
    /// The SSID's exact bytes, as hex (an SSID need not be UTF-8).
    #[serde(with = "hex")]
    pub ssid: Vec<u8>,
    /// 64 hex digits.
    pub psk: String,
    pub hidden: bool,
    pub country: String,
}

/// The PSK joins the network: it never reaches a log through `{:?}`.
impl std::fmt::Debug for Wifi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wifi")
            .field("ssid", &String::from_utf8_lossy(&self.ssid))
            .field("psk", &"(hidden)")
            .field("hidden", &self.hidden)
            .field("country", &self.country)
            .finish()
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Wifi>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Wifi),
        Many(Vec<Wifi>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(w)) => vec![w],
        Some(OneOrMany::Many(list)) => list,
    })
}

/// Which network connection a fixed address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    /// The wired port (eth0 on a Raspberry Pi).
    Ethernet,
    /// Every Wi-Fi network set (wlan0).
    Wifi,
}

impl Interface {
    pub fn name(self) -> &'static str {
        match self {
            Interface::Ethernet => "ethernet",
            Interface::Wifi => "wifi",
        }
    }

    /// The kernel's name for it on a Raspberry Pi.
    pub fn device(self) -> &'static str {
        match self {
            Interface::Ethernet => "eth0",
            Interface::Wifi => "wlan0",
        }
    }
}

/// A fixed IPv4 address instead of DHCP: `--static-ip ethernet:192.168.1.50/24,192.168.1.1,1.1.1.1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticIp {
    pub interface: Interface,
    pub address: Ipv4Addr,
    /// The network's prefix length (24 for 255.255.255.0).
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
}

impl StaticIp {
    /// `INTERFACE:ADDRESS/PREFIX[,GATEWAY[,DNS...]]`, checked.
    pub fn parse(text: &str) -> Result<StaticIp, Error> {
        let bad = |why: &str| Error::invalid("static IP", text, why);
        let form = "write it INTERFACE:ADDRESS/PREFIX[,GATEWAY[,DNS...]], such as \
                    ethernet:192.168.1.50/24,192.168.1.1,1.1.1.1";
        let (interface, rest) = text.split_once(':').ok_or_else(|| bad(form))?;
        let interface = match interface {
            "ethernet" | "eth0" => Interface::Ethernet,
            "wifi" | "wlan0" => Interface::Wifi,
            _ => return Err(bad("the interface is ethernet or wifi")),
        };
        let mut parts = rest.split(',');
        let cidr = parts.next().unwrap_or_default();
        let (address, prefix) = cidr.split_once('/').ok_or_else(|| bad(form))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| bad(&format!("{address:?} is not an IPv4 address")))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad(&format!("/{prefix} is not a prefix length (1 to 32)")))?;
        let ip = |part: &str| -> Result<Ipv4Addr, Error> {
            part.parse()
                .map_err(|_| bad(&format!("{part:?} is not an IPv4 address")))
        };
        let gateway = parts.next().filter(|g| !g.is_empty()).map(ip).transpose()?;
        let dns = parts.map(ip).collect::<Result<Vec<_>, _>>()?;
        let fixed = StaticIp {
            interface,
            address,
            prefix,
            gateway,
            dns,
        };
        fixed.validate()?;
        Ok(fixed)
    }

    /// `192.168.1.50/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }

    /// The address fits its network, and the gateway is on it.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Error::invalid("static IP", self.cidr(), why);
        if !(1..=32).contains(&self.prefix) {
            return Err(bad(format!(
                "/{} is not a prefix length (1 to 32)",
                self.prefix
            )));
        }
        let a = self.address;
        if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
            return Err(bad(format!("{a} cannot be a host's address")));
        }
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        let host = u32::from(a) & !mask;
        if self.prefix <= 30 && (host == 0 || host == !mask) {
            return Err(bad(format!(
                "{a} is the network's own or its broadcast address on a /{}",
                self.prefix
            )));
        }
        if let Some(gw) = self.gateway {
            if u32::from(gw) & mask != u32::from(a) & mask || gw == a {
                return Err(bad(format!(
                    "the gateway {gw} is not another address on {}'s network",
                    self.cidr()
                )));
            }
        }
        for server in &self.dns {
            if server.is_unspecified() || server.is_multicast() || server.is_broadcast() {
                return Err(bad(format!("{server} cannot be a DNS server")));
            }
        }
        Ok(())
    }
}

/// `--enable-serial MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serial {
    /// A login console on the serial port (and the port itself).
    Console,
    /// The UART only, for devices.
    Hardware,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rpi {
    pub i2c: bool,
    pub spi: bool,
    pub onewire: bool,
    pub serial: Option<Serial>,
    pub usb_gadget: bool,
}

impl Rpi {
    pub fn any(&self) -> bool {
        self.i2c || self.spi || self.onewire || self.serial.is_some() || self.usb_gadget
    }
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none()
            && self.user.is_none()
            && self.ssh.is_none()
            && self.wifi.is_empty()
            && self.static_ip.is_empty()
            && self.timezone.is_none()
            && self.keymap.is_none()
            && !self.passwordless_sudo
            && !self.rpi.any()
    }

    /// Checks every setting; the hostname template with the current counter.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(name) = self.hostname_now()? {
            validate::hostname(&name)?;
        }
        if let Some(user) = &self.user {
            validate::user(&user.name)?;
        }
        for (n, wifi) in self.wifi.iter().enumerate() {
            if self.wifi[..n].iter().any(|w| w.ssid == wifi.ssid) {
                return Err(Error::invalid(
                    "Wi-Fi SSID",
                    String::from_utf8_lossy(&wifi.ssid),
                    "it is given twice",
                ));
            }
            if wifi.country != self.wifi[0].country {
                return Err(Error::invalid(
                    "Wi-Fi country",
                    wifi.country.clone(),
                    format!(
                        "every network shares the card's one country, {}",
                        self.wifi[0].country
                    ),
                ));
            }
            validate::ssid(&wifi.ssid)?;
            validate::country(&wifi.country)?;
            let hex = wifi.psk.len() == 64 && wifi.psk.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                return Err(Error::invalid(
                    "Wi-Fi PSK",
                    "(hidden)",
                    "it is not 64 hex digits",
                ));
            }
        }
        for (n, fixed) in self.static_ip.iter().enumerate() {
            fixed.validate()?;
            if self.static_ip[..n]
                .iter()
                .any(|f| f.interface == fixed.interface)
            {
                return Err(Error::invalid(
                    "static IP",
                    fixed.cidr(),
                    format!("{} has one fixed address, not two", fixed.interface.name()),
                ));
            }
            if fixed.interface == Interface::Wifi && self.wifi.is_empty() {
                return Err(Error::invalid(
                    "static IP",
                    fixed.cidr(),
                    "a fixed Wi-Fi address needs a Wi-Fi network (--wifi-ssid)",
                ));
            }
        }
        if let Some(ssh) = &self.ssh {
            for key in &ssh.keys {
                validate::ssh_key(key)?;
            }
        }
        if let Some(tz) = &self.timezone {
            validate::timezone(tz)?;
        }
        if let Some(map) = &self.keymap {
            validate::keymap(map)?;
        }
        let password_ssh = self
            .ssh
            .as_ref()
            .is_some_and(crate::systemd::password_logins);
        if password_ssh && self.user.is_none() {
            return Err(Error::invalid(
                "--ssh",
                "",
                "SSH with password logins needs --user (Raspberry Pi OS has had no default user \
                 since 2022), or give --ssh-key",
            ));
        }
        if self.passwordless_sudo && self.user.is_none() {
            return Err(Error::invalid("--passwordless-sudo", "", "it needs --user"));
        }
        Ok(())
    }

    /// The host name for this card: the template with the counter filled in.
    pub fn hostname_now(&self) -> Result<Option<String>, Error> {
        self.hostname
            .as_deref()
            .map(|t| render_hostname(t, self.counter))
            .transpose()
    }

    /// The Wi-Fi country (all networks share it).
    pub fn wifi_country(&self) -> Option<&str> {
        self.wifi.first().map(|w| w.country.as_str())
    }

    /// The fixed address for `interface`, if one is set.
    pub fn static_ip(&self, interface: Interface) -> Option<&StaticIp> {
        self.static_ip.iter().find(|f| f.interface == interface)
    }

    /// Whether the hostname carries a counter that advances per card.
    pub fn has_counter(&self) -> bool {
        self.hostname.as_deref().is_some_and(|h| h.contains("{n"))
    }
}

/// Fills `{n}` or `{n:0W}` (zero-padded to W digits) in a hostname template.
pub fn render_hostname(template: &str, n: u64) -> Result<String, Error> {
    let Some(start) = template.find("{n") else {
        return Ok(template.to_owned());
    };
    let bad = || Error::invalid("hostname", template, "a counter is written {n} or {n:02}");
    let end = start + template[start..].find('}').ok_or_else(bad)?;
    let spec = &template[start + 2..end];
    let number = match spec {
        "" => n.to_string(),
        _ => {
            let width: usize = spec
                .strip_prefix(":0")
                .and_then(|w| w.parse().ok())
                .filter(|w| (1..=9).contains(w))
                .ok_or_else(bad)?;
            format!("{n:0width$}")
        }
    };
    let rest = &template[end + 1..];
    if rest.contains("{n") {
        return Err(bad());
    }
    Ok(format!("{}{number}{rest}", &template[..start]))
}

mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hex"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_counters() {
        assert_eq!(render_hostname("node{n}", 7).unwrap(), "node7");
        assert_eq!(render_hostname("node{n:02}", 3).unwrap(), "node03");
        assert_eq!(render_hostname("pi-{n:03}-lab", 12).unwrap(), "pi-012-lab");
        assert_eq!(render_hostname("plain", 5).unwrap(), "plain");
        assert!(render_hostname("node{n:x}", 1).is_err());
        assert!(render_hostname("a{n}b{n}", 1).is_err());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let s = Settings {
            user: Some(User {
                name: "alice".into(),
                password: PasswordHashes::new(b"hunter2-long").unwrap(),
            }),
            wifi: vec![Wifi {
                ssid: b"home".to_vec(),
                psk: "ab".repeat(32),
                hidden: false,
                country: "GB".into(),
            }],
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        let user = s.user.as_ref().unwrap();
        for secret in [
            "ab".repeat(32),
            user.password.yescrypt.clone(),
            user.password.sha256.clone(),
        ] {
            assert!(!shown.contains(&secret), "{shown}");
        }
        assert!(
            shown.contains("alice") && shown.contains("\"home\""),
            "{shown}"
        );
    }

    #[test]
    fn settings_round_trip_with_a_binary_ssid() {
        let s = Settings {
            wifi: vec![Wifi {
                ssid: b"caf\xe9\n".to_vec(),
                psk: "ab".repeat(32),
                hidden: true,
                country: "FR".into(),
            }],
            ..Settings::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("636166e90a"), "{json}");
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
        // Hex digits only: from_str_radix alone takes "+a" as 0x0a.
        let lax = json.replace("636166e90a", "+a6166e90a");
        assert!(serde_json::from_str::<Settings>(&lax).is_err(), "{lax}");
    }

    #[test]
    fn a_preset_with_one_network_still_loads() {
        let old = r#"{"counter":1,"wifi":{"ssid":"686f6d65","psk":"abababababababababababababababababababababababababababababababab","hidden":false,"country":"GB"}}"#;
        let s: Settings = serde_json::from_str(old).unwrap();
        assert_eq!(s.wifi.len(), 1);
        assert_eq!(s.wifi[0].ssid, b"home");
    }

    #[test]
    fn static_addresses_are_checked() {
        let ok = StaticIp::parse("ethernet:192.168.1.50/24,192.168.1.1,1.1.1.1,9.9.9.9").unwrap();
        assert_eq!(ok.interface, Interface::Ethernet);
        assert_eq!(ok.cidr(), "192.168.1.50/24");
        assert_eq!(ok.gateway, Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(ok.dns.len(), 2);
        assert!(StaticIp::parse("wifi:10.0.0.7/8")
            .unwrap()
            .gateway
            .is_none());
        for (bad, why) in [
            ("192.168.1.50/24", "INTERFACE:ADDRESS"),
            ("usb:192.168.1.50/24", "ethernet or wifi"),
            ("ethernet:192.168.1.300/24", "not an IPv4 address"),
            ("ethernet:192.168.1.50/33", "prefix length"),
            ("ethernet:192.168.1.50", "INTERFACE:ADDRESS"),
            ("ethernet:192.168.1.0/24", "broadcast"),
            ("ethernet:192.168.1.255/24", "broadcast"),
            ("ethernet:192.168.1.50/24,192.168.2.1", "gateway"),
            ("ethernet:192.168.1.50/24,192.168.1.50", "gateway"),
            ("ethernet:127.0.0.5/8", "cannot be a host"),
        ] {
            let e = StaticIp::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn several_networks_share_one_country_and_differ() {
        let net = |ssid: &[u8], country: &str| Wifi {
            ssid: ssid.to_vec(),
            psk: "ab".repeat(32),
            hidden: false,
            country: country.into(),
        };
        let mut s = Settings {
            wifi: vec![net(b"home", "GB"), net(b"work", "GB")],
            ..Settings::default()
        };
        s.validate().unwrap();
        s.wifi[1].country = "DE".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("one country"));
        s.wifi[1] = net(b"home", "GB");
        assert!(s.validate().unwrap_err().to_string().contains("twice"));
        let wifi_ip = Settings {
            static_ip: vec![StaticIp::parse("wifi:10.0.0.7/8").unwrap()],
            ..Settings::default()
        };
        assert!(wifi_ip
            .validate()
            .unwrap_err()
            .to_string()
            .contains("needs a Wi-Fi"));
    }
}
