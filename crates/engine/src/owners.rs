//! What the unreadable blocks of a rescued backup held: the files, folders and filesystem
//! structures of an ext2/3/4 or FAT filesystem that lie on them, so that someone saving a
//! dying card learns which files to check, not only a byte offset.
//!
//! ext2/3/4: the group descriptors place the bitmaps and inode tables; every inode its
//! bitmap marks as used is read, and its block map (an extent tree, or direct and indirect
//! blocks) tells which blocks hold its data and which hold the map itself; the folders'
//! entries, read from inode 2 down, give each inode its path. FAT: the boot sector places
//! the reserved sectors, the tables and (FAT12/16) the root folder; the folders are walked
//! from the root and each entry's cluster chain followed.
//!
//! The structures are read the way the usage map reads them (see `usage`), and every number
//! is checked before it is used: a filesystem damaged by the very blocks that could not be
//! read (they read as zeros) names fewer owners, never panics, never loops, and never reads
//! more than its own metadata.

use std::collections::{HashMap, HashSet};

use crate::layout::ReadFn;
use crate::usage::{le16, le32, ExtFs, FatFs, PartRead, BG_INODE_UNINIT};
use crate::{Error, Filesystem, Usage};

/// At most this many owners are named for one unreadable range; the rest are counted.
const NAMED: usize = 12;

/// What one unreadable range of a disk held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Where it lies: "partition 2 (ext2/3/4)", "the partition table (before the first
    /// partition)", "space outside every partition".
    pub place: String,
    /// What lay there, as far as the filesystem says: file paths ("/home/pi/notes.txt"),
    /// "the folder /etc", "the inode of /boot/config.txt", "the journal", "free space",
    /// ... At most a dozen, then "and N more".
    pub what: Vec<String>,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.place)?;
        if !self.what.is_empty() {
            write!(f, ": {}", self.what.join(", "))?;
        }
        Ok(())
    }
}

/// What each of `ranges` (byte ranges of the disk, sorted, not overlapping) held, read
/// through `read` (which must not fail for these ranges: a rescued image, or the card with
/// them masked as zeros) and placed by `usage` (the disk's map).
pub(crate) fn held(read: &mut ReadFn<'_>, usage: &Usage, ranges: &[(u64, u64)]) -> Vec<Held> {
    let mut out: Vec<Held> = ranges
        .iter()
        .map(|&(a, _)| Held {
            place: place(usage, a),
            what: Vec::new(),
        })
        .collect();
    for part in &usage.parts {
        let end = part.start + part.len;
        let mine: Vec<usize> = (0..ranges.len())
            .filter(|&i| part.start <= ranges[i].0 && ranges[i].0 < end)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let relative: Vec<(u64, u64)> = mine
            .iter()
            .map(|&i| (ranges[i].0 - part.start, ranges[i].1.min(end) - part.start))
            .collect();
        let mut at = |offset: u64, want: usize| -> Result<Vec<u8>, Error> {
            if offset.saturating_add(want as u64) > part.len {
                return Ok(Vec::new());
            }
            read(part.start + offset, want)
        };
        let found = match part.filesystem {
            Filesystem::Ext => ext_owners(&mut at, part.len, &relative),
            Filesystem::Fat(_) => fat_owners(&mut at, part.len, &relative),
            _ => Err(String::new()),
        };
        for (k, &i) in mine.iter().enumerate() {
            let (a, b) = ranges[i];
            out[i].what = match &found {
                Ok(names) if !names[k].is_empty() => names[k].clone(),
                Ok(_) | Err(_) => {
                    let mut what = vec![if usage.touches(a, b) {
                        "space the filesystem marks in use, by no file found".to_owned()
                    } else {
                        "free space".to_owned()
                    }];
                    if let Err(why) = &found {
                        if !why.is_empty() {
                            what.push(format!("(its files could not be named: {why})"));
                        }
                    }
                    what
                }
            };
        }
    }
    out
}

/// What each of `ranges` (sorted byte ranges) of the disk image in `file` (`size` bytes,
/// 512-byte sectors) holds: the files and structures of its filesystems there.
pub fn held_in_file(file: &std::fs::File, size: u64, ranges: &[(u64, u64)]) -> Vec<Held> {
    held_in_disk(
        &mut crate::layout::file_reader(file, size, "the image"),
        size,
        ranges,
    )
}

/// The same for a disk image held in memory (as a fuzzer hands it over).
pub fn held_in_bytes(disk: &[u8], ranges: &[(u64, u64)]) -> Vec<Held> {
    let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, Error> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(disk.len());
        Ok(disk[start..start.saturating_add(len).min(disk.len())].to_vec())
    };
    held_in_disk(&mut read, disk.len() as u64, ranges)
}

fn held_in_disk(read: &mut ReadFn<'_>, size: u64, ranges: &[(u64, u64)]) -> Vec<Held> {
    match crate::usage::usage(read, size, 512) {
        Ok(usage) => held(read, &usage, ranges),
        Err(e) => ranges
            .iter()
            .map(|_| Held {
                place: format!("the image's layout could not be read ({e})"),
                what: Vec::new(),
            })
            .collect(),
    }
}

/// Where on the disk byte `at` lies.
fn place(usage: &Usage, at: u64) -> String {
    let part = usage
        .parts
        .iter()
        .enumerate()
        .find(|(_, p)| p.start <= at && at < p.start + p.len);
    match part {
        Some((n, p)) if usage.table.is_some() => {
            format!("partition {} ({})", n + 1, p.filesystem.name())
        }
        Some((_, p)) => format!("the disk's {} filesystem", p.filesystem.name()),
        None if at < usage.parts.iter().map(|p| p.start).min().unwrap_or(1 << 20) => {
            "the partition table (before the first partition)".into()
        }
        None => "space outside every partition".into(),
    }
}

/// Sorted unreadable ranges in some unit (blocks, clusters), and what was found on each.
struct Bad {
    ranges: Vec<(u64, u64)>,
    found: Vec<Vec<Owner>>,
    more: Vec<usize>,
}

impl Bad {
    /// `bytes` (sorted byte ranges) in units of `unit` bytes.
    fn new(bytes: &[(u64, u64)], unit: u64) -> Bad {
        Bad::of(
            bytes
                .iter()
                .map(|&(a, b)| (a / unit, b.div_ceil(unit)))
                .collect(),
        )
    }

    /// `ranges` whose starts and ends both rise.
    fn of(ranges: Vec<(u64, u64)>) -> Bad {
        Bad {
            found: vec![Vec::new(); ranges.len()],
            more: vec![0; ranges.len()],
            ranges,
        }
    }

    /// The ranges that `a..b` touches. Starts and ends both rise with the index.
    fn hits(&self, a: u64, b: u64) -> impl Iterator<Item = usize> + '_ {
        let first = self.ranges.partition_point(|&(_, e)| e <= a);
        (first..self.ranges.len()).take_while(move |&i| self.ranges[i].0 < b)
    }

    /// Notes `owner` on every range that `a..b` touches.
    fn note(&mut self, a: u64, b: u64, owner: Owner) {
        let hit: Vec<usize> = self.hits(a, b).collect();
        for i in hit {
            if self.found[i].contains(&owner) {
                continue;
            }
            if self.found[i].len() < NAMED {
                self.found[i].push(owner.clone());
            } else {
                self.more[i] += 1;
            }
        }
    }

    fn any(&self, a: u64, b: u64) -> bool {
        self.hits(a, b).next().is_some()
    }

    /// Each range's owners as words, `name` giving an inode's.
    fn words(self, mut name: impl FnMut(&Owner) -> String) -> Vec<Vec<String>> {
        self.found
            .iter()
            .zip(self.more)
            .map(|(owners, more)| {
                let mut words: Vec<String> = owners.iter().map(&mut name).collect();
                if more > 0 {
                    words.push(format!("and {more} more"));
                }
                words
            })
            .collect()
    }
}

/// What a block was found to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A filesystem structure, named.
    Named(String),
    /// Part of inode `.0`.
    Inode(u64, Role),
    /// A FAT file or folder, by path.
    Path(String, Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Its contents.
    Data,
    /// Its block map (extent tree nodes, indirect blocks).
    Map,
    /// Its extended-attribute block.
    Xattr,
    /// The inode itself, in the inode table.
    Inode,
}

// ext2/3/4 -----------------------------------------------------------------------------

const S_IFMT: u64 = 0xF000;
const S_IFDIR: u64 = 0x4000;
const S_IFREG: u64 = 0x8000;
const S_IFLNK: u64 = 0xA000;
const EXTENTS_FL: u64 = 0x80000;
const INLINE_DATA_FL: u64 = 0x1000_0000;
const EXTENT_MAGIC: u64 = 0xF30A;
/// The kernel's limit on an extent tree's depth.
const MAX_DEPTH: u64 = 5;
const ROOT: u64 = 2;

/// The names e2fsprogs gives the reserved inodes.
fn reserved_inode(ino: u64) -> Option<&'static str> {
    Some(match ino {
        1 => "the bad-blocks inode",
        3 => "the user quota file",
        4 => "the group quota file",
        5 => "the boot loader inode",
        6 => "the undelete folder inode",
        7 => "the reserved descriptor blocks (resize inode)",
        8 => "the journal",
        9 => "the exclude inode",
        10 => "the replica inode",
        _ => return None,
    })
}

/// The walk over one ext filesystem: its geometry, what was found, and a bound on the
/// work a hostile filesystem can cause.
struct ExtWalk<'a, 'r> {
    at: &'a mut PartRead<'r>,
    fs: ExtFs,
    bad: Bad,
    /// Block-map blocks and entries still allowed to be visited.
    budget: u64,
    /// Folders: inode and the runs of blocks (physical start, length) holding entries,
    /// or inline entries.
    dirs: Vec<(u64, Folder)>,
    folders: HashSet<u64>,
}

enum Folder {
    Blocks(Vec<(u64, u64)>),
    Inline(Vec<u8>),
}

fn ext_owners(
    at: &mut PartRead<'_>,
    len: u64,
    ranges: &[(u64, u64)],
) -> Result<Vec<Vec<String>>, String> {
    let io = |e: Error| e.to_string();
    let sb = at(1024, 1024).map_err(io)?;
    if sb.len() < 1024 {
        return Err("its superblock is cut short".into());
    }
    let fs = ExtFs::read(at, &sb, len).map_err(io)??;
    let bad = Bad::new(ranges, fs.bs);
    let budget = 4 * fs.blocks + (1 << 20);
    let mut walk = ExtWalk {
        at,
        fs,
        bad,
        budget,
        dirs: Vec::new(),
        folders: HashSet::new(),
    };
    walk.structures();
    walk.inodes().map_err(io)??;
    let wanted: HashSet<u64> = walk
        .bad
        .found
        .iter()
        .flatten()
        .filter_map(|o| match o {
            Owner::Inode(ino, _) => Some(*ino),
            _ => None,
        })
        .collect();
    let names = if wanted.is_empty() {
        HashMap::new()
    } else {
        walk.names(&wanted).map_err(io)?
    };
    let folders = std::mem::take(&mut walk.folders);
    let unit_names = walk.unused_names();
    let words = walk.bad.words(|owner| match owner {
        Owner::Named(s) => s.clone(),
        Owner::Path(p, _) => p.clone(),
        Owner::Inode(ino, role) => {
            let (what, is_path) = match reserved_inode(*ino) {
                Some(name) => (name.to_owned(), false),
                None => match path(&names, *ino) {
                    Some(p) => (p, true),
                    None => (
                        format!("inode {ino} (in no folder reachable from /)"),
                        false,
                    ),
                },
            };
            match role {
                Role::Data if folders.contains(ino) && is_path => format!("the folder {what}"),
                Role::Data => what,
                Role::Map => format!("the block map of {what}"),
                Role::Xattr => format!("the extended attributes of {what}"),
                Role::Inode => format!("the inode of {what}"),
            }
        }
    });
    Ok(words
        .into_iter()
        .zip(unit_names)
        .map(|(w, fallback)| if w.is_empty() { fallback } else { w })
        .collect())
}

impl ExtWalk<'_, '_> {
    /// The structures the group descriptors place: superblocks and descriptors, bitmaps.
    /// (Inode tables are named by the inodes they hold, in `inodes`.)
    fn structures(&mut self) {
        let fs = &self.fs;
        let mut named: Vec<(u64, u64, String)> = Vec::new();
        if fs.first == 1 {
            named.push((0, 1, "the boot block before the superblock".into()));
        }
        for g in 0..fs.groups.len() as u64 {
            for (a, b) in fs.group_head(g) {
                named.push((
                    a,
                    b,
                    if g == 0 {
                        "the superblock and group descriptors".into()
                    } else {
                        format!("the backup superblock and descriptors in group {g}")
                    },
                ));
            }
            let group = &fs.groups[g as usize];
            named.push((
                group.bitmap,
                group.bitmap + 1,
                format!("the block bitmap of group {g}"),
            ));
            named.push((
                group.inode_bitmap,
                group.inode_bitmap + 1,
                format!("the inode bitmap of group {g}"),
            ));
        }
        for (a, b, name) in named {
            self.bad.note(a, b, Owner::Named(name));
        }
    }

    /// Every inode in use: whether its inode or any of its blocks is unreadable.
    fn inodes(&mut self) -> Result<Result<(), String>, Error> {
        let (bs, size) = (self.fs.bs, self.fs.inode_size);
        let per_block = bs / size;
        for g in 0..self.fs.groups.len() as u64 {
            let group = &self.fs.groups[g as usize];
            if self.fs.csum && group.flags & BG_INODE_UNINIT != 0 {
                continue;
            }
            let (table, inode_bitmap) = (group.table, group.inode_bitmap);
            let ipg = self.fs.inodes_per_group;
            let limit = if self.fs.csum {
                ipg - group.itable_unused.min(ipg)
            } else {
                ipg
            };
            let bits = (self.at)(inode_bitmap * bs, bs as usize)?;
            if bits.len() < bs as usize {
                return Ok(Err(format!("group {g}'s inode bitmap is cut short")));
            }
            let used = |i: u64| bits[(i / 8) as usize] & (1 << (i % 8)) != 0;
            // The table, in runs of blocks that hold an inode in use.
            let mut k = 0;
            let table_used = limit.div_ceil(per_block);
            while k < table_used {
                let holds = |k: u64| (k * per_block..((k + 1) * per_block).min(limit)).any(used);
                if !holds(k) {
                    k += 1;
                    continue;
                }
                let mut end = k + 1;
                while end < table_used && end - k < 256 && holds(end) {
                    end += 1;
                }
                let data = (self.at)((table + k) * bs, ((end - k) * bs) as usize)?;
                if data.len() < ((end - k) * bs) as usize {
                    return Ok(Err(format!("group {g}'s inode table is cut short")));
                }
                for i in k * per_block..(end * per_block).min(limit) {
                    if !used(i) {
                        continue;
                    }
                    let ino = g * ipg + i + 1;
                    let block = table + i / per_block;
                    if self.bad.any(block, block + 1) {
                        self.bad
                            .note(block, block + 1, Owner::Inode(ino, Role::Inode));
                    }
                    let o = ((i - k * per_block) * size) as usize;
                    self.inode(ino, &data[o..o + size as usize])?;
                    if self.budget == 0 {
                        return Ok(Err("its block maps are too tangled to follow".into()));
                    }
                }
                k = end;
            }
        }
        Ok(Ok(()))
    }

    /// One inode in use: its extended-attribute block and its block map.
    fn inode(&mut self, ino: u64, raw: &[u8]) -> Result<(), Error> {
        let mode = le16(raw, 0);
        let kind = mode & S_IFMT;
        let flags = le32(raw, 0x20);
        let size = le32(raw, 0x4) | le32(raw, 0x6C) << 32;
        let acl = le32(raw, 0x68) | le16(raw, 0x76) << 32;
        if acl != 0 && acl < self.fs.blocks {
            self.bad.note(acl, acl + 1, Owner::Inode(ino, Role::Xattr));
        }
        let block_map = &raw[0x28..0x28 + 60];
        let folder = kind == S_IFDIR;
        if folder {
            self.folders.insert(ino);
        }
        // Device nodes, fifos and sockets keep no blocks (their block map holds device
        // numbers); nor do inline files and fast symlinks.
        let reserved = ino < self.fs.first_ino.max(11) && ino != ROOT;
        if !(matches!(kind, S_IFDIR | S_IFREG | S_IFLNK) || reserved) {
            return Ok(());
        }
        if flags & INLINE_DATA_FL != 0 {
            if folder {
                // The parent's inode number, then entries.
                self.dirs
                    .push((ino, Folder::Inline(block_map[4..].to_vec())));
            }
            return Ok(());
        }
        let mut runs = Vec::new();
        if flags & EXTENTS_FL != 0 {
            self.extents(ino, block_map, None, &mut runs)?;
        } else if kind == S_IFLNK && size < 60 {
            return Ok(());
        } else {
            self.indirect(ino, block_map, &mut runs)?;
        }
        for &(a, n) in &runs {
            self.bad.note(a, a + n, Owner::Inode(ino, Role::Data));
        }
        if folder {
            self.dirs.push((ino, Folder::Blocks(runs)));
        }
        Ok(())
    }

    /// Takes one unit of work; false once the budget is spent.
    fn spend(&mut self, n: u64) -> bool {
        self.budget = self.budget.saturating_sub(n);
        self.budget > 0
    }

    /// An extent tree node (the inode's 60 bytes, or a block): its data runs go to `runs`
    /// in file order, its index blocks are noted as the inode's map.
    fn extents(
        &mut self,
        ino: u64,
        node: &[u8],
        depth: Option<u64>,
        runs: &mut Vec<(u64, u64)>,
    ) -> Result<(), Error> {
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC {
            return Ok(());
        }
        let entries = le16(node, 2).min((node.len() as u64 - 12) / 12);
        let here = le16(node, 6);
        if here > MAX_DEPTH || depth.is_some_and(|d| d != here) {
            return Ok(());
        }
        for e in 0..entries as usize {
            if !self.spend(1) {
                return Ok(());
            }
            let o = 12 + 12 * e;
            if here == 0 {
                let mut len = le16(node, o + 4);
                if len > 32768 {
                    len -= 32768; // preallocated, still the file's
                }
                let start = le16(node, o + 6) << 32 | le32(node, o + 8);
                if len > 0 && start.saturating_add(len) <= self.fs.blocks {
                    push_run(runs, start, len);
                }
            } else {
                let child = le16(node, o + 8) << 32 | le32(node, o + 4);
                if child == 0 || child >= self.fs.blocks {
                    continue;
                }
                self.bad
                    .note(child, child + 1, Owner::Inode(ino, Role::Map));
                let block = (self.at)(child * self.fs.bs, self.fs.bs as usize)?;
                self.extents(ino, &block, Some(here - 1), runs)?;
            }
        }
        Ok(())
    }

    /// An ext2/3 block map: twelve direct blocks, then single, double and triple indirect.
    fn indirect(&mut self, ino: u64, map: &[u8], runs: &mut Vec<(u64, u64)>) -> Result<(), Error> {
        for i in 0..15 {
            let b = le32(map, 4 * i);
            match i {
                0..=11 => self.leaf(b, runs),
                _ => self.indirect_block(ino, b, i as u32 - 11, runs)?,
            }
        }
        Ok(())
    }

    fn leaf(&mut self, b: u64, runs: &mut Vec<(u64, u64)>) {
        if b != 0 && b < self.fs.blocks {
            push_run(runs, b, 1);
        }
    }

    fn indirect_block(
        &mut self,
        ino: u64,
        b: u64,
        level: u32,
        runs: &mut Vec<(u64, u64)>,
    ) -> Result<(), Error> {
        if b == 0 || b >= self.fs.blocks || !self.spend(1) {
            return Ok(());
        }
        self.bad.note(b, b + 1, Owner::Inode(ino, Role::Map));
        let block = (self.at)(b * self.fs.bs, self.fs.bs as usize)?;
        for i in 0..block.len() / 4 {
            let next = le32(&block, 4 * i);
            if next == 0 {
                continue;
            }
            if !self.spend(1) {
                return Ok(());
            }
            if level == 1 {
                self.leaf(next, runs);
            } else {
                self.indirect_block(ino, next, level - 1, runs)?;
            }
        }
        Ok(())
    }

    /// Each wanted inode's name and folder (and every folder's, for the paths), from the
    /// folders' entries.
    fn names(&mut self, wanted: &HashSet<u64>) -> Result<HashMap<u64, (u64, String)>, Error> {
        let mut names = HashMap::new();
        let bs = self.fs.bs;
        let dirs = std::mem::take(&mut self.dirs);
        // Folder blocks read, at most as many as the filesystem has.
        let mut left = self.fs.blocks;
        for (dir, folder) in &dirs {
            match folder {
                Folder::Inline(entries) => {
                    self.entries(*dir, entries, wanted, &mut names);
                }
                Folder::Blocks(runs) => {
                    for &(start, n) in runs {
                        let mut at = start;
                        while at < start + n && left > 0 {
                            let count = (start + n - at).min(256).min(left);
                            left -= count;
                            let data = (self.at)(at * bs, (count * bs) as usize)?;
                            for block in data.chunks(bs as usize) {
                                self.entries(*dir, block, wanted, &mut names);
                            }
                            at += count;
                        }
                    }
                }
            }
        }
        Ok(names)
    }

    /// The entries of one folder block.
    fn entries(
        &self,
        dir: u64,
        block: &[u8],
        wanted: &HashSet<u64>,
        names: &mut HashMap<u64, (u64, String)>,
    ) {
        let mut o = 0usize;
        while o + 8 <= block.len() {
            let ino = le32(block, o);
            let rec = match le16(block, o + 4) as usize {
                0 | 65535 if block.len() == 65536 => 65536,
                n => n,
            };
            let name_len = block[o + 6] as usize;
            if rec < 8 || rec % 4 != 0 || o + rec > block.len() || 8 + name_len > rec {
                return;
            }
            let name = &block[o + 8..o + 8 + name_len];
            if ino != 0
                && name != b"."
                && name != b".."
                && (self.folders.contains(&ino) || wanted.contains(&ino))
            {
                names.entry(ino).or_insert_with(|| (dir, shown_name(name)));
            }
            o += rec;
        }
    }

    /// What each range is when nothing was found on it: the unused part of an inode
    /// table, free space, or space in use by nothing found.
    fn unused_names(&self) -> Vec<Vec<String>> {
        self.bad
            .ranges
            .iter()
            .map(|&(a, b)| {
                let table =
                    self.fs.groups.iter().position(|group| {
                        a < group.table + self.fs.table_blocks && group.table < b
                    });
                table
                    .map(|g| format!("unused inodes of group {g}'s inode table"))
                    .into_iter()
                    .collect()
            })
            .collect()
    }
}

/// Adds blocks `start..start + len` to `runs`, joining a run it continues.
fn push_run(runs: &mut Vec<(u64, u64)>, start: u64, len: u64) {
    match runs.last_mut() {
        Some((a, n)) if *a + *n == start => *n += len,
        _ => runs.push((start, len)),
    }
}

/// Inode `ino`'s path, from the names found; None when its folders do not lead to /.
fn path(names: &HashMap<u64, (u64, String)>, mut ino: u64) -> Option<String> {
    if ino == ROOT {
        return Some("/".into());
    }
    let mut parts = Vec::new();
    // A path deeper than this is a loop in a damaged filesystem.
    for _ in 0..4096 {
        let (parent, name) = names.get(&ino)?;
        parts.push(name.as_str());
        if *parent == ROOT {
            parts.reverse();
            return Some(format!("/{}", parts.join("/")));
        }
        ino = *parent;
    }
    None
}

/// A name from the disk as it can be shown: invalid UTF-8 and control characters
/// replaced, so a hostile name cannot rewrite a terminal's screen.
fn shown_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_control() || c == '/' { '?' } else { c })
        .collect()
}

// FAT ----------------------------------------------------------------------------------

/// The most entries a FAT folder may hold (the specification's limit).
const FAT_FOLDER_ENTRIES: u64 = 65536;

fn fat_owners(
    at: &mut PartRead<'_>,
    len: u64,
    ranges: &[(u64, u64)],
) -> Result<Vec<Vec<String>>, String> {
    let io = |e: Error| e.to_string();
    let fs = match FatFs::read(at, len).map_err(io)? {
        Some((_, fs)) => fs?,
        None => return Err("its boot sector no longer reads as FAT".into()),
    };
    let sector = fs.sector;
    let data_at = fs.data * sector;
    let data_end = fs.cluster_at(fs.clusters + 2);
    // The structures before the data area, by byte.
    let mut bytes = Bad::new(ranges, 1);
    bytes.note(
        0,
        fs.reserved * sector,
        Owner::Named("the boot sector and reserved sectors".into()),
    );
    for k in 0..fs.fats {
        let a = (fs.reserved + k * fs.fat_size) * sector;
        bytes.note(
            a,
            a + fs.fat_size * sector,
            Owner::Named(format!(
                "the allocation table (FAT {} of {})",
                k + 1,
                fs.fats
            )),
        );
    }
    let root_at = (fs.reserved + fs.fats * fs.fat_size) * sector;
    if root_at < data_at {
        bytes.note(root_at, data_at, Owner::Path("/".into(), Role::Data));
    }
    bytes.note(
        data_end,
        u64::MAX,
        Owner::Named("the unused end of the partition, after the last cluster".into()),
    );
    // Clusters, numbered from 2.
    let cluster = |byte: u64, up: bool| {
        let inside = byte.clamp(data_at, data_end) - data_at;
        2 + if up {
            inside.div_ceil(fs.cluster_bytes)
        } else {
            inside / fs.cluster_bytes
        }
    };
    let mut clusters = Bad::of(
        ranges
            .iter()
            .map(|&(a, b)| (cluster(a, false), cluster(b, true)))
            .collect(),
    );
    let wanted = ranges.iter().any(|&(a, b)| a < data_end && b > data_at);
    let mut reached = vec![0u64; (fs.clusters as usize + 2).div_ceil(64)];
    if wanted {
        fat_walk(at, &fs, &mut clusters, &mut reached).map_err(io)?;
    }
    // Clusters no file or folder reached.
    let mut lost: Vec<Vec<String>> = vec![Vec::new(); ranges.len()];
    for (i, &(a, b)) in clusters.ranges.iter().enumerate() {
        let (a, b) = (a.max(2), b.min(fs.clusters + 2));
        let mut kinds = [false; 3];
        for n in a..b {
            if reached[(n / 64) as usize] & (1 << (n % 64)) != 0 {
                continue;
            }
            let value = fs.entry(n);
            kinds[if value == 0 {
                0
            } else if value == fs.bad_mark() {
                1
            } else {
                2
            }] = true;
        }
        let names = [
            "free space",
            "clusters the FAT marks bad",
            "clusters in use by no file reachable from / (a lost chain)",
        ];
        lost[i] = (0..3)
            .filter(|&k| kinds[k])
            .map(|k| names[k].to_owned())
            .collect();
    }
    let show = |owner: &Owner| match owner {
        Owner::Named(s) => s.clone(),
        Owner::Path(p, _) if p == "/" => "the root folder".to_owned(),
        Owner::Path(p, _) if p.ends_with('/') => {
            format!("the folder {}", p.trim_end_matches('/'))
        }
        Owner::Path(p, _) => p.clone(),
        Owner::Inode(ino, _) => format!("inode {ino}"),
    };
    Ok(bytes
        .words(show)
        .into_iter()
        .zip(clusters.words(show))
        .zip(lost)
        .map(|((mut a, b), c)| {
            a.extend(b);
            a.extend(c);
            a
        })
        .collect())
}

/// Walks the folders from the root, noting each file's and folder's clusters.
fn fat_walk(
    at: &mut PartRead<'_>,
    fs: &FatFs,
    bad: &mut Bad,
    reached: &mut [u64],
) -> Result<(), Error> {
    // Folders to read: their first cluster (0: the FAT12/16 root area) and path ("/a/b/").
    let root = if fs.bits == 32 { fs.root_cluster } else { 0 };
    let mut todo: Vec<(u64, String)> = vec![(root, "/".into())];
    while let Some((first, dir)) = todo.pop() {
        let raw = if first == 0 {
            if fs.bits == 32 {
                continue;
            }
            let a = (fs.reserved + fs.fats * fs.fat_size) * fs.sector;
            at(a, ((fs.data * fs.sector).saturating_sub(a)) as usize)?
        } else {
            let chain = chain(fs, first, reached);
            let mut raw = Vec::new();
            for &(a, n) in &chain {
                bad.note(a, a + n, Owner::Path(dir.clone(), Role::Data));
                if (raw.len() as u64) < FAT_FOLDER_ENTRIES * 32 {
                    raw.extend(at(fs.cluster_at(a), (n * fs.cluster_bytes) as usize)?);
                }
            }
            raw
        };
        for (name, is_dir, first) in fat_entries(&raw, fs.bits == 32) {
            let path = format!("{dir}{name}");
            if is_dir {
                if first != 0 {
                    todo.push((first, path + "/"));
                }
            } else if first != 0 {
                for (a, n) in chain(fs, first, reached) {
                    bad.note(a, a + n, Owner::Path(path.clone(), Role::Data));
                }
            }
        }
    }
    Ok(())
}

/// The runs of clusters `(first, count)` of the chain starting at `first`, marking them
/// reached; a chain stops at its end mark, at a cluster out of range, and at one already
/// reached (a loop or a cross-link).
fn chain(fs: &FatFs, first: u64, reached: &mut [u64]) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut n = first;
    while (2..fs.clusters + 2).contains(&n) && reached[(n / 64) as usize] & (1 << (n % 64)) == 0 {
        reached[(n / 64) as usize] |= 1 << (n % 64);
        push_run(&mut runs, n, 1);
        n = fs.entry(n);
        if n >= fs.bad_mark() {
            break;
        }
    }
    runs
}

/// A FAT folder's entries: name (the long name when its checksum matches), whether it is
/// a folder, and its first cluster.
fn fat_entries(raw: &[u8], fat32: bool) -> Vec<(String, bool, u64)> {
    let mut out = Vec::new();
    let mut long: Vec<Option<Vec<u16>>> = Vec::new();
    let mut sum = None;
    for e in raw.chunks_exact(32) {
        match e[0] {
            0 => break,
            0xE5 => {
                long.clear();
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & 0x3F == 0x0F {
            let order = usize::from(e[0] & 0x1F);
            if e[0] & 0x40 != 0 {
                long = vec![None; order];
                sum = Some(e[13]);
            }
            if order >= 1 && order <= long.len() && sum == Some(e[13]) {
                let units = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
                    .iter()
                    .map(|&o| u16::from_le_bytes([e[o], e[o + 1]]))
                    .collect();
                long[order - 1] = Some(units);
            }
            continue;
        }
        let parts = std::mem::take(&mut long);
        if attr & 0x08 != 0 {
            continue;
        }
        let short = &e[..11];
        if short == b".          " || short == b"..         " {
            continue;
        }
        let check = short
            .iter()
            .fold(0u8, |s, &c| s.rotate_right(1).wrapping_add(c));
        let name = match parts.into_iter().collect::<Option<Vec<Vec<u16>>>>() {
            Some(units) if !units.is_empty() && sum == Some(check) => {
                let units: Vec<u16> = units
                    .into_iter()
                    .flatten()
                    .take_while(|&u| u != 0)
                    .collect();
                shown_name(String::from_utf16_lossy(&units).as_bytes())
            }
            _ => short_name(e),
        };
        let hi = if fat32 { le16(e, 0x14) << 16 } else { 0 };
        out.push((name, attr & 0x10 != 0, hi | le16(e, 0x1A)));
    }
    out
}

/// An 8.3 name as Windows shows it, with the lower-case flags in byte 12.
fn short_name(e: &[u8]) -> String {
    let text = |raw: &[u8], lower: bool| -> String {
        let mut raw = raw.to_vec();
        if raw.first() == Some(&0x05) {
            raw[0] = 0xE5;
        }
        let s: String = raw.iter().map(|&c| char::from(c)).collect();
        let s = s.trim_end().to_owned();
        if lower {
            s.to_lowercase()
        } else {
            s
        }
    };
    let base = text(&e[..8], e[12] & 0x08 != 0);
    let ext = text(&e[8..11], e[12] & 0x10 != 0);
    let name = if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    };
    shown_name(name.as_bytes())
}

/// Reads through `read`, with the bytes of `bad` (sorted ranges) given as zeros and never
/// asked for: a dying card is not asked again for blocks it could not give.
pub(crate) fn masked<'a>(
    read: &'a mut ReadFn<'a>,
    bad: &'a [(u64, u64)],
) -> impl FnMut(u64, usize) -> Result<Vec<u8>, Error> + 'a {
    move |offset: u64, len: usize| {
        let end = offset.saturating_add(len as u64);
        let mut out = vec![0u8; len];
        let mut got_to = offset;
        let mut read_piece = |a: u64, b: u64, out: &mut [u8]| -> Result<(), Error> {
            let data = read(a, (b - a) as usize)?;
            let at = (a - offset) as usize;
            out[at..at + data.len()].copy_from_slice(&data);
            Ok(())
        };
        let first = bad.partition_point(|&(_, e)| e <= offset);
        for &(a, b) in bad[first..].iter().take_while(|&&(a, _)| a < end) {
            if a > got_to {
                read_piece(got_to, a, &mut out)?;
            }
            got_to = got_to.max(b);
        }
        if got_to < end {
            read_piece(got_to, end, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "../../../tests/common/text.rs"]
mod text;

#[cfg(test)]
mod tests {
    use super::text::number_after;
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn run(tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(out.status.success(), "{tool} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What `held` says of each byte range of the whole-disk filesystem in `image`.
    fn held_in(image: &Path, ranges: &[(u64, u64)]) -> Vec<Held> {
        let file = std::fs::File::open(image).unwrap();
        held_in_file(&file, file.metadata().unwrap().len(), ranges)
    }

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("home/pi")).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("var/lib/many")).unwrap();
        let notes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.join("home/pi/notes.txt"), notes).unwrap();
        std::fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::os::unix::fs::symlink("/etc/hosts", dir.join("etc/link")).unwrap();
        for i in 0..300 {
            std::fs::write(
                dir.join(format!("var/lib/many/file-with-a-long-name-{i}")),
                i.to_string(),
            )
            .unwrap();
        }
    }

    /// ext4 made by mke2fs; where things lie, by debugfs; what `held` names there.
    #[test]
    fn names_the_files_folders_and_structures_of_an_ext4_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        tree(&dir.path().join("root"));
        let image = dir.path().join("e.img");
        let img = image.to_str().unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let root = dir.path().join("root");
        // 1 KiB blocks, as mke2fs picks for a small filesystem: the folder of 300 files
        // ends up in pieces between them, with an extent tree block of its own.
        run(
            "mkfs.ext4",
            &["-q", "-F", "-b", "1024", "-d", root.to_str().unwrap(), img],
        );
        let debugfs = |request: &str| run("debugfs", &["-R", request, img]);
        let notes = number_after(&debugfs("bmap /home/pi/notes.txt 2"), "");
        let hosts = debugfs("imap /etc/hosts");
        let hosts_inode_block = number_after(&hosts, "located at block");
        let many = number_after(&debugfs("bmap /var/lib/many 1"), "");
        let many_tree = number_after(&debugfs("stat /var/lib/many"), "(ETB0):");
        let journal = number_after(&debugfs("bmap <8> 0"), "");
        let free = 60 << 20;
        let block = |b: u64| (b * 1024, b * 1024 + 1024);
        let ranges = [
            block(0),
            block(1),
            block(hosts_inode_block),
            block(notes),
            block(many),
            block(many_tree),
            block(journal),
            (free, free + 4096),
        ];
        let mut sorted = ranges.to_vec();
        sorted.sort();
        let got = held_in(&image, &sorted);
        let of = |range: (u64, u64)| -> Vec<String> {
            got[sorted.iter().position(|&r| r == range).unwrap()]
                .what
                .clone()
        };
        assert_eq!(got[0].place, "the disk's ext2/3/4 filesystem");
        assert_eq!(of(block(0)), ["the boot block before the superblock"]);
        assert_eq!(of(block(1)), ["the superblock and group descriptors"]);
        assert!(
            of(block(hosts_inode_block)).contains(&"the inode of /etc/hosts".to_owned()),
            "{:?}",
            of(block(hosts_inode_block))
        );
        assert_eq!(of(block(notes)), ["/home/pi/notes.txt"]);
        assert_eq!(of(block(many)), ["the folder /var/lib/many"]);
        assert_eq!(of(block(many_tree)), ["the block map of /var/lib/many"]);
        assert_eq!(of(block(journal)), ["the journal"]);
        assert_eq!(of((free, free + 4096)), ["free space"]);
        // A range over several owners names each.
        let wide = (block(notes).0, block(notes).0 + (3 << 20));
        let across = held_in(&image, &[wide]);
        assert!(across[0].what.len() > 1, "{:?}", across[0]);
        assert_eq!(
            got[sorted.iter().position(|&r| r == block(notes)).unwrap()].to_string(),
            "the disk's ext2/3/4 filesystem: /home/pi/notes.txt"
        );
    }

    /// ext2 keeps block maps of direct and indirect blocks: debugfs's (IND) block is the
    /// file's map, the block after it its data.
    #[test]
    fn names_an_ext2_file_and_its_indirect_block() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("srv")).unwrap();
        std::fs::write(root.join("srv/big.bin"), vec![0x5Au8; 100 << 10]).unwrap();
        let image = dir.path().join("e2.img");
        let img = image.to_str().unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        run(
            "mke2fs",
            &[
                "-q",
                "-F",
                "-t",
                "ext2",
                "-b",
                "1024",
                "-d",
                root.to_str().unwrap(),
                img,
            ],
        );
        let stat = run("debugfs", &["-R", "stat /srv/big.bin", img]);
        let ind = number_after(&stat, "(IND):");
        let last = number_after(&run("debugfs", &["-R", "bmap /srv/big.bin 99", img]), "");
        let at = |b: u64| (b * 1024 / 512 * 512, b * 1024 + 1024);
        let mut ranges = vec![at(ind), at(last)];
        ranges.sort();
        let got = held_in(&image, &ranges);
        let of = |b: u64| {
            got[ranges.iter().position(|&r| r == at(b)).unwrap()]
                .what
                .clone()
        };
        assert_eq!(of(ind), ["the block map of /srv/big.bin"]);
        assert_eq!(of(last), ["/srv/big.bin"]);
    }

    /// FAT32 and FAT16 made by mkfs.fat and mtools; which clusters a file has, by
    /// mshowfat; where clusters start, from minfo's geometry.
    #[test]
    fn names_the_files_and_folders_of_a_fat_filesystem() {
        for bits in ["32", "16"] {
            let dir = tempfile::tempdir().unwrap();
            let image = dir.path().join("f.img");
            let img = image.to_str().unwrap();
            std::fs::File::create(&image)
                .unwrap()
                .set_len(64 << 20)
                .unwrap();
            let sectors = if bits == "32" { "1" } else { "4" };
            run("mkfs.fat", &["-F", bits, "-s", sectors, "-n", "BOOT", img]);
            let overlay = dir.path().join("overlay");
            std::fs::write(&overlay, vec![7u8; 5000]).unwrap();
            let long = "::/overlays/A Long Overlay Name.dtbo";
            run("mmd", &["-i", img, "::/overlays"]);
            run("mcopy", &["-i", img, overlay.to_str().unwrap(), long]);
            let info = run("minfo", &["-i", img]);
            let sector = number_after(&info, "sector size:");
            let cluster = number_after(&info, "cluster size:") * sector;
            let fat_len = if bits == "32" {
                number_after(&info, "Big fatlen=")
            } else {
                number_after(&info, "sectors per fat:")
            };
            let root_slots = number_after(&info, "max available root directory slots:");
            let data = (number_after(&info, "reserved (boot) sectors:")
                + number_after(&info, "fats:") * fat_len)
                * sector
                + (root_slots * 32).div_ceil(sector) * sector;
            let first_cluster = |shown: &str| number_after(shown, "<");
            let file = first_cluster(&run("mshowfat", &["-i", img, long]));
            let folder = first_cluster(&run("mshowfat", &["-i", img, "::/overlays"]));
            let at = |n: u64| (data + (n - 2) * cluster, data + (n - 1) * cluster);
            let mut ranges = vec![(0, 512), at(file), at(folder), (60 << 20, (60 << 20) + 512)];
            if bits == "16" {
                ranges.push((data - 512, data));
            }
            ranges.sort();
            let got = held_in(&image, &ranges);
            let of = |r: (u64, u64)| {
                got[ranges.iter().position(|&x| x == r).unwrap()]
                    .what
                    .clone()
            };
            assert_eq!(got[0].place, format!("the disk's FAT{bits} filesystem"));
            assert_eq!(of((0, 512)), ["the boot sector and reserved sectors"]);
            assert_eq!(
                of(at(file)),
                ["/overlays/A Long Overlay Name.dtbo"],
                "FAT{bits}"
            );
            assert_eq!(of(at(folder)), ["the folder /overlays"], "FAT{bits}");
            assert_eq!(
                of((60 << 20, (60 << 20) + 512)),
                ["free space"],
                "FAT{bits}"
            );
            if bits == "16" {
                assert_eq!(of((data - 512, data)), ["the root folder"]);
            }
        }
    }

    /// Hostile bytes in the metadata (as a dying card's zeros or worse) never panic and
    /// never stop the walk from ending.
    #[test]
    fn damaged_filesystems_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        tree(&dir.path().join("root"));
        let ext = dir.path().join("e.img");
        std::fs::File::create(&ext)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let root = dir.path().join("root");
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "1024",
                "-d",
                root.to_str().unwrap(),
                ext.to_str().unwrap(),
            ],
        );
        let fat = dir.path().join("f.img");
        std::fs::File::create(&fat)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        run("mkfs.fat", &["-F", "16", "-s", "1", fat.to_str().unwrap()]);
        run(
            "mcopy",
            &[
                "-s",
                "-i",
                fat.to_str().unwrap(),
                root.join("var").to_str().unwrap(),
                "::/",
            ],
        );
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for image in [ext, fat] {
            let clean = std::fs::read(&image).unwrap();
            let size = clean.len() as u64;
            for round in 0..300 {
                let mut disk = clean.clone();
                // Damage within the first MiB, where the metadata and folders lie.
                for _ in 0..(1 + next() % 200) {
                    let at = (next() % (1 << 20)) as usize;
                    disk[at] = if round % 3 == 0 { 0 } else { next() as u8 };
                }
                let ranges: Vec<(u64, u64)> = (0..8u64)
                    .map(|i| (i * (size / 8), i * (size / 8) + 4096))
                    .collect();
                let got = held_in_bytes(&disk, &ranges);
                assert_eq!(got.len(), ranges.len());
                assert!(got.iter().all(|h| h.what.len() <= NAMED + 2));
            }
        }
    }

    #[test]
    fn masked_reads_give_zeros_and_never_ask_for_bad_bytes() {
        let disk: Vec<u8> = (0..100u8).collect();
        let bad = [(10, 20), (30, 35)];
        let mut asked = Vec::new();
        let mut inner = |offset: u64, len: usize| -> Result<Vec<u8>, Error> {
            asked.push((offset, offset + len as u64));
            Ok(disk[offset as usize..offset as usize + len].to_vec())
        };
        let mut read = masked(&mut inner, &bad);
        let got = read(5, 40).unwrap();
        let mut want: Vec<u8> = (5..45).collect();
        want[5..15].fill(0);
        want[25..30].fill(0);
        assert_eq!(got, want);
        drop(read);
        assert_eq!(asked, [(5, 10), (20, 30), (35, 45)]);
    }
}
