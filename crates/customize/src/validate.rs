//! Checking each setting before anything is written, with a message that says what is
//! wrong with it.

use crate::Error;

const COUNTRIES: &str = include_str!("../data/countries.txt");
const TIMEZONES: &str = include_str!("../data/timezones.txt");
const KEYMAPS: &str = include_str!("../data/keymaps.txt");

/// The Wi-Fi countries `country` accepts (ISO 3166-1 alpha-2), for pickers.
pub fn countries() -> impl Iterator<Item = &'static str> {
    COUNTRIES.lines().filter(|l| !l.is_empty())
}

/// The time zones `timezone` accepts, for pickers.
pub fn timezones() -> impl Iterator<Item = &'static str> {
    TIMEZONES.lines().filter(|l| !l.is_empty())
}

/// The keyboard layouts `keymap` accepts, for pickers.
pub fn keymaps() -> impl Iterator<Item = &'static str> {
    KEYMAPS.lines().filter(|l| !l.is_empty())
}

fn listed(list: &str, value: &str) -> bool {
    list.lines().any(|l| l == value)
}

/// An RFC 1123 host name label: 1 to 63 letters, digits and hyphens, not starting or
/// ending with a hyphen.
pub fn hostname(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::invalid("hostname", name, why));
    if name.is_empty() || name.len() > 63 {
        return bad("it must have 1 to 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return bad(
            "only letters a-z, digits and hyphens are allowed (no dots, spaces or underscores)",
        );
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it may not start or end with a hyphen");
    }
    Ok(())
}

/// Accounts a Debian system already has (or reserves), which must not be taken over.
const SYSTEM_ACCOUNTS: [&str; 34] = [
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "_apt",
    "messagebus",
    "sshd",
    "avahi",
    "polkitd",
    "rtkit",
    "lightdm",
    "pulse",
    "colord",
    "saned",
    "dnsmasq",
    "ntp",
    "statd",
    "tss",
    "nm-openvpn",
    "systemd-network",
];

/// A Debian user name (adduser's default NAME_REGEX, at most 32 characters), not root and
/// not a system account.
pub fn user(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::invalid("user name", name, why));
    if name.is_empty() || name.len() > 32 {
        return bad("it must have 1 to 32 characters");
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let body = name.strip_suffix('$').unwrap_or(name);
    let rest_ok = body
        .bytes()
        .skip(1)
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !first_ok || !rest_ok {
        return bad("it must start with a lower-case letter and hold only a-z, 0-9, - and _");
    }
    if SYSTEM_ACCOUNTS.contains(&name) || name.starts_with("systemd-") {
        return bad("it is a system account; choose another name");
    }
    Ok(())
}

/// An SSID: 1 to 32 bytes, any bytes but NUL.
pub fn ssid(ssid: &[u8]) -> Result<(), Error> {
    let shown = String::from_utf8_lossy(ssid);
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(Error::invalid(
            "Wi-Fi SSID",
            shown,
            format!("it has {} bytes; an SSID has 1 to 32", ssid.len()),
        ));
    }
    if ssid.contains(&0) {
        return Err(Error::invalid("Wi-Fi SSID", shown, "it holds a NUL byte"));
    }
    Ok(())
}

/// A WPA passphrase: 8 to 63 printable ASCII characters.
pub fn passphrase(p: &[u8]) -> Result<(), Error> {
    let ok_len = (8..=63).contains(&p.len());
    let ok_chars = p.iter().all(|b| (0x20..=0x7e).contains(b));
    if ok_len && ok_chars {
        return Ok(());
    }
    let why = if ok_chars {
        format!(
            "it has {} characters; a WPA passphrase has 8 to 63 (or is 64 hex digits)",
            p.len()
        )
    } else {
        "it holds characters other than printable ASCII, which WPA does not allow".to_owned()
    };
    Err(Error::invalid("Wi-Fi password", "(hidden)", why))
}

/// An ISO 3166-1 alpha-2 country code (upper case).
pub fn country(code: &str) -> Result<(), Error> {
    if listed(COUNTRIES, code) {
        Ok(())
    } else {
        Err(Error::invalid(
            "Wi-Fi country",
            code,
            "use an ISO 3166-1 alpha-2 code such as GB, DE or US (upper case)",
        ))
    }
}

/// A time zone from the IANA database ("Europe/London").
pub fn timezone(tz: &str) -> Result<(), Error> {
    if listed(TIMEZONES, tz) {
        Ok(())
    } else {
        Err(Error::invalid(
            "time zone",
            tz,
            "it is not an IANA time zone such as Europe/London or America/New_York",
        ))
    }
}

/// An X keyboard layout ("us", "gb", "de").
pub fn keymap(map: &str) -> Result<(), Error> {
    if listed(KEYMAPS, map) {
        Ok(())
    } else {
        Err(Error::invalid(
            "keymap",
            map,
            "it is not an X keyboard layout such as us, gb, de or fr",
        ))
    }
}

const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line ("ssh-ed25519 AAAA… comment"): a known type, and a base64
/// blob that decodes and names the same type. Returns the key without trailing space.
pub fn ssh_key(line: &str) -> Result<String, Error> {
    let line = line.trim();
    let shown: String = line.chars().take(40).collect();
    let bad = |why: &str| Err(Error::invalid("SSH public key", shown.clone(), why));
    let mut fields = line.split_whitespace();
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        return bad("a public key line is \"TYPE BASE64 [COMMENT]\" (the .pub file)");
    };
    if !KEY_TYPES.contains(&kind) {
        return bad("the type is not ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521 or an sk- key; is this a private key?");
    }
    let Some(decoded) = base64_decode(blob) else {
        return bad("its key data is not valid base64");
    };
    let named = decoded
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| decoded.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return bad("its key data does not belong to the type it names");
    }
    if line.chars().any(char::is_control) {
        return bad("it holds control characters; one key per line");
    }
    Ok(line.to_owned())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let body = text.trim_end_matches('=');
    if text.len() % 4 != 0 || text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(hostname("node-01").is_ok());
        assert!(hostname(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "-pi",
            "pi-",
            "pi.local",
            "my pi",
            "pi_1",
            &"a".repeat(64),
        ] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_names() {
        assert!(user("pi").is_ok());
        assert!(user("alice_2").is_ok());
        for bad in ["root", "Pi", "1pi", "daemon", "systemd-timesync", "a b", ""] {
            assert!(user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists() {
        assert!(country("GB").is_ok() && country("gb").is_err() && country("XX").is_err());
        assert!(timezone("Europe/London").is_ok() && timezone("Mars/Olympus").is_err());
        assert!(keymap("us").is_ok() && keymap("qwerty").is_err());
    }

    #[test]
    fn ssh_keys_are_parsed() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtt1J9x7vU6sqiJ6mlQvhBPHTcJ1rYqRk4cR3EqsEkI me@laptop";
        assert_eq!(ssh_key(&format!("{ed}\n")).unwrap(), ed);
        assert!(ssh_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIBtt1J9x7vU6sqiJ6mlQvhBPHTcJ1rYqRk4cR3EqsEkI"
        )
        .is_err());
        assert!(ssh_key("-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
        assert!(ssh_key("ssh-ed25519 not*base64").is_err());
    }

    #[test]
    fn ssids_and_passphrases() {
        assert!(ssid(b"caf\xc3\xa9 \"$x\"\n\xff").is_ok());
        assert!(ssid(b"").is_err() && ssid(&[b'a'; 33]).is_err() && ssid(b"a\0b").is_err());
        assert!(passphrase(b"12345678").is_ok());
        assert!(passphrase(b"1234567").is_err() && passphrase("pässwort1".as_bytes()).is_err());
    }
}
