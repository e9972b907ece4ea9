//! The wizard: `cardsmith` with no arguments on a desktop. Choose device, OS and storage,
//! optionally the first-boot settings, confirm, watch the progress. It runs the same jobs
//! as the CLI (`job`, on a worker thread), so it adds no imaging logic.
//!
//! `app` routes messages to the screens (`screen/`, one module each, with their own
//! state, messages, update and view); `context` holds the shared data and the user's
//! `Selection`; `theme` and `widget` are how it looks; `work` runs a job for the window;
//! `host` and `inspect` prefill the settings and look inside the chosen image.

mod app;
mod context;
mod fonts;
mod host;
mod inspect;
mod screen;
mod theme;
mod widget;
mod work;

pub use app::App;

/// The languages the wizard speaks (Raspberry Pi Imager's set), with their names in
/// themselves.
pub const LANGUAGES: [(&str, &str); 25] = [
    ("en", "English"),
    ("bn", "বাংলা"),
    ("ca", "Català"),
    ("cs", "Čeština"),
    ("de", "Deutsch"),
    ("es", "Español"),
    ("fr", "Français"),
    ("ga", "Gaeilge"),
    ("he", "עברית"),
    ("hu", "Magyar"),
    ("it", "Italiano"),
    ("ja", "日本語"),
    ("ka", "ქართული"),
    ("ko", "한국어"),
    ("nl", "Nederlands"),
    ("pl", "Polski"),
    ("pt-BR", "Português (Brasil)"),
    ("ro", "Română"),
    ("ru", "Русский"),
    ("sk", "Slovenčina"),
    ("sl", "Slovenščina"),
    ("tr", "Türkçe"),
    ("uk", "Українська"),
    ("zh-CN", "简体中文"),
    ("zh-TW", "繁體中文"),
];

/// Whether a display server is there to open a window on (winit panics without one).
pub fn has_display() -> bool {
    ["WAYLAND_DISPLAY", "WAYLAND_SOCKET", "DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The language to start in: the system's when the wizard speaks it, English otherwise.
pub fn system_language() -> String {
    language_for(&cardsmith_catalog::user_locale()).to_owned()
}

/// The wizard's language for a POSIX locale name (`pt_BR.UTF-8`, `zh_TW`, `de_AT`).
fn language_for(locale: &str) -> &'static str {
    let locale = locale.split(['.', '@']).next().unwrap_or("");
    let lang = locale.split(['_', '-']).next().unwrap_or("");
    match lang {
        // Traditional characters in Taiwan, Hong Kong and Macau, and where asked for.
        "zh" if ["TW", "HK", "MO", "Hant"]
            .iter()
            .any(|r| locale.contains(r)) =>
        {
            "zh-TW"
        }
        "zh" => "zh-CN",
        "pt" => "pt-BR",
        _ => LANGUAGES
            .iter()
            .find(|(code, _)| *code == lang)
            .map_or("en", |(code, _)| code),
    }
}

/// The desktop's name for the wizard: the basename of its `.desktop` file and its
/// AppStream id, given to the window as its Wayland app id and X11 class so docks and
/// task bars match the window with its menu entry (which says `StartupWMClass=` this).
pub const APP_ID: &str = "io.github.cardsmith.cardsmith";

/// The window's icon: the 128-pixel rendering of the menu entry's icon.
const ICON_PNG: &[u8] = include_bytes!("../../../../assets/linux/icons/128x128.png");

fn window_settings() -> iced::window::Settings {
    iced::window::Settings {
        size: iced::Size::new(900.0, 700.0),
        position: iced::window::Position::Centered,
        icon: iced::window::icon::from_file_data(ICON_PNG, None).ok(),
        // Closing the window during a job cancels it first (see Message::CloseRequested).
        exit_on_close_request: false,
        platform_specific: iced::window::settings::PlatformSpecific {
            application_id: APP_ID.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Opens the window. `CARDSMITH_REPO` points the wizard at another catalog.
pub fn run() -> iced::Result {
    let repo = std::env::var("CARDSMITH_REPO").ok();
    let language = system_language();
    let start_in = language.clone();
    let mut application = iced::application(
        move || {
            let (app, loading) =
                App::new(start_in.clone(), repo.clone(), host::Host::this_computer());
            (app, iced::Task::batch([loading, app::ask_host_wifi()]))
        },
        App::update,
        App::view,
    )
    .title(App::title)
    .theme(App::theme)
    .subscription(App::subscription)
    .window(window_settings());
    // Every language renders whatever fonts the desktop has (see `fonts`).
    for font in fonts::for_language(&language) {
        application = application.font(font);
    }
    application.run()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod window_tests {
    #[test]
    fn the_window_gets_the_menu_entrys_icon_and_id() {
        let settings = super::window_settings();
        assert!(settings.icon.is_some(), "the built-in icon did not decode");
        assert_eq!(settings.platform_specific.application_id, super::APP_ID);
        let entry = include_str!("../../../../assets/linux/io.github.cardsmith.cardsmith.desktop");
        assert!(entry
            .lines()
            .any(|l| l == format!("StartupWMClass={}", super::APP_ID)));
        assert!(entry
            .lines()
            .any(|l| l == format!("Icon={}", super::APP_ID)));
    }
}

#[cfg(test)]
mod language_tests {
    #[test]
    fn the_system_locale_picks_the_language() {
        for (locale, code) in [
            ("de_AT.UTF-8", "de"),
            ("pt_BR.UTF-8", "pt-BR"),
            ("pt_PT", "pt-BR"),
            ("zh_TW.UTF-8", "zh-TW"),
            ("zh_HK", "zh-TW"),
            ("zh_CN.UTF-8", "zh-CN"),
            ("ko_KR.UTF-8", "ko"),
            ("sr_RS@latin", "en"),
            ("C", "en"),
            ("", "en"),
        ] {
            assert_eq!(super::language_for(locale), code, "{locale}");
        }
    }
}
