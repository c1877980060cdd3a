//! HTML templates (web/templates/), embedded in the binary at build time.

use std::sync::LazyLock;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};

use super::error::AppError;
use super::i18n;
use crate::control::timefmt;

/// (name, source) of every template.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../web/templates/base.html"),
    ),
    (
        "macros.html",
        include_str!("../../../web/templates/macros.html"),
    ),
    (
        "error.html",
        include_str!("../../../web/templates/error.html"),
    ),
    (
        "home.html",
        include_str!("../../../web/templates/home.html"),
    ),
    (
        "zone.html",
        include_str!("../../../web/templates/zone.html"),
    ),
    (
        "scores.html",
        include_str!("../../../web/templates/scores.html"),
    ),
    ("use.html", include_str!("../../../web/templates/use.html")),
    (
        "join.html",
        include_str!("../../../web/templates/join.html"),
    ),
    (
        "signup.html",
        include_str!("../../../web/templates/signup.html"),
    ),
    (
        "login.html",
        include_str!("../../../web/templates/login.html"),
    ),
    (
        "invite.html",
        include_str!("../../../web/templates/invite.html"),
    ),
    (
        "manage.html",
        include_str!("../../../web/templates/manage.html"),
    ),
    (
        "server.html",
        include_str!("../../../web/templates/server.html"),
    ),
    (
        "users.html",
        include_str!("../../../web/templates/users.html"),
    ),
    (
        "delete_login.html",
        include_str!("../../../web/templates/delete_login.html"),
    ),
    (
        "login_settings.html",
        include_str!("../../../web/templates/login_settings.html"),
    ),
    (
        "no_account.html",
        include_str!("../../../web/templates/no_account.html"),
    ),
    (
        "user_remove.html",
        include_str!("../../../web/templates/user_remove.html"),
    ),
    (
        "vendor.html",
        include_str!("../../../web/templates/vendor.html"),
    ),
    (
        "staff_servers.html",
        include_str!("../../../web/templates/staff_servers.html"),
    ),
    (
        "verify_server.html",
        include_str!("../../../web/templates/verify_server.html"),
    ),
    (
        "staff_accounts.html",
        include_str!("../../../web/templates/staff_accounts.html"),
    ),
    (
        "staff_monitors.html",
        include_str!("../../../web/templates/staff_monitors.html"),
    ),
    (
        "staff_monitor.html",
        include_str!("../../../web/templates/staff_monitor.html"),
    ),
    (
        "staff_vendor.html",
        include_str!("../../../web/templates/staff_vendor.html"),
    ),
    (
        "staff_audit.html",
        include_str!("../../../web/templates/staff_audit.html"),
    ),
    (
        "staff_nodes.html",
        include_str!("../../../web/templates/staff_nodes.html"),
    ),
    (
        "news.html",
        include_str!("../../../web/templates/news.html"),
    ),
    (
        "vendors.html",
        include_str!("../../../web/templates/vendors.html"),
    ),
    (
        "terms.html",
        include_str!("../../../web/templates/terms.html"),
    ),
    (
        "staff_mail.html",
        include_str!("../../../web/templates/staff_mail.html"),
    ),
    (
        "reset_request.html",
        include_str!("../../../web/templates/reset_request.html"),
    ),
    (
        "reset_password.html",
        include_str!("../../../web/templates/reset_password.html"),
    ),
    (
        "staff_news.html",
        include_str!("../../../web/templates/staff_news.html"),
    ),
];

pub const STYLE_CSS: &str = include_str!("../../../web/static/style.css");

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(err) = env.add_template(name, source) {
            // A broken template is a build mistake; the test suite renders
            // every page, so this shows up there first.
            tracing::error!(template = name, error = %err, "template does not parse");
        }
    }
    env.add_filter("datetime", |ts: Option<i64>| {
        ts.map(timefmt::human).unwrap_or_default()
    });
    // Dates and numbers in the request's language (i18n).
    env.add_filter("date", |ts: Option<i64>| {
        ts.map(|ts| i18n::current().date(ts)).unwrap_or_default()
    });
    env.add_filter("isodate", |ts: Option<i64>| {
        ts.map(timefmt::date).unwrap_or_default()
    });
    env.add_filter("num", |v: Option<i64>| {
        v.map(|v| i18n::current().integer(v)).unwrap_or_default()
    });
    env.add_filter("fixed", |v: Option<f64>, digits: Option<usize>| {
        v.map(|v| i18n::current().fixed(v, digits.unwrap_or(1)))
            .unwrap_or_default()
    });
    env.add_filter("netspeed", |v: Option<i64>| {
        v.map(super::servers::netspeed_label).unwrap_or_default()
    });
    env.add_filter("ms", |v: Option<f64>| {
        v.map(|v| format!("{} ms", i18n::current().fixed(v * 1000.0, 3)))
            .unwrap_or_default()
    });
    env.add_function("_", translate);
    // A word that is data (a status, a continent's name): translated when
    // the catalogue has it, and escaped like any value.
    env.add_function("word", |text: &str| {
        i18n::current().translate(text).to_string()
    });
    env.add_function("url", |path: &str| i18n::url(path));
    env.add_function("languages", || {
        Value::from(minijinja::value::Serde(i18n::alternates()))
    });
    env.add_function("default_page", i18n::default_page);
    env.add_function("action_notice", super::notice::current);
    env.add_function("lang", || {
        let l = i18n::current();
        minijinja::context! { code => l.code, tag => l.tag, dir => l.dir, english => l.is_english() }
    });
    env
});

pub fn render(name: &str, ctx: minijinja::Value) -> Result<String, AppError> {
    let template = ENV
        .get_template(name)
        .map_err(|e| AppError::Internal(format!("template {name}: {e}")))?;
    template
        .render(ctx)
        .map_err(|e| AppError::Internal(format!("rendering {name}: {e:#}")))
}

/// The error page; falls back to bare HTML if even the template fails.
pub fn render_error(status: u16, title: &str, message: &str) -> String {
    let ctx = minijinja::context! { status, title, message };
    render("error.html", ctx).unwrap_or_else(|_| {
        format!("<!doctype html><title>{status}</title><h1>{status}</h1><p>Error.</p>")
    })
}

/// `_("text with {name}", name=value)` in templates: the message in the
/// request's language. Messages of templates are HTML of our own (the
/// catalogue check holds translations to the English tags, and to no more
/// `"` than the English has: some are used in attributes); the values are
/// escaped (unless marked `|safe`), and integers are written the
/// language's way.
fn translate(msgid: &str, kwargs: Kwargs) -> Result<Value, Error> {
    let language = i18n::current();
    let text = language.translate(msgid);
    let mut values = Vec::new();
    for name in kwargs.args() {
        let value: Value = kwargs.get(name)?;
        let shown = if value.is_safe() {
            value.to_string()
        } else if let Some(n) = value.as_i64().filter(|_| value.is_integer()) {
            language.integer(n)
        } else {
            escape_html(&value.to_string())
        };
        values.push((name, shown));
    }
    kwargs.assert_all_used()?;
    for name in i18n::placeholders(text) {
        if !values.iter().any(|(n, _)| *n == name) {
            return Err(Error::new(
                ErrorKind::MissingArgument,
                format!("message {msgid:?} needs a value for {{{name}}}"),
            ));
        }
    }
    Ok(Value::from_safe_string(i18n::fill(text, &values)))
}

/// `&<>"'` as entities, for HTML text and attributes (and XML).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// Every file in web/templates/ is compiled in (a page whose template
    /// was left out answers 500 at run time, not at build time).
    #[test]
    fn every_template_file_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/templates");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("web/templates") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".html") && !super::TEMPLATES.iter().any(|(n, _)| *n == name) {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "not in TEMPLATES: {missing:?}");
    }
}
