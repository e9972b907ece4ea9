//! The real binary under Xvfb, used as a person would: tesseract reads the screen, xdotool
//! clicks the words it found and types. The tour goes through every screen (start, device,
//! OS, storage, customisation and its editor, confirmation, progress, done, read, options),
//! writing the catalog's demo OS, served slowly from 127.0.0.1, into a file; each screen
//! must show its title, read back by OCR, and the file must hold the image with the host
//! name typed. Japanese must render (the bundled fonts) and read back in Japanese.
//! `CARDSMITH_SCREENSHOTS=DIR` keeps a PNG of every screen there (the README's pictures).
//! With no display, cardsmith prints the help.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{Fault, Server};
use common::x11::{Running, Xvfb};
use common::*;

/// An XWD capture: width, height and RGB pixels (24/32-bit TrueColor only).
fn read_xwd(data: &[u8]) -> Shot {
    let be = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let (header, width, height) = (be(0), be(4), be(5));
    let (byte_order, bpp, line, ncolors) = (be(7), be(11), be(12), be(19));
    assert!(bpp == 32 || bpp == 24, "unexpected {bpp} bits per pixel");
    let start = header + ncolors * 12;
    let step = bpp / 8;
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            let at = start + y * line + x * step;
            let p = &data[at..at + step];
            // LSBFirst (0): B G R [pad]; MSBFirst: [pad] R G B.
            pixels.push(if byte_order == 0 {
                [p[2], p[1], p[0]]
            } else {
                [p[step - 3], p[step - 2], p[step - 1]]
            });
        }
    }
    Shot {
        width,
        height,
        pixels,
    }
}

/// What is on the screen.
struct Shot {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

impl Shot {
    /// Distinct colours: a blank screen has one or two.
    fn colours(&self) -> usize {
        self.pixels
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    fn save_png(&self, path: &Path) {
        let file = fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&self.pixels.concat()).unwrap();
    }

    /// The screen as tesseract reads it best: in grey, three times the size, dark words on
    /// light everywhere. Words on a coloured button (white on blue or red) are turned
    /// dark on light: the button is where the colour is, closed over its letters
    /// (dilated, then eroded back), so the page around it stays as it is. The closing
    /// also bridges two buttons closer than twice its radius; the page between them is
    /// reached from the screen's edge without crossing colour, and stays page (inverted
    /// it was a black bar that tesseract read as "J" and took the next word's case).
    fn ocr_pgm(&self, path: &Path) {
        let (w, h) = (self.width, self.height);
        let coloured: Vec<bool> = self
            .pixels
            .iter()
            .map(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60)
            .collect();
        let outside = reached_from_edge(&coloured, w, h);
        let button: Vec<bool> = erode(&dilate(&coloured, w, h, 6), w, h, 6)
            .into_iter()
            .zip(outside)
            .map(|(closed, outside)| closed && !outside)
            .collect();
        let mut out = format!("P5\n{} {}\n255\n", w * SCALE, h * SCALE).into_bytes();
        for y in 0..h * SCALE {
            for x in 0..w * SCALE {
                let i = (y / SCALE) * w + x / SCALE;
                let [r, g, b] = self.pixels[i];
                let grey = if button[i] {
                    let whitest = u32::from(r.min(g).min(b));
                    ((255 - whitest) * 3 / 2).min(255)
                } else {
                    (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000
                };
                out.push(grey as u8);
            }
        }
        fs::write(path, out).unwrap();
    }
}

/// Every pixel within `r` of a set one is set (rows, then columns).
fn dilate(mask: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    let line = |get: &dyn Fn(usize) -> bool, n: usize| -> Vec<bool> {
        let mut before = vec![0usize; n + 1];
        for i in 0..n {
            before[i + 1] = before[i] + usize::from(get(i));
        }
        (0..n)
            .map(|i| before[(i + r + 1).min(n)] > before[i.saturating_sub(r)])
            .collect()
    };
    let mut rows = vec![false; w * h];
    for y in 0..h {
        let done = line(&|x| mask[y * w + x], w);
        rows[y * w..(y + 1) * w].copy_from_slice(&done);
    }
    let mut out = vec![false; w * h];
    for x in 0..w {
        let done = line(&|y| rows[y * w + x], h);
        for (y, set) in done.into_iter().enumerate() {
            out[y * w + x] = set;
        }
    }
    out
}

/// The unset pixels joined to the image's edge by unset pixels (4-neighbours): what
/// the set ones do not enclose.
fn reached_from_edge(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut reached = vec![false; w * h];
    let mut todo: Vec<usize> = (0..w)
        .flat_map(|x| [x, (h - 1) * w + x])
        .chain((0..h).flat_map(|y| [y * w, y * w + w - 1]))
        .collect();
    while let Some(i) = todo.pop() {
        if reached[i] || mask[i] {
            continue;
        }
        reached[i] = true;
        let (x, y) = (i % w, i / w);
        if x > 0 {
            todo.push(i - 1);
        }
        if x + 1 < w {
            todo.push(i + 1);
        }
        if y > 0 {
            todo.push(i - w);
        }
        if y + 1 < h {
            todo.push(i + w);
        }
    }
    reached
}

/// Every pixel within `r` of an unset one is unset.
fn erode(mask: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    let inverse: Vec<bool> = mask.iter().map(|m| !m).collect();
    dilate(&inverse, w, h, r).into_iter().map(|m| !m).collect()
}

/// How much the screen is enlarged for tesseract: small button text (14 px) reads
/// reliably from three times on.
const SCALE: usize = 3;

/// A word tesseract read, where it is on the screen (screen pixels).
#[derive(Debug, Clone)]
struct Word {
    text: String,
    /// (block, paragraph, line): words of one line share it.
    line: (u32, u32, u32),
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// Reads the screen with tesseract.
fn ocr(shot: &Shot, lang: &str, scratch: &Path) -> Vec<Word> {
    let image = scratch.join("ocr.pgm");
    shot.ocr_pgm(&image);
    let out = Command::new("tesseract")
        .arg(&image)
        .args(["-", "--psm", "11", "-l", lang, "tsv"])
        .output()
        .expect("tesseract (tesseract-ocr) is needed; the test command installs it");
    assert!(out.status.success(), "tesseract: {}", stderr(&out));
    let mut words = Vec::new();
    for row in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() < 12 || f[0] != "5" || f[11].trim().is_empty() {
            continue;
        }
        let n = |i: usize| f[i].parse::<usize>().unwrap_or(0);
        words.push(Word {
            text: f[11].trim().to_owned(),
            line: (n(2) as u32, n(3) as u32, n(4) as u32),
            x: n(6) / SCALE,
            y: n(7) / SCALE,
            w: n(8) / SCALE,
            h: n(9) / SCALE,
        });
    }
    words
}

/// Fails with `what` and everything OCR read unless `phrase` is among `words`, in one line
/// or wrapped over several: where a text wraps depends on the length of the temporary path
/// it names (the done screen's "… and verified it" once broke after "verified").
fn on_screen(words: &[Word], phrase: &str, what: &str) {
    if runs(words, phrase).next().is_none() {
        panic!(
            "{what}: {phrase:?} is not on the screen; OCR read: {}",
            said(words)
        );
    }
}

/// Everything OCR read, in reading order: what a failing screen check prints.
fn said(words: &[Word]) -> String {
    let read: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    read.join(" ")
}

/// Letters and digits only: how words are compared (case counts: "Choose storage" is a
/// title, "CHOOSE STORAGE" the button that leads to it).
fn plain(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Where `phrase` stands on the screen (the middle of its words), when OCR read it in one
/// line: something to click.
fn find(words: &[Word], phrase: &str) -> Option<(usize, usize)> {
    runs(words, phrase)
        .find(|run| run.iter().all(|w| w.line == run[0].line))
        .map(|run| {
            let left = run[0].x;
            let last = run.last().unwrap();
            let right = last.x + last.w;
            let top = run.iter().map(|w| w.y).min().unwrap();
            let bottom = run.iter().map(|w| w.y + w.h).max().unwrap();
            ((left + right) / 2, (top + bottom) / 2)
        })
}

/// Every run of consecutive words (in reading order, across lines) that spells `phrase`.
fn runs<'w>(words: &'w [Word], phrase: &str) -> impl Iterator<Item = &'w [Word]> {
    let wanted: Vec<String> = phrase
        .split_whitespace()
        .map(plain)
        .filter(|w| !w.is_empty())
        .collect();
    (0..words.len()).filter_map(move |start| {
        let run = words.get(start..start + wanted.len())?;
        let matches = !wanted.is_empty()
            && run
                .iter()
                .zip(&wanted)
                .all(|(w, want)| plain(&w.text) == *want);
        matches.then_some(run)
    })
}

/// Whether OCR read `phrase`, also in a script written without spaces (its words joined
/// line by line).
fn reads(words: &[Word], phrase: &str) -> bool {
    if find(words, phrase).is_some() {
        return true;
    }
    let wanted = plain(phrase);
    let mut lines: Vec<((u32, u32, u32), String)> = Vec::new();
    for w in words {
        match lines.last_mut() {
            Some((line, text)) if *line == w.line => text.push_str(&plain(&w.text)),
            _ => lines.push((w.line, plain(&w.text))),
        }
    }
    lines.iter().any(|(_, text)| text.contains(&wanted))
}

/// One X server for one test.
struct Display {
    name: String,
    xvfb: Xvfb,
    scratch: tempfile::TempDir,
    /// Where to keep a PNG of each screen (`CARDSMITH_SCREENSHOTS`).
    keep: Option<PathBuf>,
    lang: &'static str,
}

impl Display {
    fn start(lang: &'static str) -> Display {
        let xvfb = Xvfb::start("1000x760x24");
        Display {
            name: xvfb.name.clone(),
            xvfb,
            scratch: tempfile::tempdir().unwrap(),
            keep: std::env::var_os("CARDSMITH_SCREENSHOTS").map(PathBuf::from),
            lang,
        }
    }

    fn shot(&self) -> Shot {
        let out = Command::new("xwd")
            .args(["-root", "-silent", "-display", &self.name])
            .output()
            .expect("xwd (x11-apps) is needed");
        assert!(out.status.success(), "xwd: {}", stderr(&out));
        read_xwd(&out.stdout)
    }

    /// Waits until OCR reads `phrase` on the screen (the wizard draws on its own time),
    /// and returns the screen and its words. `name`: keep it as `name.png`.
    fn wait_for(&self, app: &mut Running, phrase: &str, name: Option<&str>) -> (Shot, Vec<Word>) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Ok(Some(status)) = app.0.try_wait() {
                let mut err = String::new();
                let _ = app.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!(
                    "the wizard exited ({status}) waiting for {phrase:?}: {err}\n\
                     Xvfb {} said: {}",
                    self.name,
                    self.xvfb.said()
                );
            }
            let shot = self.shot();
            let words = ocr(&shot, self.lang, self.scratch.path());
            if reads(&words, phrase) {
                if let (Some(dir), Some(name)) = (&self.keep, name) {
                    fs::create_dir_all(dir).unwrap();
                    shot.save_png(&dir.join(format!("{name}.png")));
                }
                return (shot, words);
            }
            if Instant::now() > deadline {
                let failed = std::env::temp_dir().join("cardsmith-gui-failed.png");
                shot.save_png(&failed);
                panic!(
                    "{phrase:?} never appeared on the screen (it is in {}); OCR read: {}",
                    failed.display(),
                    said(&words)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn xdotool(&self, args: &[&str]) {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.name)
            .output()
            .expect("xdotool is needed; the test command installs it");
        assert!(out.status.success(), "xdotool {args:?}: {}", stderr(&out));
    }

    /// Clicks `phrase` where OCR read it, or `(dx, dy)` pixels away from it (a field
    /// under its label, or left of its button).
    fn click(&self, words: &[Word], phrase: &str, (dx, dy): (isize, isize)) {
        let (x, y) = find(words, phrase).unwrap_or_else(|| {
            panic!("{phrase:?} is not on the screen; OCR read: {}", said(words))
        });
        let (x, y) = (
            x.saturating_add_signed(dx).to_string(),
            y.saturating_add_signed(dy).to_string(),
        );
        self.xdotool(&["mousemove", "--sync", &x, &y, "click", "1"]);
    }

    /// Waits for `phrase`, then clicks it.
    fn wait_and_click(&self, app: &mut Running, phrase: &str) {
        let (_, words) = self.wait_for(app, phrase, None);
        self.click(&words, phrase, (0, 0));
    }

    fn type_text(&self, text: &str) {
        self.xdotool(&["type", "--delay", "15", text]);
    }

    fn key(&self, key: &str) {
        self.xdotool(&["key", key]);
    }
}

/// The wizard on `display`, on the catalog at `repo`, in the language of `lang`.
fn wizard(display: &Display, repo: &str, home: &Path, lang: &str) -> Running {
    Running(
        Command::new(bin())
            .env("DISPLAY", &display.name)
            .env_remove("WAYLAND_DISPLAY")
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("LANG", lang)
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env("CARDSMITH_REPO", repo)
            .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The bundled sample catalog and its files, served from 127.0.0.1; the systemd demo
/// stalls half-way for a few seconds, so the progress screen stays up to be read.
fn serve_sample() -> Server {
    let server = Server::start();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../os-list-sample");
    for entry in fs::read_dir(&sample).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        server.serve(&format!("/{name}"), fs::read(&path).unwrap());
    }
    server.faults(
        "/demo-systemd.img.xz",
        &[Fault::StallAt(9000, Duration::from_secs(8))],
    );
    server
}

/// The done screen's words as OCR gave them when the path made the line break after
/// "verified": the phrase is still on the screen, but it is not one place to click.
#[test]
fn a_phrase_wrapped_over_two_lines_is_read_but_not_clicked() {
    let word = |text: &str, line: u32, x: usize| Word {
        text: text.to_owned(),
        line: (1, 1, line),
        x,
        y: 100 + 20 * line as usize,
        w: 40,
        h: 14,
    };
    let words = [
        word("pi-card.img", 1, 10),
        word("and", 1, 60),
        word("verified", 1, 110),
        word("it;", 2, 10),
        word("SHA-256", 2, 60),
        word("matched", 2, 110),
    ];
    on_screen(&words, "verified it", "wrapped");
    on_screen(&words, "SHA-256 matched", "one line");
    assert_eq!(find(&words, "verified it"), None);
    assert_eq!(find(&words, "SHA-256 matched"), Some((105, 147)));
    assert!(runs(&words, "verified them").next().is_none());
    assert!(runs(&words, "").next().is_none());
}

#[test]
fn without_a_display_cardsmith_prints_the_help() {
    let out = Command::new(bin())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("No display"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Usage: cardsmith"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_person_goes_through_every_screen_and_writes_a_card_file() {
    let display = Display::start("eng");
    let server = serve_sample();
    let home = tempfile::tempdir().unwrap();
    let target = home.path().join("pi-card.img");
    let mut app = wizard(
        &display,
        &server.url("/os_list.json"),
        home.path(),
        "en_GB.UTF-8",
    );
    let d = &display;

    // Start: the window is drawn, and not blank.
    let (shot, words) = d.wait_for(&mut app, "CHOOSE DEVICE", Some("start"));
    assert!(
        shot.colours() > 20,
        "the screen is blank: {} colours",
        shot.colours()
    );
    // No window manager gives the window the keyboard: as one would, on the first click.
    d.xdotool(&[
        "search",
        "--sync",
        "--name",
        "^cardsmith$",
        "windowfocus",
        "--sync",
    ]);
    d.click(&words, "CHOOSE DEVICE", (0, 0));
    let (_, words) = d.wait_for(&mut app, "Choose your Raspberry Pi", Some("device"));
    d.click(&words, "Raspberry Pi 4 Model B", (0, 0));

    d.wait_and_click(&mut app, "CHOOSE OS");
    let (_, words) = d.wait_for(&mut app, "Choose an operating system", Some("os"));
    d.click(&words, "Bookworm-style image", (0, 0));

    d.wait_and_click(&mut app, "CHOOSE STORAGE");
    let (_, words) = d.wait_for(&mut app, "Choose storage", Some("storage"));
    d.click(&words, "Browse", (-200, 0));
    d.type_text(&target.display().to_string());
    d.key("Return");

    d.wait_and_click(&mut app, "NEXT");
    let (_, words) = d.wait_for(
        &mut app,
        "Apply OS customisation settings",
        Some("customize"),
    );
    d.click(&words, "EDIT SETTINGS", (0, 0));
    let (_, words) = d.wait_for(&mut app, "Show passwords", Some("settings"));
    d.click(&words, "Host name", (0, 26));
    d.type_text("tour-pi");
    // SAVE is below the fold; Enter presses it.
    d.key("Return");
    d.wait_and_click(&mut app, "YES");
    let (_, words) = d.wait_for(&mut app, "Ready to write", Some("confirm"));
    on_screen(&words, "tour-pi", "the host name is on the confirmation");
    d.click(&words, "WRITE", (0, 0));

    // The download stalls near its end: the progress screen stays up to be read, its
    // first bar under way.
    let (_, words) = d.wait_for(&mut app, "MB/s", Some("progress"));
    on_screen(
        &words,
        "Downloading and writing",
        "the progress screen names its step",
    );
    on_screen(&words, "CANCEL", "the progress screen can cancel");
    on_screen(
        &words,
        "Cancelling removes the unfinished image file",
        "the progress screen says what cancelling does",
    );
    let (_, words) = d.wait_for(&mut app, "WRITE ANOTHER CARD", Some("done"));
    on_screen(&words, "verified it", "the done screen says what was done");

    // The file holds the image, and the settings typed (read by mtools, not cardsmith).
    let written = fs::read(&target).unwrap();
    assert_eq!(written.len(), 51_380_224);
    let entry = &written[0x1BE..0x1CE];
    let start = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize * 512;
    let out = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{start}", target.display()))
        .arg("::firstrun.sh")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("mtype (mtools)");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tour-pi"));

    d.click(&words, "BACK TO START", (0, 0));
    d.wait_and_click(&mut app, "READ A CARD");
    d.wait_for(&mut app, "Read a card into an image file", Some("read"));
    d.key("Escape");
    d.wait_and_click(&mut app, "OPTIONS");
    d.wait_for(&mut app, "Verify after writing", Some("options"));
}

#[test]
fn japanese_renders_and_reads_back_in_japanese() {
    let display = Display::start("jpn");
    let home = tempfile::tempdir().unwrap();
    let repo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../os-list-sample/os_list.json"
    );
    let mut app = wizard(&display, repo, home.path(), "ja_JP.UTF-8");
    // The start screen's first sentence as ja.yml has it: no font on this machine but
    // the bundled ones need have its characters.
    let intro = read_locale("ja", "start.intro");
    let sentence = intro.split('。').nth(1).unwrap();
    assert!(sentence.chars().count() > 10, "{sentence}");
    display.wait_for(&mut app, sentence, Some("start-ja"));
}

/// A string of a locale file.
fn read_locale(code: &str, key: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../locales/{code}.yml"));
    let text = fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in {code}.yml"));
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_matches('"')
        .to_owned()
}
