//! What `cardsmith check` found about a card, kept so that a later write to the same card
//! (by its model, serial and size; for a loop device, its backing file) is held to the
//! capacity the card really has.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cardsmith_drives::Identity;
use cardsmith_engine::{CheckReport, Target};
use serde::{Deserialize, Serialize};

use super::{Event, Run};

/// One card's real capacity, as a check found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub claimed: u64,
    pub real: u64,
    /// When (seconds since 1970).
    pub at: u64,
}

/// The file the findings are kept in: `$XDG_CONFIG_HOME/cardsmith/checks.json`.
fn file() -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "cardsmith")?;
    Some(dirs.config_dir().join("checks.json"))
}

/// The card's key: what stays the same when it is plugged in again.
fn key(id: &Identity) -> String {
    match (&id.serial, &id.backing_file) {
        (Some(serial), _) => format!(
            "{}|{serial}|{}",
            id.model.as_deref().unwrap_or_default(),
            id.size
        ),
        (None, Some(file)) => format!("file|{}|{}", file.display(), id.size),
        (None, None) => format!("path|{}|{}", id.path.display(), id.size),
    }
}

fn load() -> BTreeMap<String, Found> {
    file()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|data| serde_json::from_slice(&data).ok())
        .unwrap_or_default()
}

/// Keeps what a check with writing found; a note says where, or why not.
pub fn remember(id: &Identity, report: &CheckReport) -> Result<PathBuf, String> {
    let real = report
        .real
        .ok_or("nothing to keep: the check did not write")?;
    let path = file().ok_or("no configuration folder ($HOME is not set)")?;
    let mut all = load();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    all.insert(
        key(id),
        Found {
            claimed: report.claimed,
            real,
            at,
        },
    );
    let text = serde_json::to_vec_pretty(&all).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Holds `target` to the capacity a check found for this card, saying so, when it is less
/// than the card claims.
pub fn hold_to_real(id: &Identity, target: &mut Target, run: &mut Run<'_>) {
    let Some(found) = load().remove(&key(id)).filter(|f| f.real < f.claimed) else {
        return;
    };
    target.limit_to(found.real);
    run.event(Event::warning(format!(
        "{} keeps only {} of the {} it claims (found by cardsmith check): nothing is written \
         past that",
        id.path.display(),
        cardsmith_engine::units::bytes(found.real),
        cardsmith_engine::units::bytes(found.claimed)
    )));
}
