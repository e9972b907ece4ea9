//! Backups that fit any card: the last partition's ext2/3/4 filesystem cut down to its
//! minimum plus a margin with e2fsprogs (`e2fsck -f`, `resize2fs`), the partition table
//! made to match, the image ended there, and the OS's own first-boot growth re-armed.
//!
//! The card (or the image being shrunk) is never changed: its used blocks are copied into
//! a private, sparse temporary image in a folder of its own (removed on success, failure
//! or Ctrl-C, and at the next start when a killed run left one), which is shrunk and then
//! read into the output like any backup.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cardsmith_customize::expand::{self, Grower};
use cardsmith_engine::{self as engine, units, CancelToken, Target};
use serde::Serialize;

use super::{Event, Failure, Run};

/// What to shrink to and where to work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrink {
    /// Free space left in the shrunk filesystem, in bytes (it is never cut below
    /// resize2fs's minimum, which keeps some room of its own).
    pub margin: u64,
    /// The folder for the temporary image (else the output's).
    pub tmp: Option<PathBuf>,
    /// Re-arm the OS's first-boot growth.
    pub expand: bool,
}

impl Shrink {
    /// The folder the temporary copies go in: `--tmp`, else the output's own.
    pub(super) fn folder_for(&self, output: &Path) -> PathBuf {
        match (&self.tmp, output.parent()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(p)) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

/// What a shrink did. Serialised, it is the `shrink` object of the `--json` result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShrinkReport {
    /// The partition cut (its number in the table).
    pub partition: Option<usize>,
    /// Whether it was made smaller.
    pub shrunk: bool,
    /// Why not, when not.
    pub not_shrunk: Option<String>,
    /// The image's size before (the card's partitions) and after, in bytes.
    pub size_before: u64,
    pub size_after: u64,
    /// The filesystem's size before and after, in bytes.
    pub filesystem_before: Option<u64>,
    pub filesystem_after: Option<u64>,
    /// The filesystem's journal was replayed in the copy (the card was not cleanly
    /// unmounted).
    pub journal_replayed: bool,
    /// What grows it back on first boot, if anything.
    pub grows_with: Option<Grower>,
    /// The word added to cmdline.txt to re-arm it.
    pub cmdline_added: Option<String>,
    /// What happens on first boot, or what to do by hand.
    pub expansion: String,
}

impl ShrinkReport {
    /// The lines of the summary.
    pub fn summary(&self) -> String {
        let mut text = match (
            &self.not_shrunk,
            self.filesystem_before,
            self.filesystem_after,
        ) {
            (None, Some(before), Some(after)) => format!(
                "Shrunk: partition {} from {} to {} (what its files use plus the margin, at \
                 least resize2fs's minimum); the image from {} to {}",
                self.partition.unwrap_or(0),
                units::bytes(before),
                units::bytes(after),
                units::bytes(self.size_before),
                units::bytes(self.size_after),
            ),
            (Some(why), ..) => format!("Not shrunk: {why}"),
            _ => "Not shrunk".to_owned(),
        };
        if self.journal_replayed {
            text += ".\nThe card's filesystem was not cleanly unmounted: its journal was replayed \
                     in the copy, as the OS would on its next boot";
        }
        text += &format!(
            ".\nIt fits any card of {} or more",
            units::bytes(self.size_after)
        );
        if !self.expansion.is_empty() {
            text += &format!(".\nFirst boot: {}", self.expansion);
        }
        text
    }
}

/// A private folder for the temporary image, removed when dropped.
pub(super) struct Scratch {
    pub(super) dir: PathBuf,
}

const SCRATCH_PREFIX: &str = ".cardsmith-shrink-";

impl Scratch {
    /// A new folder in `parent` (mode 700), after removing any a killed run left there.
    pub(super) fn new(parent: &Path) -> Result<Scratch, Failure> {
        sweep(parent);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!("{SCRATCH_PREFIX}{}-{nanos}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Failure::Refused(format!(
                    "cannot make a temporary folder in {} for the shrink ({e}); name another \
                     with --tmp DIR",
                    parent.display()
                ))
            })?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the temporary folders of runs that are no longer running.
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// e2fsprogs' tools, found before anything is read.
pub(super) struct Tools {
    e2fsck: PathBuf,
    resize2fs: PathBuf,
}

impl Tools {
    pub(super) fn find() -> Result<Tools, Failure> {
        let find = |name: &str| -> Option<PathBuf> {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        };
        match (find("e2fsck"), find("resize2fs")) {
            (Some(e2fsck), Some(resize2fs)) => Ok(Tools { e2fsck, resize2fs }),
            _ => Err(Failure::Refused(
                "--shrink needs e2fsprogs (e2fsck and resize2fs), which is not installed: \
                 install it (Debian: `sudo apt install e2fsprogs`), or back up without --shrink"
                    .into(),
            )),
        }
    }
}

/// Runs `tool` with `args`, stopping it when `cancel` fires; its exit code and output.
fn run_tool(tool: &Path, args: &[&str], cancel: &CancelToken) -> Result<(i32, String), Failure> {
    let mut child = Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Refused(format!("cannot run {}: {e}", tool.display())))?;
    // Each stream drained by a thread of its own: read one after the other, a tool that
    // fills the second pipe before closing the first would wait on us forever.
    fn drain(
        stream: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_string(&mut text);
            }
            text
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Failure::Refused(e.to_string()))?
        {
            break status;
        }
        if cancel.is_cancelled() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::Engine(engine::Error::Cancelled));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    Ok((status.code().unwrap_or(-1), text))
}

/// The last lines of a tool's output, for a message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join(" / ")
}

/// What an ext superblock says.
struct Super {
    block_size: u64,
    blocks: u64,
    free: u64,
    /// Its journal needs recovery.
    recover: bool,
}

/// The ext superblock of the partition at `at`.
fn superblock(file: &File, at: u64) -> Result<Super, Failure> {
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, at + 1024)
        .map_err(|e| Failure::Refused(format!("cannot read the copy's superblock: {e}")))?;
    let le32 = |o: usize| u64::from(u32::from_le_bytes(sb[o..o + 4].try_into().unwrap()));
    let wide = le32(0x60) & 0x80 != 0;
    let high = |o: usize| if wide { le32(o) << 32 } else { 0 };
    Ok(Super {
        block_size: 1024 << le32(0x18).min(6),
        blocks: le32(0x4) | high(0x150),
        free: le32(0xC) | high(0x158),
        recover: le32(0x60) & 0x4 != 0,
    })
}

/// The runs of `file` that hold data (not holes) from `from` to its end.
fn data_runs(file: &File, from: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let len = file.metadata()?.len();
    let fd = file.as_raw_fd();
    let mut runs = Vec::new();
    let mut at = from;
    while at < len {
        // SAFETY: lseek on a descriptor this function borrows; no memory is touched.
        let data = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error());
        }
        runs.push((data as u64, (hole as u64).min(len)));
        at = hole as u64;
    }
    Ok(runs)
}

/// Moves the bytes of `src` from `from` to its end into `dst` at `to` (holes stay holes),
/// from the end down, cutting `src` behind each piece moved: what is moved is on the disk
/// once, plus a piece. `src` ends at `from`.
fn move_tail(
    src: &File,
    from: u64,
    dst: &File,
    to: u64,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Refused(format!("the temporary image: {e}"));
    const PIECE: u64 = 4 << 20;
    let mut buf = vec![0u8; PIECE as usize];
    for (a, b) in data_runs(src, from).map_err(io)?.into_iter().rev() {
        let mut end = b;
        while end > a {
            cancel.check()?;
            let start = end.saturating_sub(PIECE).max(a);
            let piece = &mut buf[..(end - start) as usize];
            src.read_exact_at(piece, start).map_err(io)?;
            if piece.iter().any(|&b| b != 0) {
                dst.write_all_at(piece, to + (start - from)).map_err(io)?;
            }
            src.set_len(start).map_err(io)?;
            end = start;
        }
    }
    src.set_len(from).map_err(io)
}

/// Shrinks the disk image at `path` (a private copy) in place: its last partition's
/// filesystem to the minimum plus `shrink.margin`, the table and the file's end to match,
/// and the first-boot growth re-armed. `whose` names the card or image in messages.
pub(super) fn shrink_copy(
    path: &Path,
    tools: &Tools,
    shrink: &Shrink,
    whose: &str,
    cancel: &CancelToken,
    run: &mut Run<'_>,
) -> Result<ShrinkReport, Failure> {
    let io = |e: std::io::Error| Failure::Refused(format!("the temporary image: {e}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut report = ShrinkReport {
        partition: None,
        shrunk: false,
        not_shrunk: None,
        // The images' sizes are known once the output is made: shrunk_backup sets them.
        size_before: 0,
        size_after: 0,
        filesystem_before: None,
        filesystem_after: None,
        journal_replayed: false,
        grows_with: None,
        cmdline_added: None,
        expansion: String::new(),
    };
    let last = match engine::last_partition(&file, size) {
        Ok(last) => last,
        Err(why) => {
            report.not_shrunk = Some(format!("{whose}: {why}"));
            return Ok(report);
        }
    };
    report.partition = Some(last.number);
    let usage = engine::usage_of_file(&file, size, "the temporary image")?;
    let kind = usage
        .parts
        .iter()
        .find(|p| p.start == last.start)
        .map(|p| p.filesystem);
    if kind != Some(engine::Filesystem::Ext) {
        report.not_shrunk = Some(format!(
            "its last partition ({}) holds {}, not ext2/3/4, which is all cardsmith shrinks; \
             the backup is as large as the partitions",
            last.number,
            kind.map_or("nothing known".into(), |k| k.name())
        ));
        return Ok(report);
    }
    // e2fsck and resize2fs get the partition as a file of its own: resize2fs cuts a
    // regular file to the filesystem's new size, so with an offset into the whole image
    // it would cut the image short. The partition is moved out (it is last, so the image
    // shrinks as it goes) and back again: its data is never on the disk twice.
    let part_path = path.with_file_name("partition.img");
    let part = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&part_path)
        .map_err(io)?;
    move_tail(&file, last.start, &part, 0, cancel)?;
    part.set_len(last.len).map_err(io)?;
    let device = part_path.display().to_string();
    let Super {
        block_size: bs,
        blocks,
        recover,
        ..
    } = superblock(&part, 0)?;
    report.filesystem_before = Some(blocks * bs);
    let say = |run: &mut Run<'_>, what: &str| run.event(Event::note(what));
    if recover {
        say(run, "Replaying the filesystem's journal in the copy");
        let (code, _) = run_tool(
            &tools.e2fsck,
            &["-E", "journal_only", "-p", &device],
            cancel,
        )?;
        if code > 1 {
            return Err(Failure::Refused(format!(
                "the journal of partition {} of {whose} could not be replayed in the copy \
                 (e2fsck exit {code}): nothing was written; run `e2fsck -f` on that partition \
                 of the card, unmounted, then back it up again",
                last.number
            )));
        }
        report.journal_replayed = true;
    }
    say(run, "Checking the filesystem (e2fsck -f)");
    let (code, said) = run_tool(&tools.e2fsck, &["-f", "-n", &device], cancel)?;
    if code != 0 {
        return Err(Failure::Refused(format!(
            "the filesystem of partition {} of {whose} has errors (e2fsck -fn exit {code}: \
             {}): nothing was written; run `e2fsck -f` on that partition of the card, \
             unmounted, then back it up again",
            last.number,
            tail(&said)
        )));
    }
    // Marks it checked, which resize2fs asks for; it changes nothing in a clean filesystem.
    let (code, said) = run_tool(&tools.e2fsck, &["-f", "-p", &device], cancel)?;
    if code > 1 {
        return Err(Failure::Refused(format!(
            "e2fsck -fp failed on the copy of partition {} (exit {code}: {})",
            last.number,
            tail(&said)
        )));
    }
    let (code, said) = run_tool(&tools.resize2fs, &["-P", &device], cancel)?;
    let minimum = said
        .lines()
        .find_map(|l| l.strip_prefix("Estimated minimum size of the filesystem:"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    let Some(minimum) = minimum.filter(|_| code == 0) else {
        return Err(Failure::Refused(format!(
            "resize2fs -P gave no minimum size for partition {} (exit {code}: {})",
            last.number,
            tail(&said)
        )));
    };
    // At least the margin stays free, and never less than resize2fs's minimum (which
    // keeps some room of its own). The counts are e2fsck's, just checked.
    let used = {
        let now = superblock(&part, 0)?;
        now.blocks.saturating_sub(now.free)
    };
    let target = minimum.max(used + shrink.margin.div_ceil(bs));
    let mut new_len = last.len;
    if target < blocks {
        say(
            run,
            &format!(
                "Shrinking the filesystem from {} to {} (resize2fs), {} of it free",
                units::bytes(blocks * bs),
                units::bytes(target * bs),
                units::bytes((target - used) * bs)
            ),
        );
        let (code, said) = run_tool(&tools.resize2fs, &[&device, &target.to_string()], cancel)?;
        let now = superblock(&part, 0)?.blocks;
        if code != 0 || now != target {
            return Err(Failure::Refused(format!(
                "resize2fs could not shrink partition {} to {target} blocks (exit {code}: {})",
                last.number,
                tail(&said)
            )));
        }
        // A witness of the result before anything is built on it.
        let (code, said) = run_tool(&tools.e2fsck, &["-f", "-n", &device], cancel)?;
        if code != 0 {
            return Err(Failure::Refused(format!(
                "after resize2fs, e2fsck finds errors in the copy of partition {} (exit \
                 {code}: {}); nothing was written",
                last.number,
                tail(&said)
            )));
        }
        // The partition ends on a MiB boundary past the filesystem, as partitioning tools
        // align them.
        new_len = (target * bs)
            .div_ceil(1 << 20)
            .saturating_mul(1 << 20)
            .min(last.len);
        report.shrunk = true;
        report.filesystem_after = Some(target * bs);
    } else {
        report.not_shrunk = Some(format!(
            "partition {}'s filesystem has no more than {} free beyond its minimum",
            last.number,
            units::bytes(shrink.margin)
        ));
    }
    move_tail(&part, 0, &file, last.start, cancel)?;
    drop(part);
    let _ = fs::remove_file(&part_path);
    if report.shrunk {
        engine::shrink_last_partition(&file, &last, new_len)?;
    }
    // A MiB of room past the partition: the allocated-only read that makes the output
    // then ends the image there, a GPT with its backup table and headers rewritten.
    file.set_len(last.start + new_len + (1 << 20)).map_err(io)?;
    if report.shrunk {
        if shrink.expand {
            let armed = expand::rearm(&file, path, last.number, true)?;
            report.grows_with = armed.grower;
            report.cmdline_added = armed.added;
            report.expansion = armed.said;
        } else {
            report.expansion = format!(
                "not re-armed (--no-expand): the root filesystem stays at {}; to grow it after \
                 restoring: `sudo parted /dev/mmcblk0 resizepart {n} 100%`, then `sudo \
                 resize2fs /dev/mmcblk0p{n}`",
                units::bytes(target.min(blocks) * bs),
                n = last.number
            );
        }
    }
    file.sync_all().map_err(io)?;
    Ok(report)
}

/// The backup of `source` into `output`, shrunk: its used blocks into a private temporary
/// image, that shrunk ([`shrink_copy`]), then read into `output` (any format) with its
/// checksum and block map. The engine's report says what the card gave (its size, the
/// bytes read from it) and what the output holds.
pub(super) fn shrunk_backup(
    source: &Target,
    output: &Path,
    force: bool,
    how: &Shrink,
    whose: &str,
    cancel: &CancelToken,
    run: &mut Run<'_>,
) -> Result<(engine::ReadReport, ShrinkReport), Failure> {
    // Refusals first, before minutes of reading.
    let tools = Tools::find()?;
    engine::check_replaceable(output, force)?;
    engine::check_replaceable(&engine::checksum_path(output), force)?;
    let parent = how.folder_for(output);
    let scratch = Scratch::new(&parent)?;
    let copy = scratch.dir.join("copy.img");
    let private = engine::ReadOptions {
        force: true,
        allocated_only: true,
        used_only: true,
        owner: None,
        rescue: false,
    };
    run.event(Event::note(format!(
        "Copying the used blocks into a temporary image in {}",
        parent.display()
    )));
    let first = engine::read(source, &copy, &private, cancel, &mut |p| run.progress(p)).map_err(
        |e| match e {
            engine::Error::NoSpace { needed, free, .. } => Failure::Refused(format!(
                "the temporary copy needs {} (the data {whose} holds), but {} has {} free: \
                 name a folder on a disk with room with --tmp DIR",
                units::bytes(needed),
                parent.display(),
                units::bytes(free)
            )),
            e => e.into(),
        },
    )?;
    let mut report = shrink_copy(&copy, &tools, how, whose, cancel, run)?;
    let copied = Target::open_for_read(&copy)?;
    let options = engine::ReadOptions {
        force,
        allocated_only: true,
        used_only: true,
        owner: super::invoking_user(),
        rescue: false,
    };
    let mut last = engine::read(&copied, output, &options, cancel, &mut |p| run.progress(p))?;
    report.size_before = first.bytes;
    report.size_after = last.bytes;
    last.source_size = first.source_size;
    last.read_bytes = first.read_bytes;
    Ok((last, report))
}
