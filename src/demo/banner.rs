//! What the demo prints at start.

use super::seed::STATE_FILE;
use super::{Demo, ORIGIN};

impl Demo {
    /// What the demo prints at start: where everything is, the logins, what
    /// to try, and the simulated servers.
    pub fn banner(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let dns_ip = self.dns_address.ip();
        let dns_port = self.dns_address.port();
        let dig = format!("dig @{dns_ip} -p {dns_port}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "timepool demo is running ({} data in {}). Ctrl-C stops it.",
            if self.fresh { "new" } else { "reused" },
            self.data_dir.display()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "  web app      http://{}/", self.web_address);
        let _ = writeln!(
            out,
            "  DNS          {dns_ip} port {dns_port}, UDP and TCP, origin {ORIGIN}"
        );
        let _ = writeln!(out, "  web metrics  http://{}/metrics", self.web_address);
        if let Some(metrics) = self.dns_metrics_address {
            let _ = writeln!(out, "  DNS metrics  http://{metrics}/metrics");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Logins (demo only; kept in {STATE_FILE}):");
        for login in &self.logins {
            let _ = writeln!(
                out,
                "  {:<9} {:<20} {}",
                login.role, login.email, login.password
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Three monitors watch the servers: the selector pairs each server with them,"
        );
        let _ = writeln!(
            out,
            "and an active pair checks every {} s (the pool: every 9 minutes).",
            self.check_schedule.active_interval
        );
        let _ = writeln!(
            out,
            "{} has its clock 50 ms off its reference: it submits nothing and",
            super::fixtures::SKEWED_MONITOR
        );
        let _ = writeln!(
            out,
            "/staff/monitors shows why. A new server's pairs start as candidates and"
        );
        let _ = writeln!(
            out,
            "testing, so a healthy server reaches score 10 (about 14 checks) and is in"
        );
        let _ = writeln!(out, "DNS within about two minutes; the others never are.");

        let _ = writeln!(out);
        let _ = writeln!(out, "Try:");
        let tries = [
            (
                format!("{dig} pool.ntp.org"),
                "the global zone (loopback has no location)",
            ),
            (
                format!("{dig} pool.ntp.org +subnet=85.214.1.0/24"),
                "a client in Germany (ECS): German servers",
            ),
            (
                format!("{dig} pool.ntp.org +subnet=126.0.0.0/24"),
                "a client in Japan",
            ),
            (
                format!("{dig} 2.pool.ntp.org AAAA +subnet=85.214.1.0/24"),
                "IPv6 (only 2.* names answer AAAA)",
            ),
            (format!("{dig} de.pool.ntp.org"), "an explicit zone"),
            (
                format!("{dig} _country.pool.ntp.org TXT +subnet=81.2.69.0/24"),
                "how a client was located",
            ),
        ];
        for (command, what) in tries {
            let _ = writeln!(out, "  {command:<58} # {what}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Simulated NTP servers (UDP port {} on each address; score pages at http://{}/scores/ADDRESS):",
            self.ntp_port, self.web_address
        );
        let _ = writeln!(
            out,
            "  {:<12} {:<5} {:>9}  {:<36} in DNS",
            "address", "zone", "netspeed", "simulates"
        );
        for (server, _) in &self.responders {
            let _ = writeln!(
                out,
                "  {:<12} {:<5} {:>9}  {:<36} {}",
                server.address.to_string(),
                server.zone,
                server.netspeed,
                server.simulates,
                if server.expected_in_dns {
                    "yes, within ~2 min"
                } else {
                    "never"
                }
            );
        }
        out
    }
}
