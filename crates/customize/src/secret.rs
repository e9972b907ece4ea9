//! Passwords and Wi-Fi keys, turned into what lands on the card: crypt hashes and a PSK.
//! The plaintext never leaves this module.

use serde::{Deserialize, Serialize};
use sha_crypt::{PasswordHasher as _, ShaCrypt};
use yescrypt::Yescrypt;

use crate::Error;

/// One password, hashed both ways; which one is used depends on the image's age.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHashes {
    /// `$y$…`, for images released on or after 2023-01-01.
    pub yescrypt: String,
    /// `$5$…`, for older images.
    pub sha256: String,
}

/// Hashes can be cracked offline: they never reach a log through `{:?}`.
impl std::fmt::Debug for PasswordHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHashes(hidden)")
    }
}

impl PasswordHashes {
    /// Hashes `password` with fresh salts from the operating system's random source.
    pub fn new(password: &[u8]) -> Result<PasswordHashes, Error> {
        if password.is_empty() {
            return Err(Error::invalid("password", "", "it is empty"));
        }
        let yescrypt = Yescrypt::default()
            .hash_password_with_salt(password, &random(16)?)
            .map_err(|e| Error::Crypto(e.to_string()))?
            .to_string();
        // sha-crypt writes the salt in crypt's base 64 and hashes that text: 12 bytes make
        // the 16 characters sha256-crypt allows (libxcrypt ignores any beyond).
        let sha256 = ShaCrypt::SHA256
            .hash_password_with_salt(password, &random(12)?)
            .map_err(|e| Error::Crypto(e.to_string()))?
            .to_string();
        Ok(PasswordHashes { yescrypt, sha256 })
    }

    pub fn for_release(&self, modern: bool) -> &str {
        if modern {
            &self.yescrypt
        } else {
            &self.sha256
        }
    }
}

fn random(len: usize) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).map_err(|e| Error::Crypto(format!("no random numbers: {e}")))?;
    Ok(bytes)
}

/// The WPA pre-shared key as 64 hex digits: PBKDF2-HMAC-SHA1(passphrase, SSID, 4096, 32),
/// or the passphrase itself when it already is 64 hex digits.
pub fn wifi_psk(ssid: &[u8], passphrase: &[u8]) -> Result<String, Error> {
    if passphrase.len() == 64 && passphrase.iter().all(u8::is_ascii_hexdigit) {
        return Ok(String::from_utf8_lossy(passphrase).to_ascii_lowercase());
    }
    crate::validate::passphrase(passphrase)?;
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase, ssid, 4096, &mut key);
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_matches_the_ieee_802_11i_test_vector() {
        // IEEE 802.11i-2004, H.4.3: "password" on SSID "IEEE".
        assert_eq!(
            wifi_psk(b"IEEE", b"password").unwrap(),
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        let hex = "AB".repeat(32);
        assert_eq!(wifi_psk(b"x", hex.as_bytes()).unwrap(), "ab".repeat(32));
        assert!(wifi_psk(b"x", b"short").is_err());
    }

    #[test]
    fn hashes_have_fresh_salts_and_the_right_prefixes() {
        let a = PasswordHashes::new(b"secret").unwrap();
        let b = PasswordHashes::new(b"secret").unwrap();
        assert!(
            a.yescrypt.starts_with("$y$") && a.sha256.starts_with("$5$"),
            "{a:?}"
        );
        assert_ne!(a.yescrypt, b.yescrypt);
        assert_ne!(a.sha256, b.sha256);
    }
}
