//! Getting a catalog: from the URL or file asked for, else the last good copy in the cache,
//! else the sample bundled into cardsmith; and saying which one it is and how old.

use std::fs::{self, File};
use std::io::Read;

use crate::bundled;
use crate::cache::{now, Cache};
use crate::filter::prune_init_formats;
use crate::http::Http;
use crate::location::Location;
use crate::model::{user_locale, Catalog, Device, OsEntry};
use crate::resolve::{resolve_device_icons, resolve_sublists};
use crate::time::{ago, utc};
use crate::Error;

/// Raspberry Pi Imager's OS list.
pub const OFFICIAL: &str = "https://downloads.raspberrypi.com/os_list_imagingutility_v4.json";
/// A catalog file larger than this is refused (the official one is about 100 kB).
pub const CATALOG_LIMIT: u64 = 32 << 20;

/// Reads catalogs and sublists from wherever they are.
pub struct Fetcher {
    pub http: Http,
}

impl Fetcher {
    pub fn fetch(&self, location: &Location, limit: u64) -> Result<Vec<u8>, Error> {
        match location {
            Location::Url(url) => self.http.fetch(url, limit),
            Location::Path(path) => {
                let read_err = |source| Error::Read {
                    path: path.clone(),
                    source,
                };
                let mut bytes = Vec::new();
                File::open(path)
                    .map_err(read_err)?
                    .take(limit + 1)
                    .read_to_end(&mut bytes)
                    .map_err(read_err)?;
                if bytes.len() as u64 > limit {
                    return Err(Error::TooLarge {
                        url: path.display().to_string(),
                        limit,
                    });
                }
                Ok(bytes)
            }
            Location::Bundled(name) => bundled::file(name)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Error::NotBundled(name.clone())),
        }
    }
}

impl Catalog {
    /// Parses a catalog or sublist read from `location`.
    pub fn parse(bytes: &[u8], location: &Location) -> Result<Catalog, Error> {
        Catalog::from_json(bytes).map_err(|e| Error::Parse {
            location: location.to_string(),
            detail: e.to_string(),
        })
    }
}

/// Which catalog is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Fetched from its URL just now.
    Fetched,
    /// A local file; its modification time.
    File { modified: Option<u64> },
    /// The URL could not be fetched; the last good copy, fetched at `fetched_at`.
    Cached { fetched_at: u64, error: String },
    /// Nothing else was available: the sample built into cardsmith.
    Bundled { error: String },
}

/// A catalog ready to show: sublists inlined, the user's language chosen, entries with
/// unknown init formats dropped.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub catalog: Catalog,
    /// What was asked for: a URL or a path.
    pub asked: String,
    pub origin: Origin,
    /// Sublists left out, entries dropped, and why.
    pub notes: Vec<String>,
}

impl Loaded {
    /// One line saying which catalog this is and how old.
    pub fn describe(&self) -> String {
        let now = now();
        match &self.origin {
            Origin::Fetched => format!("Catalog: {} (fetched just now)", self.asked),
            Origin::File { modified: Some(t) } => format!(
                "Catalog: {} (file modified {}, {})",
                self.asked,
                utc(*t),
                ago(*t, now)
            ),
            Origin::File { modified: None } => format!("Catalog: {}", self.asked),
            Origin::Cached { fetched_at, error } => format!(
                "Catalog: the cached copy of {} fetched {} ({}), because fetching it now failed: {error}",
                self.asked,
                utc(*fetched_at),
                ago(*fetched_at, now)
            ),
            Origin::Bundled { error } => format!(
                "Catalog: the offline sample built into cardsmith (images of {}), because \
                 fetching {} failed and no copy is cached: {error}",
                newest_release(&self.catalog.os_list).unwrap_or_else(|| "unknown date".into()),
                self.asked
            ),
        }
    }

    /// Age in seconds, when known (for `--json`).
    pub fn fetched_at(&self) -> Option<u64> {
        match &self.origin {
            Origin::Fetched => Some(now()),
            Origin::File { modified } => *modified,
            Origin::Cached { fetched_at, .. } => Some(*fetched_at),
            Origin::Bundled { .. } => None,
        }
    }
}

fn newest_release(list: &[OsEntry]) -> Option<String> {
    list.iter()
        .flat_map(|e| {
            let inner = e.subitems.as_deref().and_then(newest_release);
            [e.release_date.clone(), inner]
        })
        .flatten()
        .max()
}

/// Loads the catalog at `repo` (default: the official list). A URL that cannot be fetched
/// or parsed falls back to the cached copy, then to the bundled sample; a file the user
/// named must load.
pub fn load(repo: Option<&str>, http: &Http, cache: Option<&Cache>) -> Result<Loaded, Error> {
    let asked = repo.unwrap_or(OFFICIAL).to_owned();
    let location = Location::parse(&asked);
    let fetcher = Fetcher { http: http.clone() };
    let fetched = fetcher
        .fetch(&location, CATALOG_LIMIT)
        .and_then(|bytes| Catalog::parse(&bytes, &location));
    let (mut catalog, origin, mut notes) = match fetched {
        Ok(mut catalog) => {
            catalog.localize(&user_locale());
            let resolved = resolve_sublists(&mut catalog.os_list, &location, &fetcher);
            let mut notes = resolved.notes;
            resolve_device_icons(&mut catalog, &location, &mut notes);
            let origin = match &location {
                Location::Path(path) => Origin::File {
                    modified: fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                },
                _ => Origin::Fetched,
            };
            // A catalog missing a sublist does not replace the last good copy.
            if let (true, true, Some(cache)) = (location.is_remote(), resolved.complete, cache) {
                let value = serde_json::to_value(&catalog).expect("a catalog serializes");
                if let Err(e) = cache.save_catalog(&asked, value) {
                    notes.push(format!("the catalog could not be cached: {e}"));
                }
            }
            (catalog, origin, notes)
        }
        Err(e) if location.is_remote() => fallback(&asked, cache, &fetcher, e.to_string())?,
        Err(e) => return Err(e),
    };
    notes.extend(
        prune_init_formats(&mut catalog.os_list)
            .into_iter()
            .map(|name| format!("left out, cardsmith cannot prepare it: {name}")),
    );
    Ok(Loaded {
        catalog,
        asked,
        origin,
        notes,
    })
}

fn fallback(
    asked: &str,
    cache: Option<&Cache>,
    fetcher: &Fetcher,
    error: String,
) -> Result<(Catalog, Origin, Vec<String>), Error> {
    if let Some(saved) = cache.and_then(|c| c.saved_catalog(asked)) {
        if let Ok(catalog) = serde_json::from_value::<Catalog>(saved.catalog) {
            let origin = Origin::Cached {
                fetched_at: saved.fetched_at,
                error,
            };
            return Ok((catalog, origin, Vec::new()));
        }
    }
    let location = Location::Bundled(bundled::CATALOG.to_owned());
    let mut catalog = Catalog::parse(&fetcher.fetch(&location, CATALOG_LIMIT)?, &location)?;
    catalog.localize(&user_locale());
    let mut notes = resolve_sublists(&mut catalog.os_list, &location, fetcher).notes;
    resolve_device_icons(&mut catalog, &location, &mut notes);
    Ok((catalog, Origin::Bundled { error }, notes))
}

/// An entry with the names of the categories above it ("Other/Raspberry Pi OS Lite").
fn walk<'a>(list: &'a [OsEntry], prefix: &str, out: &mut Vec<(String, &'a OsEntry)>) {
    for entry in list {
        let path = if prefix.is_empty() {
            entry.name.clone()
        } else {
            format!("{prefix}/{}", entry.name)
        };
        out.push((path.clone(), entry));
        if let Some(children) = &entry.subitems {
            walk(children, &path, out);
        }
    }
}

/// Finds the image named `name` (or "Category/Name") in `list`, ignoring case.
pub fn find_os<'a>(list: &'a [OsEntry], name: &str) -> Result<(String, &'a OsEntry), Error> {
    let mut all = Vec::new();
    walk(list, "", &mut all);
    let wanted = name.trim().to_lowercase();
    let by_path: Vec<_> = all
        .iter()
        .filter(|(path, _)| path.to_lowercase() == wanted)
        .collect();
    let by_name: Vec<_> = all
        .iter()
        .filter(|(_, e)| e.name.to_lowercase() == wanted)
        .collect();
    let matches = if by_path.is_empty() { by_name } else { by_path };
    let Some(&&(ref path, first)) = matches.first() else {
        let similar = all
            .iter()
            .filter(|(_, e)| e.name.to_lowercase().contains(&wanted))
            .map(|(p, _)| p.clone())
            .take(5)
            .collect();
        return Err(Error::NoSuchOs {
            name: name.to_owned(),
            similar,
        });
    };
    let distinct = matches.iter().any(|(_, e)| e.url != first.url);
    if distinct {
        return Err(Error::AmbiguousOs {
            name: name.to_owned(),
            paths: matches.iter().map(|(p, _)| p.clone()).collect(),
        });
    }
    if let Some(children) = &first.subitems {
        return Err(Error::IsCategory {
            name: first.name.clone(),
            children: children.iter().map(|c| c.name.clone()).collect(),
        });
    }
    Ok((path.clone(), first))
}

/// The device named `name`, or a device made of the one tag `name` (with its owner's
/// matching type), ignoring case.
pub fn find_device(devices: &[Device], name: &str) -> Result<Device, Error> {
    let wanted = name.trim().to_lowercase();
    if let Some(device) = devices.iter().find(|d| d.name.to_lowercase() == wanted) {
        return Ok(device.clone());
    }
    for device in devices {
        if let Some(tag) = device.tags().iter().find(|t| t.to_lowercase() == wanted) {
            return Ok(Device {
                name: format!("{} ({tag} only)", device.name),
                tags: Some(vec![tag.clone()]),
                ..device.clone()
            });
        }
    }
    Err(Error::NoSuchDevice {
        name: name.to_owned(),
        known: devices.iter().map(|d| d.name.clone()).collect(),
    })
}
