//! Inlining `subitems_url` sublists, so the catalog can be shown, filtered and saved whole.

use crate::location::Location;
use crate::model::{Catalog, OsEntry};
use crate::source::Fetcher;

/// Sublists nested deeper than this are not fetched (Raspberry Pi Imager's limit too).
pub const MAX_DEPTH: usize = 16;
/// A sublist file larger than this is refused.
pub const SUBLIST_LIMIT: u64 = 16 << 20;
/// At most this many sublists are inlined in all, however they repeat.
pub const MAX_SUBLISTS: usize = 512;

/// What inlining found.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Sublists and entries left out, and why.
    pub notes: Vec<String>,
    /// False when a sublist could not be fetched: the catalog is not whole.
    pub complete: bool,
}

struct Walk<'a> {
    fetcher: &'a Fetcher,
    chain: Vec<Location>,
    inlined: usize,
    out: Resolved,
}

/// Fetches every `subitems_url` below `list` (relative to the file that names it) and puts
/// its `os_list` in the entry's `subitems`. Image URLs are made absolute on the way, so
/// they stay right wherever the catalog is saved. A sublist that cannot be fetched, is
/// nested too deep or names one of its own ancestors becomes an empty category (dropped
/// later), with a note. A list read from the web may only point at the web: an entry
/// naming a local file or device is left out.
pub fn resolve_sublists(list: &mut Vec<OsEntry>, base: &Location, fetcher: &Fetcher) -> Resolved {
    let mut walk = Walk {
        fetcher,
        chain: vec![base.clone()],
        inlined: 0,
        out: Resolved {
            notes: Vec::new(),
            complete: true,
        },
    };
    walk.list(list, base);
    walk.out
}

/// An icon named at `base`, made absolute; one a web catalog names on this computer is
/// dropped with a note (it would be read from a local path).
fn resolve_icon(
    icon: Option<String>,
    owner: &str,
    base: &Location,
    notes: &mut Vec<String>,
) -> Option<String> {
    let location = base.join(&icon?);
    if base.may_name(&location) {
        return Some(location.to_string());
    }
    notes.push(format!(
        "the icon of {owner:?} is left out: a catalog from the web may not name the local file \
         {location}"
    ));
    None
}

/// Makes the devices' icons absolute, leaving out those a web catalog names locally.
pub fn resolve_device_icons(catalog: &mut Catalog, base: &Location, notes: &mut Vec<String>) {
    if let Some(imager) = &mut catalog.imager {
        for device in &mut imager.devices {
            device.icon = resolve_icon(device.icon.take(), &device.name, base, notes);
        }
    }
}

impl Walk<'_> {
    fn list(&mut self, list: &mut Vec<OsEntry>, base: &Location) {
        list.retain_mut(|entry| self.entry(entry, base));
    }

    /// Resolves one entry; false when it must be left out.
    fn entry(&mut self, entry: &mut OsEntry, base: &Location) -> bool {
        entry.icon = resolve_icon(entry.icon.take(), &entry.name, base, &mut self.out.notes);
        if let Some(url) = &entry.url {
            let location = base.join(url);
            if !base.may_name(&location) {
                self.out.notes.push(format!(
                    "{:?} is left out: a catalog from the web may not name the local file {location}",
                    entry.name
                ));
                return false;
            }
            entry.url = Some(location.to_string());
        }
        if let Some(map) = entry.bmap_url.take() {
            let location = base.join(&map);
            if base.may_name(&location) {
                entry.bmap_url = Some(location.to_string());
            } else {
                self.out.notes.push(format!(
                    "{:?}'s block map is left out: a catalog from the web may not name the \
                     local file {location}",
                    entry.name
                ));
            }
        }
        if let Some(children) = &mut entry.subitems {
            self.list(children, base);
            return true;
        }
        if let Some(sub) = entry.subitems_url.take() {
            entry.subitems = Some(self.sublist(&entry.name, &base.join(&sub), base));
        }
        true
    }

    fn sublist(&mut self, name: &str, location: &Location, base: &Location) -> Vec<OsEntry> {
        let refused = if !base.may_name(location) {
            Some(format!(
                "a catalog from the web may not name the local file {location}"
            ))
        } else if self.chain.contains(location) {
            Some(format!("the sublist {location} includes itself"))
        } else if self.chain.len() > MAX_DEPTH {
            Some(format!(
                "sublists nest deeper than {MAX_DEPTH} levels at {location}"
            ))
        } else if self.inlined >= MAX_SUBLISTS {
            Some(format!(
                "more than {MAX_SUBLISTS} sublists; {location} is not fetched"
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            self.out
                .notes
                .push(format!("{name:?}: {why}; it is left out"));
            return Vec::new();
        }
        self.inlined += 1;
        let fetched = self
            .fetcher
            .fetch(location, SUBLIST_LIMIT)
            .and_then(|bytes| Catalog::parse(&bytes, location));
        match fetched {
            Ok(sublist) => {
                let mut children = sublist.os_list;
                self.chain.push(location.clone());
                self.list(&mut children, location);
                self.chain.pop();
                children
            }
            Err(e) => {
                self.out.complete = false;
                self.out
                    .notes
                    .push(format!("{name:?}: {e}; the category is left out"));
                Vec::new()
            }
        }
    }
}
