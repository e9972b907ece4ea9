//! The real binary under Xvfb: `cardsmith` with no arguments opens the wizard, whose start
//! screen is captured (xwd) and must not be blank. With no display it prints the help.
//! `CARDSMITH_SCREENSHOT=FILE` also saves the capture as PNG (the README's picture).

mod common;

use std::fs;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An XWD capture: width, height and RGB pixels (24/32-bit TrueColor only).
fn read_xwd(data: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
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
    (width, height, pixels)
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
fn the_wizard_opens_under_xvfb_and_its_start_screen_is_not_blank() {
    // Xvfb picks a free display itself and writes its number once it accepts clients
    // (-displayfd), so neither a stale socket nor a slow start can race the test.
    let mut xvfb = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1000x760x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb is needed (the test command installs xvfb)");
    let mut number = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(xvfb.stdout.take().unwrap()),
        &mut number,
    )
    .unwrap();
    let _xvfb = Running(xvfb);
    assert!(
        !number.trim().is_empty(),
        "Xvfb did not start (it wrote no display number)"
    );
    let display = format!(":{}", number.trim());
    let home = tempfile::tempdir().unwrap();
    let repo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../os-list-sample/os_list.json"
    );
    let mut app = Running(
        Command::new(bin())
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_CACHE_HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .env("LANG", "en_GB.UTF-8")
            .env("CARDSMITH_REPO", repo)
            .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The window needs a moment to map and draw; capture until it shows something.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (width, height, pixels, raw) = loop {
        std::thread::sleep(Duration::from_millis(700));
        if let Ok(Some(status)) = app.0.try_wait() {
            let mut err = String::new();
            app.0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the wizard exited ({status}): {err}");
        }
        let out = Command::new("xwd")
            .args(["-root", "-silent", "-display", &display])
            .output()
            .expect("xwd (x11-apps) is needed");
        assert!(out.status.success(), "xwd: {}", stderr(&out));
        let (w, h, p) = read_xwd(&out.stdout);
        let colours: std::collections::BTreeSet<[u8; 3]> = p.iter().copied().collect();
        if colours.len() > 20 || Instant::now() > deadline {
            break (w, h, p, out.stdout);
        }
    };
    let colours: std::collections::BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        colours.len() > 20,
        "the screen is blank: {} colours",
        colours.len()
    );
    let lit = pixels.iter().filter(|p| p.iter().any(|&c| c > 40)).count();
    assert!(
        lit > width * height / 10,
        "the window covers too little of the screen: {lit} lit pixels"
    );
    drop(raw);
    if let Ok(out) = std::env::var("CARDSMITH_SCREENSHOT") {
        let file = fs::File::create(&out).unwrap();
        let mut encoder =
            png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&pixels.concat()).unwrap();
    }
}
