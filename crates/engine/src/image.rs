//! The source side of the pipeline: an image file (or standard input), its format, its size,
//! and a decoder that turns it back into the raw bytes that belong on the card.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::format::{Format, MAGIC_LEN};
use crate::size::{self, ImageSize, SizeKind};
use crate::Error;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file (or a device read as an image).
    Path(PathBuf),
    /// Standard input (`-`).
    Stdin,
    /// A stream the caller opened (a download), named by its URL.
    Url(String),
}

impl Input {
    /// `-` means standard input, anything else a path.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Path(p) => write!(f, "{}", p.display()),
            Input::Stdin => f.write_str("-"),
            Input::Url(url) => f.write_str(url),
        }
    }
}

/// Whether to look inside a compressed image or take the file's bytes as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAs {
    /// Find the container from the first bytes and decode it.
    Detect,
    /// Take the bytes as they are (hashing a download as published).
    Raw,
}

/// The device and inode an image is read from, to refuse writing onto the image itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// The device holding the file.
    pub dev: u64,
    /// The file's inode.
    pub ino: u64,
    /// For a block device used as the source: the device it is.
    pub rdev: Option<u64>,
}

impl FileIdentity {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            rdev: meta.file_type().is_block_device().then(|| meta.rdev()),
        }
    }
}

/// A stream that cannot seek: standard input or a download, its first bytes put back.
type Stream = io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + Send>>;

enum Handle {
    File(File),
    Stream(Stream),
}

impl Read for Handle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Handle::File(f) => f.read(buf),
            Handle::Stream(s) => s.read(buf),
        }
    }
}

impl Seek for Handle {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Handle::File(f) => f.seek(pos),
            Handle::Stream(_) => Err(io::Error::other("a stream cannot seek")),
        }
    }
}

/// A source just opened: its first bytes read, nothing decided yet.
struct Opened {
    handle: Handle,
    head: Vec<u8>,
    stored_len: Option<u64>,
    identity: Option<FileIdentity>,
}

/// An opened image: its format is known, its size when the container records it.
pub struct Image {
    input: Input,
    open_as: OpenAs,
    format: Format,
    handle: Handle,
    stored_len: Option<u64>,
    size: Option<ImageSize>,
    identity: Option<FileIdentity>,
    zip_entry: Option<usize>,
}

/// File extensions that mark the image inside a zip holding other files too.
const IMAGE_EXTENSIONS: [&str; 8] = ["img", "iso", "wic", "raw", "bin", "dd", "hdd", "sdcard"];

/// Reads bytes into `buf` until it is full or the reader ends.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Image {
    /// Opens an image and works out its format and size. Nothing is decoded yet.
    pub fn open(input: &Input, open_as: OpenAs) -> Result<Image, Error> {
        let opened = match input {
            Input::Path(path) => Self::open_file(path)?,
            Input::Stdin => Self::open_stdin()?,
            Input::Url(url) => {
                return Err(Error::Open {
                    path: PathBuf::from(url),
                    source: io::Error::other("a URL is opened with Image::open_stream"),
                })
            }
        };
        Self::from_opened(input, open_as, opened)
    }

    /// Opens an image from a stream the caller opened, such as a download. Its size is
    /// known only if the stream's first bytes tell it (a zstd frame header), or from
    /// [`Image::assume_size`].
    pub fn open_stream(
        input: Input,
        mut reader: Box<dyn Read + Send>,
        open_as: OpenAs,
    ) -> Result<Image, Error> {
        let mut head = vec![0; MAGIC_LEN];
        let got =
            read_full(&mut reader, &mut head).map_err(|e| Error::read(input.to_string(), 0, e))?;
        head.truncate(got);
        let opened = Opened {
            handle: Handle::Stream(io::Cursor::new(head.clone()).chain(reader)),
            head,
            stored_len: None,
            identity: None,
        };
        Self::from_opened(&input, open_as, opened)
    }

    /// Takes `size` as the decoded size when the image itself does not record one (a
    /// catalog's extract_size for a streamed download).
    pub fn assume_size(&mut self, size: ImageSize) {
        self.size.get_or_insert(size);
    }

    fn from_opened(input: &Input, open_as: OpenAs, opened: Opened) -> Result<Image, Error> {
        let Opened {
            handle,
            head,
            stored_len,
            identity,
        } = opened;
        let format = match open_as {
            OpenAs::Detect => Format::detect(&head),
            OpenAs::Raw => Format::Raw,
        };
        let mut image = Image {
            input: input.clone(),
            open_as,
            format,
            handle,
            stored_len,
            size: None,
            identity,
            zip_entry: None,
        };
        image.probe_size(&head)?;
        Ok(image)
    }

    fn open_file(path: &Path) -> Result<Opened, Error> {
        let open_err = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory, not an image",
            )));
        }
        let mut head = vec![0; MAGIC_LEN];
        let mut got = 0;
        while got < head.len() {
            match file.read_at(&mut head[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::read(path.display().to_string(), got as u64, e)),
            }
        }
        head.truncate(got);
        Ok(Opened {
            handle: Handle::File(file),
            head,
            stored_len: meta.is_file().then_some(meta.len()),
            identity: Some(FileIdentity::of(&meta)),
        })
    }

    fn open_stdin() -> Result<Opened, Error> {
        let mut stdin = io::stdin();
        if stdin.is_terminal() {
            return Err(Error::StdinIsTerminal);
        }
        // The identity of whatever is behind fd 0, so `write - out.img < out.img` is caught.
        let identity = File::open("/proc/self/fd/0")
            .and_then(|f| f.metadata())
            .ok()
            .map(|m| FileIdentity::of(&m));
        let mut head = vec![0; MAGIC_LEN];
        let got =
            read_full(&mut stdin, &mut head).map_err(|e| Error::read("standard input", 0, e))?;
        head.truncate(got);
        let rest: Box<dyn Read + Send> = Box::new(stdin);
        Ok(Opened {
            handle: Handle::Stream(io::Cursor::new(head.clone()).chain(rest)),
            head,
            stored_len: None,
            identity,
        })
    }

    fn probe_size(&mut self, head: &[u8]) -> Result<(), Error> {
        let file = match &self.handle {
            Handle::File(f) => Some(f),
            Handle::Stream(_) => None,
        };
        let probe_err = |e| Error::read(self.input.to_string(), 0, e);
        self.size = match (self.format, file, self.stored_len) {
            (Format::Raw, Some(_), Some(len)) => Some(ImageSize::exact(len)),
            (Format::Xz, Some(f), Some(len)) => size::xz_size(f, len)
                .map_err(probe_err)?
                .map(ImageSize::exact),
            (Format::Zstd, Some(f), Some(len)) => size::zstd_size(f, len)
                .map_err(probe_err)?
                .map(ImageSize::exact),
            (Format::Zstd, None, _) => size::zstd_first_frame_size(head).map(|bytes| ImageSize {
                bytes,
                kind: SizeKind::AtLeast,
            }),
            (Format::Gzip, Some(f), Some(len)) => size::gzip_estimate(f, len)
                .map_err(probe_err)?
                .map(|bytes| ImageSize {
                    bytes,
                    kind: SizeKind::Estimate,
                }),
            (Format::Zip, None, _) => {
                return Err(Error::ZipStreamed {
                    source_desc: match &self.input {
                        Input::Stdin => "standard input".to_owned(),
                        other => other.to_string(),
                    },
                })
            }
            (Format::Zip, Some(f), _) => {
                let (index, bytes) = pick_zip_entry(f)?;
                self.zip_entry = Some(index);
                Some(ImageSize::exact(bytes))
            }
            _ => None,
        };
        Ok(())
    }

    /// Where the image comes from.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// Its container.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The decoded size, when the container records it.
    pub fn size(&self) -> Option<ImageSize> {
        self.size
    }

    /// The size of the file as stored (compressed), when it is a regular file.
    pub fn stored_len(&self) -> Option<u64> {
        self.stored_len
    }

    /// The file it is read from, when it is one (to refuse writing onto it).
    pub fn identity(&self) -> Option<FileIdentity> {
        self.identity
    }

    /// What it takes to open this image again from the start; `None` for standard input.
    pub fn reopen_args(&self) -> Option<(Input, OpenAs)> {
        match &self.input {
            Input::Path(_) => Some((self.input.clone(), self.open_as)),
            Input::Stdin | Input::Url(_) => None,
        }
    }

    /// Decodes the image and hands the decoded stream to `sink`. With `hash_stored`, also
    /// returns the SHA-256 of the bytes as stored (the compressed file).
    pub fn decode<T>(
        self,
        hash_stored: bool,
        sink: impl FnOnce(&mut Decoded<'_>) -> Result<T, Error>,
    ) -> Result<(T, Option<[u8; 32]>), Error> {
        let format = self.format;
        let describe = self.input.to_string();
        let mut handle = self.handle;
        // A zip is read out of order (directory first), so its file is hashed whole, up
        // front, and the tap hashes nothing.
        let whole = match format == Format::Zip && hash_stored {
            true => Some(hash_whole(&mut handle, &describe)?),
            false => None,
        };
        let state = Rc::new(RefCell::new(TapState {
            consumed: 0,
            sha256: (hash_stored && whole.is_none()).then(Sha256::new),
            io_failed: false,
        }));
        let mut tap = Tap {
            inner: BufReader::with_capacity(1 << 18, handle),
            state: Rc::clone(&state),
        };
        let run = |reader: &mut dyn Read| {
            sink(&mut Decoded {
                reader,
                format,
                state: &state,
                describe: &describe,
                produced: 0,
            })
        };
        let corrupt = |detail: String| Error::Corrupt {
            format,
            compressed_offset: 0,
            image_offset: 0,
            detail,
        };
        let result = match format {
            Format::Raw => run(&mut tap),
            Format::Xz => run(&mut XzReader::new(tap)),
            Format::Gzip => run(&mut flate2::bufread::MultiGzDecoder::new(tap)),
            Format::Bzip2 => run(&mut bzip2::bufread::MultiBzDecoder::new(tap)),
            Format::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(tap)
                    .map_err(|e| corrupt(e.to_string()))?;
                // Images compressed with `zstd --long=31` need the largest window.
                decoder
                    .window_log_max(31)
                    .map_err(|e| corrupt(e.to_string()))?;
                run(&mut decoder)
            }
            Format::Zip => {
                let index = self
                    .zip_entry
                    .expect("zip entry chosen when the image was opened");
                let mut archive =
                    zip::ZipArchive::new(tap).map_err(|e| Error::ZipInvalid(e.to_string()))?;
                let mut entry = archive
                    .by_index(index)
                    .map_err(|e| Error::ZipInvalid(e.to_string()))?;
                run(&mut entry)
            }
        }?;
        let tapped = state
            .borrow_mut()
            .sha256
            .take()
            .map(|h| h.finalize().into());
        Ok((result, whole.or(tapped)))
    }
}

/// The SHA-256 of a whole (seekable) file, which is then rewound.
fn hash_whole(handle: &mut Handle, describe: &str) -> Result<[u8; 32], Error> {
    // Choosing the zip entry read the directory: start again from the first byte.
    handle
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::read(describe, 0, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = read_full(handle, &mut buf).map_err(|e| Error::read(describe, offset, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    handle
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::read(describe, 0, e))?;
    Ok(hasher.finalize().into())
}

/// Chooses the image inside a zip: the only file, or else the only file with an image's
/// extension. Anything else is ambiguous and refused with the list of what is inside.
fn pick_zip_entry(file: &File) -> Result<(usize, u64), Error> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::ZipInvalid(e.to_string()))?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| Error::ZipInvalid(e.to_string()))?;
        if entry.is_file() {
            files.push((i, entry.name().to_owned(), entry.size()));
        }
    }
    let looks_like_image = |name: &str| {
        Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    };
    let images: Vec<_> = files
        .iter()
        .filter(|(_, n, _)| looks_like_image(n))
        .collect();
    match (files.as_slice(), images.as_slice()) {
        ([(i, _, size)], _) | (_, [(i, _, size)]) => Ok((*i, *size)),
        _ => Err(Error::ZipAmbiguous {
            entries: files
                .iter()
                .map(|(_, name, size)| format!("{name} ({})", crate::units::bytes(*size)))
                .collect(),
        }),
    }
}

struct TapState {
    consumed: u64,
    sha256: Option<Sha256>,
    io_failed: bool,
}

/// Sits between the file and the decoder: counts the compressed bytes the decoder has used
/// (for error offsets), hashes them when asked, and remembers whether the file itself failed.
struct Tap<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
}

impl TapState {
    fn record(&mut self, data: &[u8]) {
        self.consumed += data.len() as u64;
        if let Some(h) = self.sha256.as_mut() {
            h.update(data);
        }
    }

    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        self.io_failed |= r.is_err();
        r
    }
}

impl<R: BufRead> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        let mut st = self.state.borrow_mut();
        let n = st.note(r)?;
        st.record(&buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tap<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let r = self.inner.fill_buf();
        self.state.borrow_mut().note(r)
    }

    fn consume(&mut self, amt: usize) {
        // The bytes being consumed are still at the front of the buffer.
        if let Ok(data) = self.inner.fill_buf() {
            self.state.borrow_mut().record(&data[..amt.min(data.len())]);
        }
        self.inner.consume(amt);
    }
}

impl<R: BufRead + Seek> Seek for Tap<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The decoded image as the pipeline sees it: `fill` whole buffers, with errors that say
/// which format failed and where.
pub struct Decoded<'a> {
    reader: &'a mut dyn Read,
    format: Format,
    state: &'a Rc<RefCell<TapState>>,
    describe: &'a str,
    produced: u64,
}

impl Decoded<'_> {
    /// Fills `buf` from the decoded stream; fewer bytes than `buf.len()` means the end.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failure(e, filled as u64)),
            }
        }
        self.produced += filled as u64;
        Ok(filled)
    }

    /// Compressed bytes used so far.
    pub fn consumed(&self) -> u64 {
        self.state.borrow().consumed
    }

    fn failure(&self, e: io::Error, extra: u64) -> Error {
        let st = self.state.borrow();
        if st.io_failed || self.format == Format::Raw {
            return Error::read(self.describe, st.consumed, e);
        }
        let detail = match e.kind() {
            io::ErrorKind::UnexpectedEof => format!("the file ends too early ({e})"),
            _ => e.to_string(),
        };
        Error::Corrupt {
            format: self.format,
            compressed_offset: st.consumed,
            image_offset: self.produced + extra,
            detail,
        }
    }
}

/// Memory the multi-threaded xz decoder may spend on its threads; past it, it decodes on one.
/// Each thread holds a whole block's output and its dictionary: images compressed with
/// `xz -T` (24 MiB blocks, 8 MiB dictionary) need about 80 MiB for two threads, which
/// decode 1.7x faster than one (see BENCHMARKS.md).
const XZ_MEMLIMIT_THREADING: u64 = 96 << 20;

/// An .xz decoder that runs liblzma's multi-threaded decoder on each stream and carries on
/// over stream padding into concatenated streams (the threaded decoder cannot do that itself).
struct XzReader<R> {
    input: R,
    stream: Option<liblzma::stream::Stream>,
    padding: usize,
}

impl<R: BufRead> XzReader<R> {
    fn new(input: R) -> XzReader<R> {
        XzReader {
            input,
            stream: None,
            padding: 0,
        }
    }

    fn new_stream() -> io::Result<liblzma::stream::Stream> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        liblzma::stream::MtStreamBuilder::new()
            .threads(threads)
            .memlimit_threading(XZ_MEMLIMIT_THREADING)
            .memlimit_stop(u64::MAX)
            .decoder()
            .map_err(io::Error::other)
    }

    /// Skips stream padding; returns false at the end of the input.
    fn start_next_stream(&mut self) -> io::Result<bool> {
        loop {
            let data = self.input.fill_buf()?;
            if data.is_empty() {
                if self.padding % 4 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "stream padding is not a multiple of four bytes",
                    ));
                }
                return Ok(false);
            }
            let zeros = data.iter().take_while(|&&b| b == 0).count();
            if zeros == 0 {
                if self.padding % 4 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "stream padding is not a multiple of four bytes",
                    ));
                }
                self.padding = 0;
                self.stream = Some(Self::new_stream()?);
                return Ok(true);
            }
            self.padding += zeros;
            self.input.consume(zeros);
        }
    }
}

impl<R: BufRead> Read for XzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use liblzma::stream::{Action, Status};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.stream.is_none() && !self.start_next_stream()? {
                return Ok(0);
            }
            let stream = self.stream.as_mut().expect("a stream was just started");
            let data = self.input.fill_buf()?;
            let eof = data.is_empty();
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let action = if eof { Action::Finish } else { Action::Run };
            let status = stream.process(data, buf, action);
            let used = (stream.total_in() - in_before) as usize;
            let produced = (stream.total_out() - out_before) as usize;
            self.input.consume(used);
            match status {
                Ok(Status::StreamEnd) => {
                    self.stream = None;
                    if produced > 0 {
                        return Ok(produced);
                    }
                }
                Ok(_) if produced > 0 => return Ok(produced),
                Ok(_) if eof && used == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the xz stream stops before its end",
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("xz")
            .args(["-c", "-T2", "--block-size=64KiB"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz is needed for this test");
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out.stdout
    }

    fn decode_all(compressed: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        XzReader::new(io::Cursor::new(compressed)).read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8 ^ seed).collect()
    }

    #[test]
    fn xz_reader_decodes_multi_block_streams_across_padding() {
        let (a, b) = (sample(300_000, 1), sample(70_000, 2));
        let mut joined = xz(&a);
        joined.extend_from_slice(&[0; 8]);
        joined.extend(xz(&b));
        let decoded = decode_all(&joined).unwrap();
        assert_eq!(decoded.len(), a.len() + b.len());
        assert!(decoded[..a.len()] == a[..] && decoded[a.len()..] == b[..]);
    }

    #[test]
    fn xz_reader_rejects_bad_padding_truncation_and_damage() {
        let data = sample(200_000, 3);
        let good = xz(&data);

        let mut odd_padding = good.clone();
        odd_padding.extend_from_slice(&[0; 3]);
        let err = decode_all(&odd_padding).unwrap_err();
        assert!(err.to_string().contains("padding"), "{err}");

        let err = decode_all(&good[..good.len() - 20]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");

        let mut damaged = good.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xFF;
        let err = decode_all(&damaged).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn trailing_garbage_after_a_stream_is_an_error() {
        let mut data = xz(&sample(1000, 4));
        data.extend_from_slice(b"not xz");
        assert!(decode_all(&data).is_err());
    }
}
