//! Inlining `subitems_url` sublists, so the catalog can be shown, filtered and saved whole.

use crate::location::Location;
use crate::model::{Catalog, OsEntry};
use crate::source::Fetcher;

/// Sublists nested deeper than this are not fetched (Raspberry Pi Imager's limit too).
pub const MAX_DEPTH: usize = 16;
/// A sublist file larger than this is refused.
pub const SUBLIST_LIMIT: u64 = 16 << 20;

/// Fetches every `subitems_url` below `list` (relative to the file that names it) and puts
/// its `os_list` in the entry's `subitems`. Image URLs are made absolute on the way, so
/// they stay right wherever the catalog is saved. A sublist that cannot be fetched, that
/// is nested too deep, or that names one of its own ancestors, becomes an empty category
/// (dropped later) and a note says why.
pub fn resolve_sublists(list: &mut [OsEntry], base: &Location, fetcher: &Fetcher) -> Vec<String> {
    let mut notes = Vec::new();
    let mut chain = vec![base.clone()];
    resolve(list, base, fetcher, &mut chain, &mut notes);
    notes
}

fn resolve(
    list: &mut [OsEntry],
    base: &Location,
    fetcher: &Fetcher,
    chain: &mut Vec<Location>,
    notes: &mut Vec<String>,
) {
    for entry in list.iter_mut() {
        if let Some(url) = &entry.url {
            entry.url = Some(base.join(url).to_string());
        }
        if let Some(children) = &mut entry.subitems {
            resolve(children, base, fetcher, chain, notes);
            continue;
        }
        let Some(sub) = entry.subitems_url.take() else {
            continue;
        };
        let location = base.join(&sub);
        let children = if chain.contains(&location) {
            notes.push(format!(
                "{:?}: the sublist {location} includes itself; it is left out",
                entry.name
            ));
            Vec::new()
        } else if chain.len() > MAX_DEPTH {
            notes.push(format!(
                "{:?}: sublists nest deeper than {MAX_DEPTH} levels; {location} is left out",
                entry.name
            ));
            Vec::new()
        } else {
            match fetcher
                .fetch(&location, SUBLIST_LIMIT)
                .and_then(|bytes| Catalog::parse(&bytes, &location))
            {
                Ok(sublist) => {
                    let mut children = sublist.os_list;
                    chain.push(location.clone());
                    resolve(&mut children, &location, fetcher, chain, notes);
                    chain.pop();
                    children
                }
                Err(e) => {
                    notes.push(format!("{:?}: {e}; the category is left out", entry.name));
                    Vec::new()
                }
            }
        };
        entry.subitems = Some(children);
    }
}
