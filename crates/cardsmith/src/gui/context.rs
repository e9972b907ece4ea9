//! What every screen may read: the catalog, its icons, the drives, what this computer
//! suggests, the options, and what looking inside the chosen OS found. And what the user
//! chose so far, as a small [`Selection`], which turns into a job. No widgets here.

use std::collections::HashMap;
use std::path::PathBuf;

use cardsmith_catalog::{find_device, for_device, Cache, Loaded, OsEntry};
use cardsmith_customize::Settings;
use cardsmith_drives::Drive;
use cardsmith_engine::CancelToken;
use iced::widget::image;

use super::host::Host;
use super::work::Job;
use crate::job::{Destination, EraseJob, Permission, Source, Wanted, WriteJob};

/// The catalog, as far as it has loaded.
#[derive(Debug, Clone)]
pub enum CatalogState {
    Loading,
    Ready(Box<Loaded>),
    Failed(String),
}

/// What looking inside the chosen OS found (see `gui::inspect`).
#[derive(Debug, Clone, PartialEq)]
pub enum Inspected {
    Looking,
    /// A catalog image still to be downloaded: looked into when it is written.
    Later {
        format: Option<String>,
    },
    Found {
        os: Option<String>,
        format: String,
        why: String,
        /// Where inspection disagrees with the catalog.
        note: Option<String>,
        effects: Vec<cardsmith_customize::Effect>,
    },
    /// The image cannot take settings: why.
    None(String),
    /// The image could not be read.
    Failed(String),
}

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum OsChoice {
    /// A catalog entry, by its "Category/Name" path.
    Catalog { path: String, entry: Box<OsEntry> },
    /// An image file the user named.
    Custom(PathBuf),
    /// Erase: one FAT32 partition over the whole card.
    Erase,
}

/// Where to write.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageChoice {
    /// One drive, or a set of cards written at once (never empty).
    Drives(Vec<Drive>),
    /// "Save to image file…": the (customised) image goes into a file.
    File(PathBuf),
}

/// Shared data.
pub struct Context {
    pub catalog: CatalogState,
    /// Device and OS icons by their URL as the catalog gives it.
    pub icons: HashMap<String, image::Handle>,
    /// The drives the watcher reported, by kernel name.
    pub drives: Vec<Drive>,
    /// What this computer suggests for a new card.
    pub host: Host,
    pub language: String,
    /// Read the card back after writing.
    pub verify: bool,
    /// Power the card off when done.
    pub eject: bool,
    /// The download cache's folder; `None`: the user's cache folder.
    pub cache_dir: Option<PathBuf>,
    /// What looking inside the chosen OS found, and for which OS (`gui::inspect::key`).
    pub inspected: Option<(String, Inspected)>,
    /// Stops the inspection under way when another OS is chosen.
    pub inspect_cancel: Option<CancelToken>,
}

impl Context {
    /// Nothing loaded yet.
    pub fn new(language: String, host: Host) -> Context {
        Context {
            catalog: CatalogState::Loading,
            icons: HashMap::new(),
            drives: Vec::new(),
            host,
            language,
            verify: true,
            eject: false,
            cache_dir: None,
            inspected: None,
            inspect_cancel: None,
        }
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        match &self.catalog {
            CatalogState::Ready(l) => Some(l),
            _ => None,
        }
    }

    /// The icon fetched for `url`, if it is here.
    pub fn icon(&self, url: Option<&str>) -> Option<image::Handle> {
        url.and_then(|u| self.icons.get(u).cloned())
    }

    /// The download cache the jobs use.
    pub fn cache(&self) -> Result<Cache, cardsmith_catalog::Error> {
        match &self.cache_dir {
            Some(dir) => Ok(Cache::at(dir, cardsmith_catalog::DEFAULT_LIMIT)),
            None => Cache::open(),
        }
    }

    /// What inspection found for `os`.
    pub fn inspection(&self, os: Option<&OsChoice>) -> Option<&Inspected> {
        let os = os?;
        self.inspected
            .as_ref()
            .filter(|(key, _)| *key == super::inspect::key(os))
            .map(|(_, found)| found)
    }

    /// Why the chosen image cannot take `setting` ("wifi", "ssh", …), when inspection
    /// found that it cannot.
    pub fn refused(&self, os: Option<&OsChoice>, setting: &str) -> Option<&str> {
        match self.inspection(os)? {
            Inspected::Found { effects, .. } => effects
                .iter()
                .find(|e| e.setting == setting)
                .and_then(|e| e.refused.as_deref()),
            Inspected::None(why) => Some(why),
            _ => None,
        }
    }

    /// The catalog entries for `device` (all without one).
    pub fn os_list(&self, device: Option<&str>) -> Vec<OsEntry> {
        let Some(loaded) = self.loaded() else {
            return Vec::new();
        };
        let list = &loaded.catalog.os_list;
        match device.map(|d| find_device(loaded.catalog.devices(), d)) {
            Some(Ok(device)) => for_device(list, &device),
            _ => list.clone(),
        }
    }
}

/// What the user chose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub device: Option<String>,
    pub os: Option<OsChoice>,
    pub storage: Option<StorageChoice>,
    /// The settings saved in the editor (secrets hashed).
    pub settings: Option<Settings>,
    /// Put them on the card.
    pub apply_settings: bool,
    /// The preset whose host-name counter the settings use, to advance after each card.
    pub preset: Option<String>,
}

impl Selection {
    /// Whether NEXT may be pressed on the start screen (Erase needs a drive, not a file).
    pub fn ready(&self) -> bool {
        match (&self.os, &self.storage) {
            (Some(OsChoice::Erase), Some(StorageChoice::File(_))) => false,
            (Some(_), Some(_)) => true,
            _ => false,
        }
    }

    /// The decompressed size of the chosen image, when known, to grey out small drives.
    pub fn image_size(&self) -> Option<u64> {
        match &self.os {
            Some(OsChoice::Catalog { entry, .. }) => entry.extract_size,
            _ => None,
        }
    }

    /// Why a drive cannot take the chosen image, if it cannot: the image's size.
    pub fn too_small(&self, drive: &Drive) -> Option<u64> {
        self.image_size().filter(|&size| size > drive.size)
    }

    /// Whether the chosen drive must be confirmed by typing its name (a set of cards holds
    /// only cards the list offers, none of which needs it).
    pub fn must_type_name(&self) -> Option<&str> {
        match self.drives() {
            [d] if d.needs_name_typed() => Some(&d.name),
            _ => None,
        }
    }

    /// The first chosen drive, if drives were chosen.
    pub fn drive(&self) -> Option<&Drive> {
        self.drives().first()
    }

    /// The chosen drives: one, a set, or none (a file, or nothing yet).
    pub fn drives(&self) -> &[Drive] {
        match &self.storage {
            Some(StorageChoice::Drives(d)) => d,
            _ => &[],
        }
    }

    /// The host name card `index` of the chosen ones gets, when the settings set one.
    pub fn hostname_for(&self, index: usize) -> Option<String> {
        let s = self.settings.as_ref().filter(|_| self.apply_settings)?;
        crate::job::for_card(s, None, index)
            .hostname_now()
            .ok()
            .flatten()
    }

    /// The next card (or set of cards): the same OS and settings, the host name's counter
    /// past the numbers this one used, cards of their own to be chosen.
    pub fn next_card(&mut self) {
        let used = self.drives().len().max(1) as u64;
        self.storage = None;
        if let Some(s) = self.settings.as_mut().filter(|s| s.has_counter()) {
            s.counter += used;
        }
    }

    /// What the user chose, as a job: erase the drive, or write the OS to the drive or
    /// the file (with the settings when they are to be applied).
    pub fn job(&self, ctx: &Context) -> Option<Job> {
        let permission = |drive: &Drive| Permission {
            yes: true,
            allow_system_drive: drive.system_uses().is_some(),
        };
        match (self.os.as_ref()?, self.storage.as_ref()?) {
            (OsChoice::Erase, StorageChoice::Drives(drives)) => Some(Job::Erase(EraseJob {
                targets: drives
                    .iter()
                    .map(|d| Wanted {
                        path: d.path.clone(),
                        confirmed: Some(d.identity()),
                        gets: None,
                    })
                    .collect(),
                permission: permission(drives.first()?),
                eject: ctx.eject,
                skip_refused: false,
            })),
            (OsChoice::Erase, StorageChoice::File(_)) => None,
            (os, storage) => {
                let source = match os {
                    OsChoice::Catalog { entry, .. } => Source::Os(entry.clone()),
                    // A path, or a URL typed into the same field.
                    OsChoice::Custom(file) => Source::from_arg(&file.display().to_string()),
                    OsChoice::Erase => return None,
                };
                let (targets, permission) = match storage {
                    StorageChoice::Drives(drives) => (
                        drives
                            .iter()
                            .map(|d| Destination::Drive {
                                path: d.path.clone(),
                                confirmed: d.identity(),
                            })
                            .collect(),
                        permission(drives.first()?),
                    ),
                    StorageChoice::File(file) => (
                        vec![Destination::File(file.clone())],
                        Permission {
                            yes: true,
                            allow_system_drive: false,
                        },
                    ),
                };
                let settings = self.settings.clone().filter(|_| self.apply_settings);
                Some(Job::Write(Box::new(WriteJob {
                    verify: ctx.verify,
                    eject: ctx.eject && matches!(storage, StorageChoice::Drives(_)),
                    permission,
                    force: true,
                    advance_preset: self.preset.clone().filter(|_| settings.is_some()),
                    settings,
                    cache_dir: ctx.cache_dir.clone(),
                    ..WriteJob::to_all(source, targets)
                })))
            }
        }
    }
}
