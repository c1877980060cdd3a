//! The site's translations: every catalogue has every string, with the
//! same placeholders and markup, and every page renders in every language
//! with no English left where a translation exists.
//!
//! The strings are found in the sources: `_("...")` in web/templates,
//! `tr("...")`, `trf("...", ...)` and `n_("...")` in src/control/web.
//! web/po/timepool.pot is the template translators start from; after
//! changing strings, `TIMEPOOL_BLESS_POT=1 cargo test --test i18n` writes
//! it again (then `msgmerge` brings each LANG.po up to date).

mod web_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use timepool::control::web::i18n::{self, LANGUAGES, parse_po, placeholders};
use web_support::{for_each_engine, staff_client};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A message and where it was first seen.
struct Message {
    text: String,
    place: String,
}

/// Every marked string of the sources, in order of first appearance.
fn extract() -> Vec<Message> {
    let mut found: Vec<Message> = Vec::new();
    let mut add = |text: String, place: String| {
        if !found.iter().any(|m| m.text == text) {
            found.push(Message { text, place });
        }
    };
    let mut templates: Vec<PathBuf> = std::fs::read_dir(root().join("web/templates"))
        .expect("web/templates")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    templates.sort();
    for path in &templates {
        let text = std::fs::read_to_string(path).expect("template");
        assert!(
            !text.contains("_('"),
            "{}: write _(\"...\") with double quotes, so the check finds it",
            path.display()
        );
        let found = calls(&text, &["_("]);
        // `_()` output is HTML taken as safe: only our own literals may
        // go through it; data goes through `word()`, which escapes.
        let all_calls = text
            .match_indices("_(")
            .filter(|(i, _)| *i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
            .count();
        assert_eq!(
            found.len(),
            all_calls,
            "{}: a _() call without a string literal; use word() for data",
            path.display()
        );
        for (string, line) in found {
            add(string, format!("{}:{line}", relative(path)));
        }
    }
    let mut sources = Vec::new();
    rust_files(&root().join("src/control/web"), &mut sources);
    sources.sort();
    for path in &sources {
        let text = std::fs::read_to_string(path).expect("source");
        for (string, line) in calls(&text, &["tr(", "trf(", "n_("]) {
            add(string, format!("{}:{line}", relative(path)));
        }
    }
    // Why an address cannot join: texts of the shared layer, which knows
    // no languages; the web app translates them.
    for reason in timepool::shared::netaddr::all_reasons() {
        add(reason.to_string(), "src/shared/netaddr.rs".to_string());
    }
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The string literals that open calls of `names` (the name must not be
/// the tail of a longer identifier), with their line numbers.
fn calls(text: &str, names: &[&str]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for name in names {
        let mut from = 0;
        while let Some(at) = text[from..].find(name) {
            let start = from + at;
            from = start + name.len();
            if start > 0 {
                let before = bytes[start - 1];
                if before.is_ascii_alphanumeric() || before == b'_' || before == b'.' {
                    continue;
                }
            }
            let rest = text[from..].trim_start();
            let Some(literal) = rest.strip_prefix('"') else {
                continue; // a call with a variable: not a message
            };
            let mut string = String::new();
            let mut chars = literal.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => string.push('\n'),
                        Some(other) => string.push(other),
                        None => break,
                    },
                    c => string.push(c),
                }
            }
            let line = text[..start].matches('\n').count() + 1;
            out.push((string, line));
        }
    }
    out.sort_by_key(|(_, line)| *line);
    out
}

fn po_quote(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

fn pot(messages: &[Message]) -> String {
    let mut out = String::from(
        "# The strings of timepool's site, for translators.\n\
         # Written by `TIMEPOOL_BLESS_POT=1 cargo test --test i18n`; do not edit.\n\
         msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=UTF-8\\n\"\n",
    );
    for m in messages {
        out.push_str(&format!(
            "\n#: {}\nmsgid {}\nmsgstr \"\"\n",
            m.place,
            po_quote(&m.text)
        ));
    }
    out
}

#[test]
fn the_template_lists_every_string_of_the_sources() {
    let messages = extract();
    assert!(
        messages.len() > 150,
        "only {} strings found",
        messages.len()
    );
    for m in &messages {
        assert!(!m.text.trim().is_empty(), "{}: an empty message", m.place);
        assert!(
            !m.text.contains('\n'),
            "{}: a message on one line, please",
            m.place
        );
    }
    let path = root().join("web/po/timepool.pot");
    let want = pot(&messages);
    if std::env::var_os("TIMEPOOL_BLESS_POT").is_some() {
        std::fs::write(&path, &want).expect("write timepool.pot");
        return;
    }
    // The `#:` lines say where a string is; they move with every edit and
    // are not compared.
    let strip = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with("#:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        strip(&have) == strip(&want),
        "web/po/timepool.pot is out of date: run TIMEPOOL_BLESS_POT=1 cargo test --test i18n"
    );
}

/// The HTML tags of a message, whole (`<a href="{url}">`), sorted: a
/// translation may move them but not change them.
fn tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = text
        .split('<')
        .skip(1)
        .map(|t| format!("<{}", t.split_inclusive('>').next().unwrap_or("")))
        .collect();
    tags.sort();
    tags
}

/// The `"` of a message outside its tags: a translation may use the
/// language's own quotation marks but no more `"` than the English (a
/// message in an attribute would end it).
fn quotes_outside_tags(text: &str) -> usize {
    let mut inside = false;
    text.chars()
        .filter(|&c| {
            match c {
                '<' => inside = true,
                '>' => inside = false,
                _ => {}
            }
            c == '"' && !inside
        })
        .count()
}

#[test]
fn every_catalogue_has_every_string_with_the_same_placeholders() {
    let messages = extract();
    let mut problems = Vec::new();
    for language in LANGUAGES.iter().filter(|l| !l.is_english()) {
        let file = format!("web/po/{}.po", language.code);
        let text = std::fs::read_to_string(root().join(&file)).expect("catalogue");
        let entries = match parse_po(&text) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(format!("{file}: {e}"));
                continue;
            }
        };
        let translated: BTreeMap<&str, &i18n::PoEntry> = entries
            .iter()
            .filter(|e| !e.msgid.is_empty())
            .map(|e| (e.msgid.as_str(), e))
            .collect();
        let mut missing = Vec::new();
        for m in &messages {
            match translated.get(m.text.as_str()) {
                None => missing.push(format!("  {:?} ({})", m.text, m.place)),
                Some(e) if e.msgstr.is_empty() || e.fuzzy => missing.push(format!(
                    "  {:?} ({}, line {} untranslated or fuzzy)",
                    m.text, m.place, e.line
                )),
                Some(e) => {
                    let want: BTreeSet<&str> = placeholders(&m.text).into_iter().collect();
                    let have: BTreeSet<&str> = placeholders(&e.msgstr).into_iter().collect();
                    if want != have {
                        problems.push(format!(
                            "{file}:{}: placeholders {have:?}, the English has {want:?}",
                            e.line
                        ));
                    }
                    let (want, have) = (tags(&m.text), tags(&e.msgstr));
                    if want != have {
                        problems.push(format!(
                            "{file}:{}: HTML tags {have:?}, the English has {want:?}",
                            e.line
                        ));
                    }
                    if quotes_outside_tags(&e.msgstr) > quotes_outside_tags(&m.text) {
                        problems.push(format!(
                            "{file}:{}: more '\"' than the English has (use the language's quotation marks)",
                            e.line
                        ));
                    }
                }
            }
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{file}: {} strings missing:\n{}",
                missing.len(),
                missing.join("\n")
            ));
        }
        let known: BTreeSet<&str> = messages.iter().map(|m| m.text.as_str()).collect();
        for e in entries.iter().filter(|e| !e.msgid.is_empty()) {
            if !known.contains(e.msgid.as_str()) {
                problems.push(format!(
                    "{file}:{}: {:?} is no longer used",
                    e.line, e.msgid
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The English texts a page in another language must not show: the
/// longest run of plain text of each message the language translates
/// differently (short runs like "IPv4" are the same in every language).
fn english_leftovers(code: &str, messages: &[Message]) -> Vec<(String, String)> {
    let language = i18n::by_code(code).expect("language");
    messages
        .iter()
        .filter(|m| language.translate(&m.text) != m.text)
        .filter_map(|m| {
            let mut runs = Vec::new();
            let mut current = String::new();
            let mut depth = 0;
            for c in m.text.chars() {
                match c {
                    '<' | '{' => {
                        depth += 1;
                        runs.push(std::mem::take(&mut current));
                    }
                    '>' | '}' => depth -= 1,
                    c if depth == 0 => current.push(c),
                    _ => {}
                }
            }
            runs.push(current);
            let longest = runs
                .into_iter()
                .map(|r| r.trim().to_string())
                .max_by_key(|r| r.len())?;
            // Words short enough to be names in any language are not
            // checked ("Email", "IPv6", "JSON").
            (longest.chars().count() >= 12 && longest.contains(' '))
                .then(|| (longest, m.place.clone()))
        })
        .collect()
}

#[tokio::test]
async fn every_page_renders_in_every_language_without_english_left() {
    let messages = extract();
    for_each_engine(true, |app| {
        let messages = &messages;
        async move {
            let mut staff = staff_client(&app, "staff@example.org").await;
            let r = staff
                .post(
                    "/staff/news",
                    &[
                        ("published", "2026-12-01"),
                        ("title_en", "Hello from the pool"),
                        ("body_en", "First *news*."),
                        ("title_vi", "Xin chào"),
                        ("body_vi", "Tin đầu tiên."),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "news: {}", r.body);
            let mut operator = app.client();
            operator.signup("op@example.org").await;
            let server = operator.add_server("127.0.0.5", "de").await;
            operator
                .post("/manage/users/invite", &[("email", "friend@example.org")])
                .await;
            let invite = web_support::mailed_link(&app.db, "friend@example.org", "/invite/").await;
            // Two more users: one stays (the confirmation of a removal is
            // shown for them), one is removed (the no-account page) and
            // invited again (the invitation of an existing login).
            let mut users = Vec::new();
            for email in ["stays@example.org", "leaves@example.org"] {
                operator
                    .post("/manage/users/invite", &[("email", email)])
                    .await;
                let mut client = app.client();
                let password = "their password 1";
                let r = client
                    .post(
                        &web_support::mailed_link(&app.db, email, "/invite/").await,
                        &[("password", password), ("password2", password)],
                    )
                    .await;
                assert_eq!(r.location(), "/manage", "{}", r.body);
                let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(email)
                    .fetch_one(&app.db.pool)
                    .await
                    .expect("user id");
                users.push((client, id));
            }
            let (mut leaver, leaver_id) = users.pop().expect("leaver");
            let (_, stayer_id) = users.pop().expect("stayer");
            operator
                .post(
                    &format!("/manage/users/{leaver_id}/remove"),
                    &[("confirm", "yes")],
                )
                .await;
            leaver
                .post(
                    "/login",
                    &[
                        ("email", "leaves@example.org"),
                        ("password", "their password 1"),
                    ],
                )
                .await;
            operator
                .post("/manage/users/invite", &[("email", "leaves@example.org")])
                .await;
            let invite_again =
                web_support::mailed_link(&app.db, "leaves@example.org", "/invite/").await;
            let public = [
                "/".to_string(),
                "/zone/@".into(),
                "/zone/europe".into(),
                "/zone/de".into(),
                "/use".into(),
                "/join".into(),
                "/news".into(),
                "/vendors".into(),
                "/terms".into(),
                "/scores/127.0.0.5".into(),
                "/login".into(),
                "/signup".into(),
                "/reset".into(),
                "/login?done=password-changed".into(),
                invite,
                invite_again,
            ];
            let operator_pages = [
                "/manage".to_string(),
                format!("/manage/servers/{server}"),
                "/manage/users".into(),
                "/manage/vendor".into(),
                "/manage/login".into(),
                "/manage/login/delete".into(),
                // The notices after actions.
                format!("/manage/servers/{server}?done=saved"),
                "/manage/users?done=user-removed".into(),
                "/manage/users?done=invite-withdrawn".into(),
                "/manage/vendor?done=vendor-applied".into(),
                "/manage?done=email-verified".into(),
                "/manage?done=verification-sent".into(),
            ];
            for language in LANGUAGES {
                let code = language.code;
                let leftovers = english_leftovers(code, messages);
                let mut anonymous = app.client();
                for page in &public {
                    check_page(
                        &mut anonymous,
                        &format!("/{code}{page}"),
                        language,
                        &leftovers,
                    )
                    .await;
                }
                for page in &operator_pages {
                    check_page(
                        &mut operator,
                        &format!("/{code}{page}"),
                        language,
                        &leftovers,
                    )
                    .await;
                }
                check_page(
                    &mut leaver,
                    &format!("/{code}/manage/no-account"),
                    language,
                    &leftovers,
                )
                .await;
                // A login whose address is not confirmed yet.
                let mut unconfirmed = app.client();
                unconfirmed
                    .signup_unconfirmed(&format!("unconfirmed-{code}@example.org"))
                    .await;
                check_page(
                    &mut unconfirmed,
                    &format!("/{code}/manage"),
                    language,
                    &leftovers,
                )
                .await;
                // The confirmation of a removal (removes nobody).
                let r = operator
                    .post(&format!("/{code}/manage/users/{stayer_id}/remove"), &[])
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                for (english, place) in &leftovers {
                    assert!(
                        !r.body.contains(english.as_str()),
                        "removal confirmation in {code}: {english:?} ({place})"
                    );
                }
                // Errors and form messages too.
                let r = anonymous.get(&format!("/{code}/no-such-page")).await;
                assert_eq!(r.status, StatusCode::NOT_FOUND);
                assert!(r.body.contains(&format!("lang=\"{}\"", language.tag)));
                for (english, place) in &leftovers {
                    assert!(
                        !r.body.contains(english.as_str()),
                        "404 in {code}: {english:?} ({place})"
                    );
                }
                let r = anonymous
                    .post(
                        &format!("/{code}/signup"),
                        &[
                            ("email", "nonsense"),
                            ("password", "short"),
                            ("password2", "x"),
                        ],
                    )
                    .await;
                assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
                for (english, place) in &leftovers {
                    assert!(
                        !r.body.contains(english.as_str()),
                        "signup errors in {code}: {english:?} ({place})"
                    );
                }
                // An operator's form errors, the shared layer's reasons included.
                for (path, fields) in [
                    (
                        "/manage/servers",
                        vec![
                            ("address", "10.1.2.3"),
                            ("zone", "de"),
                            ("netspeed", "1000"),
                        ],
                    ),
                    (
                        "/manage/servers",
                        vec![
                            ("address", "not a host!"),
                            ("zone", "xx"),
                            ("netspeed", "7"),
                        ],
                    ),
                    (
                        "/manage/vendor",
                        vec![
                            ("name", "Bad Name!"),
                            ("client_type", "?"),
                            ("description", ""),
                        ],
                    ),
                ] {
                    let path = format!("/{code}{path}");
                    let r = operator.post(&path, &fields).await;
                    assert_eq!(
                        r.status,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "{path}: {}",
                        r.body
                    );
                    for (english, place) in &leftovers {
                        assert!(
                            !r.body.contains(english.as_str()),
                            "{path} errors: {english:?} ({place})"
                        );
                    }
                }
            }
        }
    })
    .await;
}

/// One page in one language: 200, its `lang`, its alternates, and none of
/// the English it has a translation for.
async fn check_page(
    client: &mut web_support::Client,
    path: &str,
    language: &i18n::Language,
    leftovers: &[(String, String)],
) {
    let r = client.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    assert!(
        r.body
            .contains(&format!("<html lang=\"{}\" dir=\"ltr\">", language.tag)),
        "{path}: no lang attribute"
    );
    assert!(
        r.body.contains("hreflang=\"x-default\""),
        "{path}: no x-default alternate"
    );
    for (english, place) in leftovers {
        assert!(
            !r.body.contains(english.as_str()),
            "{path}: English {english:?} (from {place}) left on the page"
        );
    }
}

#[tokio::test]
async fn the_language_is_chosen_by_url_cookie_and_accept_language() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        for (accept, to) in [
            ("vi, en;q=0.5", Some("/vi/")),
            ("zh-CN,zh;q=0.9", Some("/zh/")),
            ("de-AT", Some("/de/")),
            ("xx-YY, tlh;q=0.8", None),
            ("en-GB,en;q=0.9,de;q=0.5", None),
        ] {
            let r = app
                .client()
                .request_with("GET", "/", None, &[("accept-language", accept)])
                .await;
            match to {
                Some(to) => {
                    assert_eq!(r.status, StatusCode::SEE_OTHER, "{accept}");
                    assert_eq!(r.location(), to, "{accept}");
                    assert!(r.headers.get("vary").is_some(), "{accept}: no Vary");
                }
                None => {
                    r.assert(StatusCode::OK, &["<html lang=\"en\""]);
                }
            }
        }
        // A /LANG/ page: its links keep the language, its list links the
        // same page in every language, hreflang alternates and x-default.
        let r = c.get("/de/zone/europe").await;
        r.assert(
            StatusCode::OK,
            &[
                "<html lang=\"de\" dir=\"ltr\">",
                "href=\"/de/use\"",
                "href=\"/de/zone/de\"",
                "<link rel=\"alternate\" hreflang=\"vi\" href=\"/vi/zone/europe\">",
                "<link rel=\"alternate\" hreflang=\"zh-CN\" href=\"/zh/zone/europe\">",
                "<link rel=\"alternate\" hreflang=\"x-default\" href=\"/zone/europe\">",
                "<a href=\"/ja/zone/europe\" hreflang=\"ja\" lang=\"ja\">日本語</a>",
            ],
        );
        // The choice is remembered: `/` now goes to /de/ whatever the
        // browser says, and unprefixed pages are German.
        let r = c
            .request_with("GET", "/", None, &[("accept-language", "vi")])
            .await;
        assert_eq!(r.location(), "/de/");
        c.get("/use")
            .await
            .assert(StatusCode::OK, &["<html lang=\"de\""]);
        c.get("/de").await;
        assert_eq!(c.get("/de").await.location(), "/de/");
        // Not a language: an ordinary 404.
        assert_eq!(c.get("/xx/use").await.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn a_logged_in_operator_s_choice_goes_with_their_login() {
    for_each_engine(false, |app| async move {
        let mut first = app.client();
        first.signup("lang@example.org").await;
        first
            .get("/vi/manage")
            .await
            .assert(StatusCode::OK, &["<html lang=\"vi\""]);
        // Another browser, no cookies: the login brings the choice along.
        let mut second = app.client();
        let r = second
            .post(
                "/login",
                &[
                    ("email", "lang@example.org"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        second
            .get("/manage")
            .await
            .assert(StatusCode::OK, &["<html lang=\"vi\""]);
        // A language asked for in the URL at login wins.
        let mut third = app.client();
        let r = third
            .post(
                "/da/login",
                &[
                    ("email", "lang@example.org"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(r.location(), "/da/manage");
        third
            .get("/manage")
            .await
            .assert(StatusCode::OK, &["<html lang=\"da\""]);
        // ... and is stored: the next browser gets Danish too.
        let mut fourth = app.client();
        fourth
            .post(
                "/login",
                &[
                    ("email", "lang@example.org"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        fourth
            .get("/manage")
            .await
            .assert(StatusCode::OK, &["<html lang=\"da\""]);
    })
    .await;
}

/// Parses an Atom document with Python's standard library and prints its
/// title and its entries' titles, one per line.
fn parse_atom(xml: &str) -> Vec<String> {
    use std::io::Write;
    let script = r#"
import sys, xml.etree.ElementTree as ET
A = '{http://www.w3.org/2005/Atom}'
feed = ET.fromstring(sys.stdin.buffer.read())
assert feed.tag == A + 'feed', feed.tag
for required in ('id', 'title', 'updated', 'author'):
    assert feed.find(A + required) is not None, 'feed without ' + required
import re, datetime
TAG = re.compile(r'^tag:[a-z0-9.-]+,[0-9]{4}:[!-~]+$')
def when(element):
    # RFC 3339 with a zone, and not the epoch a missing date would give.
    t = datetime.datetime.fromisoformat(element.text.replace('Z', '+00:00'))
    assert t.tzinfo is not None and t.year >= 2020, element.text
def link(element):
    assert element.get('href'), 'link without href'
assert TAG.match(feed.find(A + 'id').text), feed.find(A + 'id').text
when(feed.find(A + 'updated'))
for l in feed.findall(A + 'link'):
    link(l)
ids = {feed.find(A + 'id').text}
print(feed.find(A + 'title').text)
for entry in feed.findall(A + 'entry'):
    for required in ('id', 'title', 'updated', 'content', 'link'):
        assert entry.find(A + required) is not None, 'entry without ' + required
    assert entry.find(A + 'content').get('type') == 'html'
    entry_id = entry.find(A + 'id').text
    assert TAG.match(entry_id) and entry_id not in ids, entry_id
    ids.add(entry_id)
    when(entry.find(A + 'updated'))
    when(entry.find(A + 'published'))
    link(entry.find(A + 'link'))
    print(entry.find(A + 'title').text)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(xml.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "not Atom: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn staff_write_news_that_shows_per_language_and_in_the_atom_feed() {
    for_each_engine(false, |app| async move {
        let mut staff = staff_client(&app, "news@example.org").await;
        let mut visitor = app.client();
        assert_eq!(parse_atom(&visitor.get("/news/atom.xml").await.body).len(), 1);
        // A bad form keeps what was typed and says what is wrong.
        let r = staff
            .post(
                "/staff/news",
                &[
                    ("published", "someday"),
                    ("title_en", ""),
                    ("body_en", "Typed <text> & kept"),
                    ("title_de", "Nur ein Titel"),
                ],
            )
            .await;
        r.assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["Enter a date as YYYY-MM-DD.", "Enter a title.", "Typed <text> & kept", "Nur ein Titel", "Enter the text."],
        );
        assert_eq!(visitor.get("/news").await.body.matches("<article").count(), 0);
        for (day, title, vi) in [
            ("2026-11-30", "Older news", None),
            ("2026-12-02", "New <b>servers</b> & more", Some("Máy chủ mới")),
        ] {
            let mut fields = vec![
                ("published", day),
                ("title_en", title),
                ("body_en", "Welcome.\n\nSee [the list](https://example.org/x?a=1&b=2) and <script>alert(1)</script>."),
            ];
            if let Some(vi) = vi {
                fields.push(("title_vi", vi));
                fields.push(("body_vi", "Chào mừng."));
            }
            let r = staff.post("/staff/news", &fields).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        }
        // The front page: newest first, the markup's HTML, the rest escaped
        // (read as sent: `body` is the text as a browser shows it).
        let page = visitor.get("/news").await;
        assert!(page.body.find("New <b>servers</b>").expect("newest") < page.body.find("Older news").expect("older"));
        let home = visitor.get("/").await;
        home.assert(StatusCode::OK, &["Older news", "All news"]);
        for r in [&page, &home] {
            for sent in [
                "New &lt;b&gt;servers&lt;",
                "&lt;script&gt;alert(1)&lt;",
                "<a href=\"https://example.org/x?a=1&amp;b=2\" rel=\"nofollow\">the list</a>",
            ] {
                assert!(r.raw.contains(sent), "{sent} not in {}", r.raw);
            }
            assert!(!r.raw.contains("<script>alert"), "{}", r.raw);
            assert!(!r.raw.contains("<b>servers"), "{}", r.raw);
        }
        // (Pages are read unescaped here; the feed is not: its HTML
        // content is escaped once by the markup and once as XML.)
        let feed = visitor.get("/news/atom.xml").await.body;
        assert!(feed.contains("&amp;lt;script&amp;gt;alert(1)"), "{feed}");
        assert!(!feed.contains("&lt;script"), "markup let a script through: {feed}");
        // Vietnamese readers get the Vietnamese text, others fall back to English.
        visitor.get("/vi/").await.assert(StatusCode::OK, &["Máy chủ mới", "Older news"]);
        visitor.get("/de/news").await.assert(StatusCode::OK, &["New <b>servers</b> & more"]);
        let titles = parse_atom(&visitor.get("/news/atom.xml").await.body);
        assert_eq!(titles[1..], ["New <b>servers</b> & more", "Older news"]);
        let vi_feed = visitor.get("/vi/news/atom.xml").await.body;
        let titles = parse_atom(&vi_feed);
        assert_eq!(titles[1..], ["Máy chủ mới", "Older news"]);
        // Each language's feed has its own ids (a reader of two feeds
        // must not take one item for the other).
        assert!(vi_feed.contains(",2026:news/vi</id>"), "{vi_feed}");
        assert!(feed.contains(",2026:news/en</id>"), "{feed}");
        assert!(!feed.contains(",2026:news/vi"), "{feed}");
        // Deleting needs the confirmation box, and is audited.
        let list = staff.get("/staff/news").await;
        let id: i64 = list
            .body
            .split("/staff/news/")
            .filter_map(|t| t.split('"').next()?.parse().ok())
            .max()
            .expect("an item id");
        let path = format!("/staff/news/{id}/delete");
        assert_eq!(staff.post(&path, &[]).await.status, StatusCode::BAD_REQUEST);
        staff
            .post(&path, &[("confirm", "yes")])
            .await
            .assert(StatusCode::OK, &["Deleted."]);
        assert!(!visitor.get("/news").await.body.contains("Máy chủ mới") );
        staff
            .get("/staff/audit")
            .await
            .assert(StatusCode::OK, &["news.create", "news.delete"]);
        // Operators cannot write news.
        let mut operator = app.client();
        operator.signup("not-staff@example.org").await;
        let r = operator
            .post("/staff/news", &[("published", "2026-12-01"), ("title_en", "x"), ("body_en", "y")])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn odd_language_paths_are_refused_plainly() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        assert_eq!(
            c.get("/de//example.org/use").await.status,
            StatusCode::NOT_FOUND
        );
        // The language list reflects the query, escaped (read as sent; a
        // raw `"` never gets this far: it is not a URI character), and
        // only while it is short.
        let r = c.get("/vi/zone/europe?x='/onmouseover=alert(1)&y=2").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.raw.contains(
                "&#x2f;de&#x2f;zone&#x2f;europe?x=&#x27;&#x2f;onmouseover=alert(1)&amp;y=2"
            ),
            "{}",
            r.raw
        );
        assert!(!r.raw.contains("?x='"), "{}", r.raw);
        let long = format!("/vi/zone/europe?x={}", "a".repeat(300));
        let r = c.get(&long).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.raw.contains(&"a".repeat(300)), "a long query is copied");
        assert!(r.body.contains("href=\"/de/zone/europe\""), "{}", r.body);
        // A page shown for a POST (a form with errors) links the other
        // languages' front pages: its own URL has no GET.
        let r = c
            .post(
                "/de/signup",
                &[("email", "not-an-address"), ("password", "x")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(
            r.body.contains("hreflang=\"vi\" href=\"/vi/\""),
            "{}",
            r.body
        );
        assert!(!r.body.contains("href=\"/vi/signup\""), "{}", r.body);
        // A page without a prefix varies by the language headers; every
        // page says its language.
        let r = c.get("/zone/europe").await;
        let vary = r
            .headers
            .get("vary")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(vary.contains("Accept-Language"), "Vary: {vary}");
        let r = c.get("/ja/zone/europe").await;
        assert_eq!(
            r.headers
                .get("content-language")
                .and_then(|v| v.to_str().ok()),
            Some("ja")
        );
        // A 404 under a prefix is in that language.
        let r = c.get("/de//example.org/use").await;
        assert!(r.body.contains("<html lang=\"de\""), "{}", r.body);
        // The API and the snapshot do not vary by language.
        let r = c.get("/api/v1/zones").await;
        assert!(
            r.headers
                .get("vary")
                .is_none_or(|v| !v.to_str().unwrap_or("").contains("Accept-Language"))
        );
    })
    .await;
}

#[tokio::test]
async fn pages_in_a_language_keep_the_site_s_headers() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("headers@example.org").await;
        for path in ["/de/manage", "/vi/login", "/de/", "/xx/nothing"] {
            let r = c.get(path).await;
            let header = |name: &str| {
                r.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            assert!(
                header("content-security-policy").contains("frame-ancestors 'none'"),
                "{path}"
            );
            assert_eq!(header("x-frame-options"), "DENY", "{path}");
            if path != "/de/" && path != "/xx/nothing" {
                assert_eq!(
                    header("cache-control"),
                    "no-store",
                    "{path}: private pages are not kept"
                );
            }
        }
        // The language's own redirect has them too.
        let r = app
            .client()
            .request_with("GET", "/", None, &[("accept-language", "ja")])
            .await;
        assert_eq!(r.location(), "/ja/");
        assert!(r.headers.get("content-security-policy").is_some());
    })
    .await;
}
