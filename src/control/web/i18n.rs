//! The site's languages: gettext catalogues (web/po/LANG.po, compiled in),
//! the language of each request, and numbers and dates written its way.
//!
//! Each request's language is chosen once, by the `choose` middleware, and
//! kept in a task-local for the request's handler: templates (`_()`,
//! `url()`, `languages()`) and Rust messages (`tr`, `trf`) read it from
//! there, so no handler passes it along. The choice, first match wins:
//! a `/LANG/` prefix on the path (stripped before routing, and remembered
//! in a cookie and, for a logged-in operator, in the database), the `lang`
//! cookie, `Accept-Language`, English. `/` itself redirects to the chosen
//! language's `/LANG/` when that is not English.
//!
//! Messages are their English text (the msgid); a string missing from a
//! catalogue, or marked fuzzy there, falls back to English, never to a key.
//! Placeholders are `{name}`. Strings in templates may hold HTML (they are
//! ours); the values put into them are escaped.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use crate::control::timefmt;

/// One language of the site.
#[derive(Debug)]
pub struct Language {
    /// In URLs and the cookie: `/vi/`.
    pub code: &'static str,
    /// BCP 47, for `<html lang>` and hreflang.
    pub tag: &'static str,
    /// Its own name, for the language list.
    pub name: &'static str,
    /// Written left to right, or right to left.
    pub dir: &'static str,
    /// Between groups of three digits ("" for none).
    pub group: &'static str,
    pub decimal: char,
    /// Month names for dates, January first.
    pub months: [&'static str; 12],
    pub date_style: DateStyle,
    /// The catalogue's source, web/po/CODE.po; English has none.
    catalogue: &'static str,
}

/// How a day is written.
#[derive(Debug, Clone, Copy)]
pub enum DateStyle {
    /// "3 December 2026"
    DayMonthYear,
    /// "3. December 2026"
    DayDotMonthYear,
    /// "3 de December de 2026"
    DayDeMonthDeYear,
    /// "2026年12月3日"
    YearMonthDayCjk,
    /// "3 tháng 12, 2026"
    Vietnamese,
    /// "December 3, 2026"
    MonthDayYear,
}

/// Months by number, for styles that write the number ("tháng 12", "12月").
const NUMBERED_MONTHS: [&str; 12] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

/// Every language, English first (the fallback). Order of the list.
pub static LANGUAGES: &[Language] = &[
    Language {
        code: "en",
        tag: "en",
        name: "English",
        dir: "ltr",
        group: ",",
        decimal: '.',
        months: [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        date_style: DateStyle::MonthDayYear,
        catalogue: "",
    },
    Language {
        code: "da",
        tag: "da",
        name: "Dansk",
        dir: "ltr",
        group: ".",
        decimal: ',',
        months: [
            "januar",
            "februar",
            "marts",
            "april",
            "maj",
            "juni",
            "juli",
            "august",
            "september",
            "oktober",
            "november",
            "december",
        ],
        date_style: DateStyle::DayDotMonthYear,
        catalogue: include_str!("../../../web/po/da.po"),
    },
    Language {
        code: "de",
        tag: "de",
        name: "Deutsch",
        dir: "ltr",
        group: ".",
        decimal: ',',
        months: [
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ],
        date_style: DateStyle::DayDotMonthYear,
        catalogue: include_str!("../../../web/po/de.po"),
    },
    Language {
        code: "es",
        tag: "es",
        name: "Español",
        dir: "ltr",
        group: ".",
        decimal: ',',
        months: [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ],
        date_style: DateStyle::DayDeMonthDeYear,
        catalogue: include_str!("../../../web/po/es.po"),
    },
    Language {
        code: "fr",
        tag: "fr",
        name: "Français",
        dir: "ltr",
        // A narrow no-break space, as French typography has it.
        group: "\u{202f}",
        decimal: ',',
        months: [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ],
        date_style: DateStyle::DayMonthYear,
        catalogue: include_str!("../../../web/po/fr.po"),
    },
    Language {
        code: "pt",
        tag: "pt-BR",
        name: "Português (Brasil)",
        dir: "ltr",
        group: ".",
        decimal: ',',
        months: [
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ],
        date_style: DateStyle::DayDeMonthDeYear,
        catalogue: include_str!("../../../web/po/pt.po"),
    },
    Language {
        code: "ru",
        tag: "ru",
        name: "Русский",
        dir: "ltr",
        group: "\u{a0}",
        decimal: ',',
        // Genitive, as in "3 декабря 2026".
        months: [
            "января",
            "февраля",
            "марта",
            "апреля",
            "мая",
            "июня",
            "июля",
            "августа",
            "сентября",
            "октября",
            "ноября",
            "декабря",
        ],
        date_style: DateStyle::DayMonthYear,
        catalogue: include_str!("../../../web/po/ru.po"),
    },
    Language {
        code: "vi",
        tag: "vi",
        name: "Tiếng Việt",
        dir: "ltr",
        group: ".",
        decimal: ',',
        months: NUMBERED_MONTHS,
        date_style: DateStyle::Vietnamese,
        catalogue: include_str!("../../../web/po/vi.po"),
    },
    Language {
        code: "ja",
        tag: "ja",
        name: "日本語",
        dir: "ltr",
        group: ",",
        decimal: '.',
        months: NUMBERED_MONTHS,
        date_style: DateStyle::YearMonthDayCjk,
        catalogue: include_str!("../../../web/po/ja.po"),
    },
    Language {
        code: "zh",
        tag: "zh-CN",
        name: "简体中文",
        dir: "ltr",
        group: ",",
        decimal: '.',
        months: NUMBERED_MONTHS,
        date_style: DateStyle::YearMonthDayCjk,
        catalogue: include_str!("../../../web/po/zh.po"),
    },
];

pub fn english() -> &'static Language {
    &LANGUAGES[0]
}

/// The language with this URL code.
pub fn by_code(code: &str) -> Option<&'static Language> {
    LANGUAGES.iter().find(|l| l.code == code)
}

impl Language {
    pub fn is_english(&self) -> bool {
        self.code == "en"
    }

    /// The translation of `msgid`, or `msgid` itself.
    pub fn translate<'a>(&self, msgid: &'a str) -> &'a str {
        match CATALOGUES.get(self.code).and_then(|c| c.get(msgid)) {
            Some(text) => text.as_str(),
            None => msgid,
        }
    }

    /// An integer with the language's digit groups: 12,345 / 12.345.
    pub fn integer(&self, value: i64) -> String {
        let digits = value.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + 8);
        if value < 0 {
            out.push('-');
        }
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(self.group);
            }
            out.push(digit);
        }
        out
    }

    /// A number with `digits` decimals and the language's decimal mark.
    pub fn fixed(&self, value: f64, digits: usize) -> String {
        let text = format!("{value:.digits$}");
        if self.decimal == '.' {
            return text;
        }
        text.replace('.', &self.decimal.to_string())
    }

    /// A day, written the language's way: "3. Dezember 2026".
    pub fn date(&self, ts: i64) -> String {
        let (y, m, d) = timefmt::ymd(ts);
        let month = self.months[(m as usize).saturating_sub(1).min(11)];
        match self.date_style {
            DateStyle::DayMonthYear => format!("{d} {month} {y}"),
            DateStyle::DayDotMonthYear => format!("{d}. {month} {y}"),
            DateStyle::DayDeMonthDeYear => format!("{d} de {month} de {y}"),
            DateStyle::YearMonthDayCjk => format!("{y}年{m}月{d}日"),
            DateStyle::Vietnamese => format!("{d} tháng {m}, {y}"),
            DateStyle::MonthDayYear => format!("{month} {d}, {y}"),
        }
    }
}

/// Every catalogue, parsed once: code -> msgid -> translation.
static CATALOGUES: LazyLock<HashMap<&'static str, HashMap<String, String>>> = LazyLock::new(|| {
    LANGUAGES
        .iter()
        .filter(|l| !l.catalogue.is_empty())
        .map(|l| {
            let entries = match parse_po(l.catalogue) {
                Ok(entries) => entries,
                Err(error) => {
                    // A broken catalogue is a build mistake the test suite
                    // catches; the site then shows that language in English.
                    tracing::error!(language = l.code, %error, "catalogue does not parse");
                    Vec::new()
                }
            };
            let map = entries
                .into_iter()
                .filter(|e| !e.fuzzy && !e.msgid.is_empty() && !e.msgstr.is_empty())
                .map(|e| (e.msgid, e.msgstr))
                .collect();
            (l.code, map)
        })
        .collect()
});

/// One entry of a .po file.
#[derive(Debug, Clone, PartialEq)]
pub struct PoEntry {
    pub msgid: String,
    pub msgstr: String,
    /// `#, fuzzy`: a guess a translator has not confirmed; not used.
    pub fuzzy: bool,
    /// The line of its `msgid`.
    pub line: usize,
}

/// Parses a gettext .po file: `msgid`/`msgstr` pairs with continued
/// strings, `#` comments and the `#, fuzzy` flag. Plural forms and
/// contexts are not used by the site and are refused, so a catalogue
/// never holds something it would silently ignore.
pub fn parse_po(text: &str) -> Result<Vec<PoEntry>, String> {
    #[derive(PartialEq)]
    enum Field {
        None,
        Id,
        Str,
    }
    let mut entries = Vec::new();
    let mut current: Option<PoEntry> = None;
    let mut field = Field::None;
    let mut fuzzy_next = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() {
            field = Field::None;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.starts_with(',') && comment.contains("fuzzy") {
                fuzzy_next = true;
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("msgid ") {
            if let Some(entry) = current.take() {
                entries.push(entry);
            }
            current = Some(PoEntry {
                msgid: unquote(rest).map_err(|e| format!("line {line_no}: {e}"))?,
                msgstr: String::new(),
                fuzzy: std::mem::take(&mut fuzzy_next),
                line: line_no,
            });
            field = Field::Id;
        } else if let Some(rest) = line.strip_prefix("msgstr ") {
            let entry = current
                .as_mut()
                .filter(|_| field == Field::Id)
                .ok_or_else(|| format!("line {line_no}: msgstr without its msgid"))?;
            entry.msgstr = unquote(rest).map_err(|e| format!("line {line_no}: {e}"))?;
            field = Field::Str;
        } else if line.starts_with('"') {
            let more = unquote(line).map_err(|e| format!("line {line_no}: {e}"))?;
            let entry = current
                .as_mut()
                .ok_or_else(|| format!("line {line_no}: a string outside an entry"))?;
            match field {
                Field::Id => entry.msgid.push_str(&more),
                Field::Str => entry.msgstr.push_str(&more),
                Field::None => return Err(format!("line {line_no}: a string outside an entry")),
            }
        } else {
            let keyword = line.split_whitespace().next().unwrap_or(line);
            return Err(format!(
                "line {line_no}: {keyword:?} is not used here (only msgid and msgstr)"
            ));
        }
    }
    if let Some(entry) = current.take() {
        entries.push(entry);
    }
    for entry in &entries {
        if !entry.msgid.is_empty() && entries.iter().filter(|e| e.msgid == entry.msgid).count() > 1
        {
            return Err(format!("line {}: msgid appears twice", entry.line));
        }
    }
    Ok(entries)
}

/// A C-style quoted string of a .po file.
fn unquote(text: &str) -> Result<String, String> {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or("a string must be in double quotes")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            return Err("an unescaped \" inside a string".into());
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// The `{name}` placeholders of a message, in order.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if !after[..end].is_empty()
                    && after[..end]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                names.push(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    names
}

/// Puts the values into a message's `{name}` placeholders; `escape` each
/// value first when the message is HTML.
pub fn fill(text: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let value = after.find('}').and_then(|end| {
            values
                .iter()
                .find(|(n, _)| *n == &after[..end])
                .map(|v| (end, v))
        });
        match value {
            Some((end, (_, value))) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The language of one request, and what the language list needs.
#[derive(Debug, Clone)]
pub struct RequestLanguage {
    pub language: &'static Language,
    /// The path had a `/LANG/` prefix: links keep it.
    pub prefixed: bool,
    /// The path without the prefix, with its query: the same page in
    /// another language is `/LANG` + this.
    pub page: String,
}

tokio::task_local! {
    static CURRENT: RequestLanguage;
}

/// The current request's language; English outside a request.
pub fn current() -> &'static Language {
    CURRENT
        .try_with(|r| r.language)
        .unwrap_or_else(|_| english())
}

/// The request asked for its language in the URL (`/de/...`).
pub fn prefixed() -> bool {
    CURRENT.try_with(|r| r.prefixed).unwrap_or(false)
}

/// Runs `f` with the current request's language settings, if any.
fn with_request<T>(f: impl FnOnce(Option<&RequestLanguage>) -> T) -> T {
    let mut f = Some(f);
    match CURRENT.try_with(|r| (f.take().expect("called once"))(Some(r))) {
        Ok(value) => value,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// Runs `f` in the language `code` (a user's stored choice; English when
/// unknown), its links prefixed with it: a mail to someone other than
/// the person asking is written in the recipient's language.
pub fn in_language<T>(code: Option<&str>, f: impl FnOnce() -> T) -> T {
    let language = code.and_then(by_code).unwrap_or_else(english);
    let request = RequestLanguage {
        language,
        prefixed: !language.is_english(),
        page: "/".to_string(),
    };
    CURRENT.sync_scope(request, f)
}

/// A Rust-side message (a form error, an error page) in the request's
/// language. Plain text: the page escapes it.
pub fn tr(msgid: &'static str) -> &'static str {
    current().translate(msgid)
}

/// `tr` with `{name}` placeholders filled in.
pub fn trf(msgid: &'static str, values: &[(&str, String)]) -> String {
    fill(current().translate(msgid), values)
}

/// Names that are data, not in a template, but translated: the
/// continents (the countries keep their English names). Listed here so
/// the catalogue check finds them.
pub const ZONE_NAMES: &[&str] = &[
    n_("Global"),
    n_("Africa"),
    n_("Antarctica"),
    n_("Asia"),
    n_("Europe"),
    n_("North America"),
    n_("Oceania"),
    n_("South America"),
];

/// Status words pages show from data (`word()` in templates): a
/// server's status, a vendor zone's, a user's role, a monitor's state.
pub const STATUS_WORDS: &[&str] = &[
    n_("active"),
    n_("new"),
    n_("low score"),
    n_("monitor only"),
    n_("out of pool"),
    n_("deletion scheduled"),
    n_("deleted"),
    n_("pending"),
    n_("approved"),
    n_("rejected"),
    n_("operator"),
    n_("staff"),
    n_("owner"),
    n_("member"),
    n_("candidate"),
    n_("testing"),
    n_("paused"),
];

/// Marks a string for the catalogue without translating it (gettext's N_).
pub const fn n_(msgid: &'static str) -> &'static str {
    msgid
}

/// A link within the site in the current language: `/de/zone/europe` when
/// the page was asked for as `/de/...`.
pub fn url(path: &str) -> String {
    with_request(|r| match r {
        Some(r) if r.prefixed && path.starts_with('/') => {
            if path == "/" {
                format!("/{}/", r.language.code)
            } else {
                format!("/{}{}", r.language.code, path)
            }
        }
        _ => path.to_string(),
    })
}

/// One entry of the language list of a page.
#[derive(serde::Serialize)]
pub struct Alternate {
    pub code: &'static str,
    pub tag: &'static str,
    pub name: &'static str,
    pub href: String,
    pub current: bool,
}

/// The same page in every language (the language list and hreflang).
pub fn alternates() -> Vec<Alternate> {
    with_request(|r| {
        let page = r.map_or("/", |r| r.page.as_str());
        let current = r.map_or("en", |r| r.language.code);
        LANGUAGES
            .iter()
            .map(|l| Alternate {
                code: l.code,
                tag: l.tag,
                name: l.name,
                href: if page == "/" {
                    format!("/{}/", l.code)
                } else {
                    format!("/{}{}", l.code, page)
                },
                current: l.code == current,
            })
            .collect()
    })
}

/// The page without a language prefix (hreflang x-default).
pub fn default_page() -> String {
    with_request(|r| r.map_or_else(|| "/".to_string(), |r| r.page.clone()))
}

/// The longest query the language list copies into its links.
const MAX_LINKED_QUERY: usize = 256;

/// The not-found page, in the language of the request.
fn not_found() -> Response {
    super::error::AppError::NotFound.into_response()
}

/// The cookie that remembers a visitor's choice.
pub const COOKIE: &str = "tp_lang";

/// A year: the choice outlives sessions.
const COOKIE_MAX_AGE: i64 = 365 * 86_400;

/// Splits `/de/zone/europe` into the language and `/zone/europe`.
pub fn split_prefix(path: &str) -> Option<(&'static Language, &str)> {
    let rest = path.strip_prefix('/')?;
    let (code, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    by_code(code).map(|language| (language, tail))
}

/// The best of our languages for an `Accept-Language` header: the highest
/// q first, ties by order; a language matches by its primary subtag
/// (`zh-CN`, `zh-TW` -> zh; `pt-PT` -> pt-BR). Only the first 32 entries
/// are looked at.
pub fn from_accept_language(header: &str) -> Option<&'static Language> {
    let mut best: Option<(f32, &'static Language)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        for param in parts {
            if let Some(value) = param.trim().strip_prefix("q=") {
                q = value.trim().parse().unwrap_or(0.0);
            }
        }
        if q.is_nan() || q <= 0.0 || tag.is_empty() || tag == "*" {
            continue;
        }
        let primary = tag.split(['-', '_']).next().unwrap_or(tag);
        let Some(language) = LANGUAGES.iter().find(|l| {
            l.tag
                .split('-')
                .next()
                .is_some_and(|p| p.eq_ignore_ascii_case(primary))
        }) else {
            continue;
        };
        if best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, language));
        }
    }
    best.map(|(_, language)| language)
}

/// The middleware that chooses each request's language (see the module
/// comment), strips a `/LANG/` prefix before routing and remembers an
/// explicit choice.
pub async fn choose(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    // The same page in another language: only pages a link can reach (a
    // form's POST target may have no GET), and a query kept only while
    // short (it is copied into every language's link).
    let linkable = req.method() == Method::GET || req.method() == Method::HEAD;
    let page_of = |tail: &str| {
        if !linkable {
            "/".to_string()
        } else if query.len() <= MAX_LINKED_QUERY {
            format!("{tail}{query}")
        } else {
            tail.to_string()
        }
    };
    let cookie =
        super::session::cookie_value(req.headers(), COOKIE).and_then(|code| by_code(&code));
    let (language, prefixed, page) = match split_prefix(&path) {
        Some((language, tail)) => {
            // `/de` alone: the canonical form is `/de/`.
            if !path[1..].contains('/') {
                return Redirect::permanent(&format!("{path}/{query}")).into_response();
            }
            let request = RequestLanguage {
                language,
                prefixed: true,
                page: "/".to_string(),
            };
            // `/de//host` must not become a URI with an authority.
            if tail.starts_with("//") {
                return CURRENT.sync_scope(request, not_found);
            }
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = format!("{tail}{query}").parse().ok();
            match (parts.path_and_query.is_some(), Uri::from_parts(parts)) {
                (true, Ok(uri)) => *req.uri_mut() = uri,
                _ => return CURRENT.sync_scope(request, not_found),
            }
            (language, true, page_of(tail))
        }
        None => {
            let accepted = req
                .headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(from_accept_language);
            let language = cookie.or(accepted).unwrap_or_else(english);
            if path == "/" && !language.is_english() {
                let to = format!("/{}/{query}", language.code);
                let mut response = Redirect::to(&to).into_response();
                response.headers_mut().insert(
                    header::VARY,
                    HeaderValue::from_static("Accept-Language, Cookie"),
                );
                return response;
            }
            (language, false, page_of(&path))
        }
    };
    let remember = prefixed && cookie.is_none_or(|c| c.code != language.code);
    if remember {
        let name = super::session::session_cookie_name(state.settings.secure_cookies);
        if let Some(token) = super::session::cookie_value(req.headers(), name) {
            remember_for_user(&state, &token, language).await;
        }
    }
    let request = RequestLanguage {
        language,
        prefixed,
        page,
    };
    let mut response = CURRENT.scope(request, next.run(req)).await;
    if remember {
        let cookie = super::session::cookie_header(
            COOKIE,
            language.code,
            Some(COOKIE_MAX_AGE),
            state.settings.secure_cookies,
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    let page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"text/html") || v.as_bytes().starts_with(b"application/atom")
        });
    if page {
        response.headers_mut().insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(language.tag),
        );
    }
    if !prefixed && page {
        // The same page reads differently by these headers (the API and
        // the snapshot do not: caches keep one copy of them).
        response.headers_mut().append(
            header::VARY,
            HeaderValue::from_static("Accept-Language, Cookie"),
        );
    }
    response
}

/// A logged-in operator's choice goes with their login, to other
/// browsers: it is stored, and set as the cookie when they log in.
async fn remember_for_user(state: &AppState, token: &str, language: &'static Language) {
    // Outside the router's request timeout: bounded here. Either way the
    // cookie still remembers the choice in this browser.
    let store =
        crate::control::db::accounts::set_language_by_session(&state.db, token, language.code);
    match tokio::time::timeout(std::time::Duration::from_secs(2), store).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot store a user's language"),
        Err(_) => tracing::warn!("storing a user's language timed out"),
    }
}

/// The `Set-Cookie` of a user's stored language, sent at login.
pub fn cookie_for(code: &str, secure: bool) -> Option<HeaderValue> {
    let language = by_code(code)?;
    HeaderValue::from_str(&super::session::cookie_header(
        COOKIE,
        language.code,
        Some(COOKIE_MAX_AGE),
        secure,
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_of_ours() {
        let code = |h: &str| from_accept_language(h).map(|l| l.code);
        assert_eq!(code("vi, en;q=0.5"), Some("vi"));
        assert_eq!(code("zh-CN,zh;q=0.9"), Some("zh"));
        assert_eq!(code("pt-PT"), Some("pt"));
        assert_eq!(code("en;q=0.4, de;q=0.8"), Some("de"));
        assert_eq!(code("xx, yy;q=0.2"), None);
        assert_eq!(code("de;q=0, *"), None);
        assert_eq!(code("de;q=nonsense"), None);
        assert_eq!(code(""), None);
    }

    #[test]
    fn prefixes_are_split_only_for_our_languages() {
        assert_eq!(
            split_prefix("/de/zone/europe").map(|(l, p)| (l.code, p)),
            Some(("de", "/zone/europe"))
        );
        assert_eq!(
            split_prefix("/vi/").map(|(l, p)| (l.code, p)),
            Some(("vi", "/"))
        );
        assert_eq!(
            split_prefix("/vi").map(|(l, p)| (l.code, p)),
            Some(("vi", "/"))
        );
        assert!(split_prefix("/zone/de").is_none());
        assert!(split_prefix("/").is_none());
    }

    #[test]
    fn numbers_and_dates_are_written_the_language_s_way() {
        let de = by_code("de").expect("de");
        assert_eq!(de.integer(1234567), "1.234.567");
        assert_eq!(de.integer(-999), "-999");
        assert_eq!(de.fixed(12.345, 1), "12,3");
        assert_eq!(english().integer(25000), "25,000");
        // 2026-12-03
        let ts = 1_796_256_000;
        assert_eq!(de.date(ts), "3. Dezember 2026");
        assert_eq!(by_code("zh").expect("zh").date(ts), "2026年12月3日");
        assert_eq!(by_code("vi").expect("vi").date(ts), "3 tháng 12, 2026");
        assert_eq!(english().date(ts), "December 3, 2026");
    }

    #[test]
    fn po_files_parse_with_continuations_escapes_and_fuzzy() {
        let text = "# header\nmsgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=UTF-8\\n\"\n\n#, fuzzy\nmsgid \"A\"\nmsgstr \"B\"\n\nmsgid \"Say \\\"{x}\\\"\"\n\"!\"\nmsgstr \"\"\n\"Sag \\\"{x}\\\"!\"\n";
        let entries = parse_po(text).expect("parses");
        assert_eq!(entries.len(), 3);
        assert!(entries[1].fuzzy);
        assert_eq!(entries[2].msgid, "Say \"{x}\"!");
        assert_eq!(entries[2].msgstr, "Sag \"{x}\"!");
        assert!(parse_po("msgid \"a\"\nmsgid_plural \"b\"\n").is_err());
        assert!(parse_po("msgid \"a\nmsgstr \"b\"\n").is_err());
        assert!(parse_po("msgid \"a\"\nmsgstr \"b\"\nmsgid \"a\"\nmsgstr \"c\"\n").is_err());
    }

    #[test]
    fn a_string_missing_from_a_catalogue_is_shown_in_english() {
        let de = by_code("de").expect("de");
        assert_eq!(
            de.translate("A sentence no catalogue has."),
            "A sentence no catalogue has."
        );
        assert_ne!(de.translate("Active servers"), "Active servers");
        assert_eq!(english().translate("Active servers"), "Active servers");
    }

    #[test]
    fn placeholders_are_filled_and_unknown_braces_kept() {
        assert_eq!(
            placeholders("{a} and {b_2}, not { } or {x-y}"),
            ["a", "b_2"]
        );
        assert_eq!(
            fill("Hello {name}, {missing}", &[("name", "Ann".into())]),
            "Hello Ann, {missing}"
        );
    }
}
