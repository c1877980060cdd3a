//! HTML templates (web/templates/), embedded in the binary at build time.

use std::sync::LazyLock;

use minijinja::Environment;

use super::error::AppError;
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
        "vendor.html",
        include_str!("../../../web/templates/vendor.html"),
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
    env.add_filter("date", |ts: Option<i64>| {
        ts.map(timefmt::date).unwrap_or_default()
    });
    env.add_filter("fixed", |v: Option<f64>, digits: Option<usize>| {
        v.map(|v| format!("{v:.*}", digits.unwrap_or(1)))
            .unwrap_or_default()
    });
    env.add_filter("ms", |v: Option<f64>| {
        v.map(|v| format!("{:.3} ms", v * 1000.0))
            .unwrap_or_default()
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
