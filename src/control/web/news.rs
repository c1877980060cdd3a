//! News: staff write items (per language, English required), the front
//! page shows the latest, `/news` all of them, `/news/atom.xml` the feed.
//! The text is a small markup (`markup`), turned into HTML here and only
//! here, so nothing staff type reaches a page unescaped.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

use super::account::actor;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::RowId;
use super::i18n::{self, LANGUAGES};
use super::session::{MaybeUser, StaffUser};
use super::{AppState, html};
use crate::control::db::accounts::User;
use crate::control::db::audit;
use crate::control::db::news::{self, NewsItem, NewsText};
use crate::control::timefmt;

/// Items on the front page, and in the feed.
pub const FRONT_PAGE_ITEMS: i64 = 3;
const FEED_ITEMS: i64 = 20;
/// Items on `/news` (the rest stay in the database).
const PAGE_ITEMS: i64 = 200;
/// The largest news form: ten languages of the longest title and text,
/// in 3-byte characters, percent-encoded (9 bytes each).
pub const FORM_LIMIT: usize = 1024 * 1024;
const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 8_000;
/// The longest URL a news link may have.
const MAX_LINK_URL: usize = 2_000;

/// An item as a page shows it, in the request's language.
#[derive(Serialize)]
pub struct NewsView {
    pub id: i64,
    pub published_at: i64,
    pub updated_at: i64,
    pub title: String,
    pub html: String,
}

/// The items in the current language (English where an item has none).
pub fn views(items: &[NewsItem]) -> Vec<NewsView> {
    let code = i18n::current().code;
    items
        .iter()
        .filter_map(|item| {
            let text = item.text_in(code)?;
            Some(NewsView {
                id: item.id,
                published_at: item.published_at,
                updated_at: item.updated_at,
                title: text.title.clone(),
                html: markup(&text.body),
            })
        })
        .collect()
}

/// The latest items for the front page.
pub async fn front_page(state: &AppState) -> Result<Vec<NewsView>, AppError> {
    Ok(views(&news::latest(&state.db, FRONT_PAGE_ITEMS).await?))
}

pub async fn list(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let news = views(&news::latest(&state.db, PAGE_ITEMS).await?);
    html(
        StatusCode::OK,
        "news.html",
        state.page(&user, &csrf, ctx! { news }),
    )
}

/// `/news/atom.xml` (and `/LANG/news/atom.xml`): an Atom feed (RFC 4287)
/// of the latest items in the request's language.
pub async fn atom(State(state): State<AppState>) -> Result<Response, AppError> {
    let items = views(&news::latest(&state.db, FEED_ITEMS).await?);
    let body = atom_feed(&state.settings.origin, &items);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        body,
    )
        .into_response())
}

fn atom_feed(origin: &str, items: &[NewsView]) -> String {
    let language = i18n::current();
    // tag: URIs (RFC 4151) give ids that stay the same wherever the site
    // is served from; each language's feed and entries are their own
    // (a reader subscribed to two must not take one for the other).
    let updated = items
        .iter()
        .map(|i| i.updated_at.max(i.published_at))
        .max()
        .unwrap_or_else(crate::control::db::now);
    let mut out = String::with_capacity(1024 + items.len() * 1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str(&format!(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"{}\">\n",
        language.tag
    ));
    out.push_str(&format!(
        "  <title>{}</title>\n",
        xml_escape(&format!("{origin}: {}", language.translate("News")))
    ));
    out.push_str(&format!(
        "  <id>tag:{},2026:news/{}</id>\n",
        xml_escape(origin),
        language.code
    ));
    out.push_str(&format!(
        "  <updated>{}</updated>\n",
        timefmt::rfc3339(updated)
    ));
    out.push_str(&format!(
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>\n",
        xml_escape(&i18n::url("/news/atom.xml"))
    ));
    out.push_str(&format!(
        "  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n",
        xml_escape(&i18n::url("/news"))
    ));
    out.push_str(&format!(
        "  <author><name>{}</name></author>\n",
        xml_escape(origin)
    ));
    for item in items {
        out.push_str("  <entry>\n");
        out.push_str(&format!(
            "    <id>tag:{},2026:news/{}/{}</id>\n",
            xml_escape(origin),
            language.code,
            item.id
        ));
        out.push_str(&format!("    <title>{}</title>\n", xml_escape(&item.title)));
        out.push_str(&format!(
            "    <published>{}</published>\n",
            timefmt::rfc3339(item.published_at)
        ));
        out.push_str(&format!(
            "    <updated>{}</updated>\n",
            timefmt::rfc3339(item.updated_at.max(item.published_at))
        ));
        out.push_str(&format!(
            "    <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n",
            xml_escape(&format!("{}#news-{}", i18n::url("/news"), item.id))
        ));
        out.push_str(&format!(
            "    <content type=\"html\">{}</content>\n",
            xml_escape(&item.html)
        ));
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}

/// Text for XML and HTML: escaped, without the characters XML 1.0
/// cannot carry (control characters, U+FFFE, U+FFFF).
fn xml_escape(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|&c| {
            (!c.is_control() || matches!(c, '\n' | '\r' | '\t'))
                && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
        })
        .collect();
    super::templates::escape_html(&clean)
}

/// The news markup as HTML: a blank line starts a paragraph, a single
/// newline breaks the line, `**bold**`, `*italic*` and `[text](https://...)`
/// links (http and https only). Everything else is text, escaped.
pub fn markup(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() * 5 / 4 + 16);
    let mut paragraph: Vec<&str> = Vec::new();
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        if !line.trim().is_empty() {
            paragraph.push(line.trim_end());
        }
        let ends = line.trim().is_empty() || lines.peek().is_none();
        if ends && !paragraph.is_empty() {
            out.push_str("<p>");
            out.push_str(&inline(&paragraph.join("\n")));
            out.push_str("</p>\n");
            paragraph.clear();
        }
    }
    out
}

/// Links, then emphasis in what is between them.
fn inline(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find('[') {
        let Some((label, url, consumed)) = link_at(&rest[start..]) else {
            out.push_str(&emphasis(&xml_escape(&rest[..start + 1])));
            rest = &rest[start + 1..];
            continue;
        };
        out.push_str(&emphasis(&xml_escape(&rest[..start])));
        out.push_str(&format!(
            "<a href=\"{}\" rel=\"nofollow\">{}</a>",
            xml_escape(url),
            emphasis(&xml_escape(label))
        ));
        rest = &rest[start + consumed..];
    }
    out.push_str(&emphasis(&xml_escape(rest)));
    out.replace('\n', "<br>\n")
}

/// `[label](url)` at the start of `text`: the label, the URL and the
/// length taken; only http(s) URLs without spaces or quotes. It looks no
/// further than the label's line and a URL's length, so a text full of
/// `[` costs linear time, not quadratic.
fn link_at(text: &str) -> Option<(&str, &str, usize)> {
    let close = 1 + text[1..].find(['[', ']', '\n'])?;
    let label = &text[1..close];
    if label.is_empty() || !text[close..].starts_with("](") {
        return None;
    }
    let after = &text[close + 2..];
    let end = after
        .char_indices()
        .take(MAX_LINK_URL + 1)
        .find(|&(_, c)| c == ')' || c.is_whitespace())
        .map(|(i, _)| i)
        .filter(|&i| after[i..].starts_with(')'))?;
    let url = &after[..end];
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    let clean =
        !url.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'<>`".contains(c));
    (scheme_ok && clean && url.len() > 8).then_some((label, url, close + 2 + end + 1))
}

/// `**bold**` and `*italic*` in already escaped text; unpaired marks stay.
/// Italics are found within each piece the bold marks leave, so the tags
/// always nest.
fn emphasis(escaped: &str) -> String {
    pair(escaped, "**", "strong", &|piece| {
        pair(piece, "*", "em", &|plain| plain.to_string())
    })
}

/// `text` with each `mark`...`mark` wrapped in `tag`, and `inner` applied
/// to every piece between the marks.
fn pair(text: &str, mark: &str, tag: &str, inner: &dyn Fn(&str) -> String) -> String {
    let parts: Vec<&str> = text.split(mark).collect();
    // An odd number of parts: every mark has its partner.
    if parts.len() < 3 || parts.len().is_multiple_of(2) {
        return inner(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && !part.is_empty() {
            out.push_str(&format!("<{tag}>{}</{tag}>", inner(part)));
        } else if i % 2 == 1 {
            out.push_str(mark);
            out.push_str(mark);
        } else {
            out.push_str(&inner(part));
        }
    }
    out
}

// ---- Staff pages ----

/// What the news form holds, as typed.
#[derive(Serialize, Default)]
struct NewsForm {
    published: String,
    texts: Vec<FormText>,
}

#[derive(Serialize)]
struct FormText {
    code: &'static str,
    tag: &'static str,
    name: &'static str,
    title: String,
    body: String,
}

impl NewsForm {
    fn from_item(item: Option<&NewsItem>) -> NewsForm {
        let text = |code: &str| item.and_then(|i| i.texts.iter().find(|t| t.language == code));
        NewsForm {
            published: timefmt::date(item.map_or_else(crate::control::db::now, |i| i.published_at)),
            texts: LANGUAGES
                .iter()
                .map(|l| FormText {
                    code: l.code,
                    tag: l.tag,
                    name: l.name,
                    title: text(l.code).map(|t| t.title.clone()).unwrap_or_default(),
                    body: text(l.code).map(|t| t.body.clone()).unwrap_or_default(),
                })
                .collect(),
        }
    }

    fn from_fields(fields: &HashMap<String, String>) -> NewsForm {
        let field = |name: String| fields.get(&name).cloned().unwrap_or_default();
        NewsForm {
            published: fields.get("published").cloned().unwrap_or_default(),
            texts: LANGUAGES
                .iter()
                .map(|l| FormText {
                    code: l.code,
                    tag: l.tag,
                    name: l.name,
                    title: field(format!("title_{}", l.code)),
                    body: field(format!("body_{}", l.code)),
                })
                .collect(),
        }
    }

    /// The date and texts, or a message per field.
    fn validate(&self) -> Result<(i64, Vec<NewsText>), BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let published = timefmt::parse_date(&self.published);
        if published.is_none() {
            errors.insert("published".into(), "Enter a date as YYYY-MM-DD.".into());
        }
        let mut texts = Vec::new();
        for text in &self.texts {
            let title = text.title.trim();
            let body = text.body.trim();
            let english = text.code == "en";
            if title.is_empty() && body.is_empty() && !english {
                continue;
            }
            if title.is_empty() {
                errors.insert(format!("title_{}", text.code), "Enter a title.".into());
            } else if title.chars().count() > MAX_TITLE_CHARS {
                errors.insert(
                    format!("title_{}", text.code),
                    format!("At most {MAX_TITLE_CHARS} characters."),
                );
            }
            if body.is_empty() {
                errors.insert(format!("body_{}", text.code), "Enter the text.".into());
            } else if body.chars().count() > MAX_BODY_CHARS {
                errors.insert(
                    format!("body_{}", text.code),
                    format!("At most {MAX_BODY_CHARS} characters."),
                );
            }
            texts.push(NewsText {
                language: text.code.to_string(),
                title: title.to_string(),
                body: body.to_string(),
            });
        }
        match (published, errors.is_empty()) {
            (Some(published), true) => Ok((published, texts)),
            _ => Err(errors),
        }
    }
}

/// A row of the staff list.
#[derive(Serialize)]
struct StaffRow {
    id: i64,
    published_at: i64,
    title: String,
    languages: Vec<String>,
}

/// What the staff page shows besides the list.
struct StaffView {
    status: StatusCode,
    /// The item being edited; `None`: the form writes a new one.
    editing: Option<i64>,
    form: NewsForm,
    errors: BTreeMap<String, String>,
    notice: Option<&'static str>,
}

impl StaffView {
    fn of(editing: Option<i64>, form: NewsForm) -> StaffView {
        StaffView {
            status: StatusCode::OK,
            editing,
            form,
            errors: BTreeMap::new(),
            notice: None,
        }
    }
}

async fn staff_render(
    state: &AppState,
    user: User,
    csrf: &CsrfToken,
    view: StaffView,
) -> Result<Response, AppError> {
    let items: Vec<StaffRow> = news::latest(&state.db, PAGE_ITEMS)
        .await?
        .into_iter()
        .map(|item| StaffRow {
            id: item.id,
            published_at: item.published_at,
            title: item
                .text_in("en")
                .map(|t| t.title.clone())
                .unwrap_or_default(),
            languages: item.texts.iter().map(|t| t.language.clone()).collect(),
        })
        .collect();
    let StaffView {
        status,
        editing,
        form,
        errors,
        notice,
    } = view;
    html(
        status,
        "staff_news.html",
        state.page(
            &Some(user),
            csrf,
            ctx! { items, form, errors, editing, notice },
        ),
    )
}

pub async fn staff_page(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let view = StaffView::of(None, NewsForm::from_item(None));
    staff_render(&state, user, &csrf, view).await
}

pub async fn staff_edit(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    let item = news::get(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let view = StaffView::of(Some(id), NewsForm::from_item(Some(&item)));
    staff_render(&state, user, &csrf, view).await
}

pub async fn staff_create(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    save(&state, user, &csrf, None, &fields).await
}

pub async fn staff_update(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
    RowId(id): RowId,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    save(&state, user, &csrf, Some(id), &fields).await
}

/// Creates (`editing` None) or replaces an item from the form; a bad form
/// is shown again with what was typed. The change and its audit line
/// commit together.
async fn save(
    state: &AppState,
    user: User,
    csrf: &CsrfToken,
    editing: Option<i64>,
    fields: &HashMap<String, String>,
) -> Result<Response, AppError> {
    let form = NewsForm::from_fields(fields);
    let (published, texts) = match form.validate() {
        Ok(valid) => valid,
        Err(errors) => {
            let view = StaffView {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errors,
                ..StaffView::of(editing, form)
            };
            return staff_render(state, user, csrf, view).await;
        }
    };
    let mut tx = state.db.begin().await?;
    let (id, action) = match editing {
        None => (
            news::create(&mut tx, published, Some(user.id), &texts).await?,
            "news.create",
        ),
        Some(id) => {
            if !news::update(&mut tx, id, published, &texts).await? {
                return Err(AppError::NotFound);
            }
            (id, "news.update")
        }
    };
    let languages: Vec<&str> = texts.iter().map(|t| t.language.as_str()).collect();
    audit::record(
        &mut tx,
        &actor(&user),
        action,
        &format!("news:{id}"),
        &languages.join(","),
    )
    .await?;
    tx.commit().await?;
    if editing.is_none() {
        return Ok(Redirect::to(&format!("/staff/news/{id}")).into_response());
    }
    let item = news::get(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let view = StaffView {
        notice: Some("Saved."),
        ..StaffView::of(Some(id), NewsForm::from_item(Some(&item)))
    };
    staff_render(state, user, csrf, view).await
}

pub async fn staff_delete(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
    RowId(id): RowId,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    if fields.get("confirm").map(String::as_str) != Some("yes") {
        return Err(AppError::BadRequest(
            "Tick the box to confirm the deletion.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    if !news::delete(&mut tx, id).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "news.delete",
        &format!("news:{id}"),
        "",
    )
    .await?;
    tx.commit().await?;
    let view = StaffView {
        notice: Some("Deleted."),
        ..StaffView::of(None, NewsForm::from_item(None))
    };
    staff_render(&state, user, &csrf, view).await
}

#[cfg(test)]
mod tests {
    use super::{MAX_BODY_CHARS, markup, xml_escape};

    #[test]
    fn markup_escapes_everything_but_its_own_marks() {
        let cases: &[(&str, &str)] = &[
            ("Hello", "<p>Hello</p>\n"),
            ("a\n\nb", "<p>a</p>\n<p>b</p>\n"),
            ("a\nb", "<p>a<br>\nb</p>\n"),
            (
                "<script>x</script> & \"q\"",
                "<p>&lt;script&gt;x&lt;/script&gt; &amp; &quot;q&quot;</p>\n",
            ),
            (
                "**bold** and *it*",
                "<p><strong>bold</strong> and <em>it</em></p>\n",
            ),
            ("2 * 3 = 6", "<p>2 * 3 = 6</p>\n"),
            (
                "see [the list](https://example.org/a?b=1&c=2)",
                "<p>see <a href=\"https://example.org/a?b=1&amp;c=2\" rel=\"nofollow\">the list</a></p>\n",
            ),
            (
                "[x](javascript:alert(1))",
                "<p>[x](javascript:alert(1))</p>\n",
            ),
            (
                "[x](https://a.example/\"onclick=)",
                "<p>[x](https://a.example/&quot;onclick=)</p>\n",
            ),
            (
                "[<b>](https://example.org)",
                "<p><a href=\"https://example.org\" rel=\"nofollow\">&lt;b&gt;</a></p>\n",
            ),
            ("\n\n  \n", ""),
            // Bold and italic at once nest properly.
            ("***x***", "<p><strong>*x</strong>*</p>\n"),
            ("**a *b* c**", "<p><strong>a <em>b</em> c</strong></p>\n"),
            // A label ends at its line; an URL at a space.
            (
                "[a\nb](https://example.org)",
                "<p>[a<br>\nb](https://example.org)</p>\n",
            ),
            (
                "[a](https://example.org x)",
                "<p>[a](https://example.org x)</p>\n",
            ),
            (
                "[[a](https://example.org)",
                "<p>[<a href=\"https://example.org\" rel=\"nofollow\">a</a></p>\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(markup(input), *want, "markup of {input:?}");
        }
    }

    #[test]
    fn markup_of_a_hostile_text_is_linear_and_escaped() {
        // 8 000 `[`s, and as many unfinished links: each `[` looks ahead
        // only to the next one.
        for text in [
            "[".repeat(MAX_BODY_CHARS),
            "[a](".repeat(MAX_BODY_CHARS / 4),
        ] {
            let html = markup(&text);
            assert!(!html.contains("<a "), "{}", &html[..80]);
        }
        assert_eq!(xml_escape("a\u{FFFE}b\u{1}c\u{FFFF}"), "abc");
    }
}
