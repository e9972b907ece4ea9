//! The wizard: `cardsmith` with no arguments on a desktop. Choose device, OS and storage,
//! optionally the first-boot settings, confirm, watch the progress. It runs the same code
//! as the CLI (`cardsmith write …` on a worker thread), so it adds no imaging logic.

mod app;
mod host;
mod inspect;
mod state;
mod work;

pub use app::{App, LANGUAGES};

#[cfg(test)]
mod tests;

/// Whether a display server is there to open a window on (winit panics without one).
pub fn has_display() -> bool {
    ["WAYLAND_DISPLAY", "WAYLAND_SOCKET", "DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The language to start in: the system's when the wizard speaks it, English otherwise.
pub fn system_language() -> String {
    let locale = cardsmith_catalog::user_locale();
    let lang = locale.split('_').next().unwrap_or("");
    if locale.starts_with("zh") {
        return "zh-CN".into();
    }
    LANGUAGES
        .iter()
        .find(|(code, _)| *code == lang)
        .map_or("en", |(code, _)| code)
        .to_owned()
}

/// Opens the window. `CARDSMITH_REPO` points the wizard at another catalog.
pub fn run() -> iced::Result {
    let repo = std::env::var("CARDSMITH_REPO").ok();
    iced::application(
        move || App::new(system_language(), repo.clone(), host::Host::this_computer()),
        App::update,
        App::view,
    )
    .title(App::title)
    .theme(App::theme)
    .subscription(App::subscription)
    // Closing the window during a job cancels it first (see Message::CloseRequested).
    .exit_on_close_request(false)
    .window_size((900.0, 700.0))
    .centered()
    .run()
}
