//! Writing the Prometheus text exposition format (version 0.0.4), for the
//! `/metrics` endpoints of the DNS daemon and the web app. Just the text:
//! no registry, no global state; each endpoint gathers its numbers and
//! writes them here on every scrape.

use std::fmt::Write;

/// The Content-Type of a scrape response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metrics page being written.
#[derive(Default)]
pub struct Page {
    text: String,
}

impl Page {
    /// Start a metric family: its HELP and TYPE lines (`counter`, `gauge`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` are (name, value) pairs, values escaped here.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_families_and_escaped_labels() {
        let mut page = super::Page::default();
        page.family("x_total", "counter", "Things.")
            .sample("x_total", &[("route", "/a\"b")], 3.0)
            .sample("x_total", &[], 0.5);
        assert_eq!(
            page.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{route=\"/a\\\"b\"} 3\nx_total 0.5\n"
        );
    }
}
