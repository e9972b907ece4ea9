//! The Raspberry Pi Imager v4 OS list, as serde types. Every key cardsmith does not know is
//! kept in an `extra` map, so a list loads and saves without losing anything.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A whole OS list (`os_list_imagingutility_v4.json`), or a sublist file (only `os_list`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imager: Option<Imager>,
    #[serde(default)]
    pub os_list: Vec<OsEntry>,
    /// Unknown keys, including the `os_list_<locale>` variants.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `imager` section: the newest Imager version and the devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Imager {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A device ("Raspberry Pi 5") and the tags that OS entries name in their `devices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    /// Absent and empty both mean "filters nothing"; kept apart so a list saves as it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// "inclusive" keeps OS entries that name no devices; anything else (the default) is
    /// exclusive and drops them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Imager marks the device it selects first; only a real `true` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Device {
    pub fn tags(&self) -> &[String] {
        self.tags.as_deref().unwrap_or_default()
    }

    pub fn is_inclusive(&self) -> bool {
        self.matching_type.as_deref() == Some("inclusive")
    }

    pub fn is_default(&self) -> bool {
        self.default == Some(Value::Bool(true))
    }
}

/// An OS, or a category of them (`subitems`, or `subitems_url` naming a sublist file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OsEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_date: Option<String>,
    /// Size of the decompressed image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_sha256: Option<String>,
    /// Size of the file as downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_download_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_download_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_format: Option<String>,
    /// A block map (bmaptool's .bmap) of the decompressed image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmap_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subitems: Option<Vec<OsEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subitems_url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OsEntry {
    /// A category: it holds other entries (or will, once its sublist is fetched).
    pub fn is_category(&self) -> bool {
        self.subitems.is_some() || self.subitems_url.is_some()
    }
}

/// The init formats cardsmith knows how to customise (or to leave alone). Entries with
/// any other are left out of the list, as Raspberry Pi Imager leaves out formats it does
/// not know. That includes "rpi-preseed" (Imager 2.0.11 writes an `rpi-preseed.toml` for
/// the rpi-preseed package, a prototype meant to replace cloud-init): cardsmith does not
/// prepare it, so it does not offer such images as if it did.
pub const INIT_FORMATS: [&str; 5] = ["", "none", "systemd", "cloudinit", "cloudinit-rpi"];

impl Catalog {
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Catalog> {
        serde_json::from_slice(bytes)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a catalog serializes")
    }

    pub fn devices(&self) -> &[Device] {
        self.imager.as_ref().map_or(&[], |i| &i.devices)
    }

    /// Chooses the `os_list_<locale>` variant for `locale` ("de_DE", then "de"), falling
    /// back to `os_list` when there is none or it does not parse. The variants are used up:
    /// afterwards `os_list` is the list to show (and to resolve, filter and save).
    pub fn localize(&mut self, locale: &str) {
        let locale = locale.split(['.', '@']).next().unwrap_or("");
        let language = locale.split('_').next().unwrap_or("");
        let chosen = [locale, language]
            .into_iter()
            .filter(|key| !key.is_empty())
            .filter_map(|key| self.extra.get(&format!("os_list_{key}")))
            .filter_map(|list| serde_json::from_value::<Vec<OsEntry>>(list.clone()).ok())
            .find(|entries| !entries.is_empty());
        if let Some(entries) = chosen {
            self.os_list = entries;
        }
        self.extra.retain(|key, _| !key.starts_with("os_list_"));
    }
}

/// The user's language, from the environment as gettext reads it: "de_DE", or "" for C.
pub fn user_locale() -> String {
    let value = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    match value.as_str() {
        "C" | "POSIX" => String::new(),
        other => other.split(['.', '@']).next().unwrap_or("").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let text = r#"{"imager": {"latest_version": "2.0", "devices": [{"name": "Pi", "tags": ["pi5-64bit"], "new_field": 7}]},
            "os_list": [{"name": "A", "url": "https://x/a.img.xz", "future": {"x": [1, 2]},
                         "subitems": [{"name": "B", "capabilities": ["usb_otg"]}]}],
            "os_list_de": [], "schema_hint": true}"#;
        let catalog = Catalog::from_json(text.as_bytes()).unwrap();
        let again = Catalog::from_json(catalog.to_json().as_bytes()).unwrap();
        assert_eq!(catalog, again);
        let original: Value = serde_json::from_str(text).unwrap();
        let saved: Value = serde_json::from_str(&catalog.to_json()).unwrap();
        assert_eq!(original, saved);
    }

    #[test]
    fn the_users_language_picks_its_list() {
        let text = r#"{"os_list": [{"name": "English"}],
            "os_list_de": [{"name": "Deutsch"}], "os_list_pt_BR": [{"name": "Português"}]}"#;
        let pick = |locale: &str| {
            let mut c = Catalog::from_json(text.as_bytes()).unwrap();
            c.localize(locale);
            c.os_list[0].name.clone()
        };
        assert_eq!(pick("de_AT.UTF-8"), "Deutsch");
        assert_eq!(pick("pt_BR"), "Português");
        assert_eq!(pick("pt_PT"), "English");
        assert_eq!(pick(""), "English");
    }
}
