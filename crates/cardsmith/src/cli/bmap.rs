//! `cardsmith bmap IMAGE [OUT.bmap]`: the block map of an image, in bmaptool's format 2.0,
//! from what its filesystems use (not from holes in the file: a full-size image file maps
//! as well as a sparse one).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cardsmith_engine::{
    self as engine, units, usage_of_file, Bmap, CancelToken, Format, Image, Input, OpenAs,
};
use clap::Args;
use serde_json::json;

use super::report::{Reporter, Said};
use crate::job::Failure;

#[derive(Args)]
pub struct BmapArgs {
    /// The image: raw, or compressed (.xz, .gz, .bz2, .zst, .zip), decoded into a sparse
    /// temporary file first
    image: PathBuf,
    /// The map to write (default: IMAGE.bmap, without a compression suffix: os.img.xz
    /// gives os.img.bmap, where `bmaptool copy os.img.xz` looks for it)
    output: Option<PathBuf>,
    /// Replace an existing map
    #[arg(long)]
    force: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// Where the map goes by default.
fn default_output(image: &Path, format: Format) -> PathBuf {
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    let stem = match (format, name.rsplit_once('.')) {
        (Format::Raw, _) | (_, None) => name.to_string(),
        (_, Some((stem, _))) => stem.to_owned(),
    };
    image.with_file_name(format!("{stem}.bmap"))
}

pub fn run(args: BmapArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Failure> {
    let image = Image::open(&Input::Path(args.image.clone()), OpenAs::Detect)?;
    let format = image.format();
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.image, format));
    if output.exists() && !args.force {
        return Err(Failure::Refused(format!(
            "{} already exists; pass --force to replace it",
            output.display()
        )));
    }
    let what = args.image.display().to_string();
    // A raw image is read where it is; anything else is decoded first.
    let (file, size) = if format == Format::Raw {
        let file = File::open(&args.image)
            .map_err(|e| Failure::Refused(format!("cannot read {what}: {e}")))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        (file, size)
    } else {
        super::ctrl_c_cancels(true);
        let unpacked = engine::unpack(image, &std::env::temp_dir(), cancel)?;
        (unpacked.file, unpacked.len)
    };
    let usage = usage_of_file(&file, size, &what)?;
    let mut read = |at: u64, buf: &mut [u8]| file.read_exact_at(buf, at);
    let map = Bmap::from_usage(&usage, &mut read, &what)?;
    let tmp = output.with_extension("bmap.part");
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(map.to_xml().as_bytes())
                .and_then(|()| f.sync_all())
        })
        .and_then(|()| fs::rename(&tmp, &output));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Failure::Refused(format!(
            "cannot write {}: {e}",
            output.display()
        )));
    }
    let mapped = map.mapped_bytes();
    let mut text = format!(
        "Mapped {} of {} ({:.1}%) in {} ranges: {}",
        units::bytes(mapped),
        units::bytes(size),
        if size == 0 {
            0.0
        } else {
            mapped as f64 * 100.0 / size as f64
        },
        map.ranges.len(),
        output.display()
    );
    for (i, p) in usage.parts.iter().enumerate() {
        text += &format!(
            "\n  partition {} ({}): {} used of {}",
            i + 1,
            p.filesystem.name(),
            units::bytes(p.used),
            units::bytes(p.len)
        );
        if let Some(note) = &p.note {
            text += &format!(", all of it counted: {note}");
        }
    }
    let parts: Vec<_> = usage
        .parts
        .iter()
        .map(|p| {
            json!({ "start": p.start, "bytes": p.len, "filesystem": p.filesystem.name(),
                    "used_bytes": p.used, "note": p.note })
        })
        .collect();
    reporter.success(
        Said::Note(&text),
        json!({
            "command": "bmap",
            "image": args.image,
            "output": output,
            "image_size": size,
            "mapped_bytes": mapped,
            "ranges": map.ranges.len(),
            "block_size": map.block_size,
            "partitions": parts,
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_goes_where_bmaptool_looks() {
        let at = |p: &str, f| default_output(Path::new(p), f);
        assert_eq!(at("/x/os.img", Format::Raw), Path::new("/x/os.img.bmap"));
        assert_eq!(at("/x/os.img.xz", Format::Xz), Path::new("/x/os.img.bmap"));
        assert_eq!(at("os.wic.zst", Format::Zstd), Path::new("os.wic.bmap"));
    }
}
