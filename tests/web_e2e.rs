//! End-to-end in headless Chromium (Debian's `chromium`): sign up, add a
//! server, see it in the list, open its score page; screenshots of the main
//! pages go to test-output/e2e/.
//!
//! Chromium is driven over the DevTools protocol on `--remote-debugging-pipe`
//! (JSON messages separated by NUL on file descriptors 3 and 4), so the test
//! needs no extra crate and no network. Skipped, with a note, when chromium is
//! not installed, unless TIMEPOOL_E2E_REQUIRED=1.

mod web_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use web_support::{sigterm_and_wait, start_web};

fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_string_lossy()
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
        })
}

/// A Chromium process and its DevTools pipe.
struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Events that arrived while waiting for a reply.
    events: Vec<Value>,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    (fds[0], fds[1])
}

impl Browser {
    fn launch(binary: &Path, profile: &Path) -> Browser {
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let mut cmd = Command::new(binary);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec we only call fcntl and dup2, which are
        // async-signal-safe. The pipe ends are first moved above fd 10 so that
        // placing them at 3 and 4 cannot clobber one another (or be a no-op
        // dup2 that would keep O_CLOEXEC); fds made by dup2 do not inherit it.
        unsafe {
            cmd.pre_exec(move || {
                let reads = libc::fcntl(browser_reads, libc::F_DUPFD, 10);
                let writes = libc::fcntl(browser_writes, libc::F_DUPFD, 10);
                if reads < 0 || writes < 0 || libc::dup2(reads, 3) < 0 || libc::dup2(writes, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        // SAFETY: these fds are ours alone from here on; closing the child's
        // ends in the parent lets us see EOF when chromium exits.
        unsafe {
            libc::close(browser_reads);
            libc::close(browser_writes);
        }
        // SAFETY: we_write is an open fd owned by nothing else.
        let to_browser = unsafe { std::fs::File::from_raw_fd(we_write) };
        // SAFETY: as above, for we_read.
        let mut reader = unsafe { std::fs::File::from_raw_fd(we_read) };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(value) =
                        serde_json::from_slice::<Value>(&message[..message.len() - 1])
                        && tx.send(value).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
            session: None,
            events: Vec::new(),
        }
    }

    /// Sends a DevTools command and waits for its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params) {
            Ok(result) => result,
            Err(err) => panic!("{method} failed: {err}"),
        }
    }

    /// Like `call`, but a DevTools error is returned, not a panic (while a
    /// page navigates, "Execution context was destroyed" is expected).
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no reply to {method}"));
            if reply["id"] == json!(id) {
                if let Some(err) = reply.get("error") {
                    return Err(err.clone());
                }
                return Ok(reply["result"].clone());
            }
            self.events.push(reply);
        }
    }

    /// Opens a page target and attaches to it (flat session mode).
    fn open_tab(&mut self) {
        let target = self.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        );
        self.call("Page.enable", json!({}));
        self.call("Runtime.enable", json!({}));
    }

    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("script failed: {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until the page at `path_and_query` (prefix) has loaded.
    fn wait_for(&mut self, path_prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // During a navigation the old page's context goes away under
            // the evaluation: that is "not there yet", not a failure. The
            // page we navigate away from is marked (`leave`), so a form
            // that comes back to the same path is not taken for loaded.
            let state = self
                .try_call(
                    "Runtime.evaluate",
                    json!({
                        "expression": "(window.__tpLeaving ? 'leaving' : location.pathname + location.search) + '|' + document.readyState",
                        "returnByValue": true,
                    }),
                )
                .ok()
                .filter(|result| result.get("exceptionDetails").is_none())
                .and_then(|result| result["result"]["value"].as_str().map(str::to_string))
                .unwrap_or_default();
            if state.starts_with(path_prefix) && state.ends_with("|complete") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page never reached {path_prefix}: {state}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Mark the current document as the one being left.
    fn leave(&mut self) {
        self.eval("window.__tpLeaving = true; true");
    }

    fn goto(&mut self, base: &str, path: &str) {
        self.leave();
        self.call("Page.navigate", json!({ "url": format!("{base}{path}") }));
        self.wait_for(path.split('?').next().unwrap_or(path));
    }

    fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Fills form fields by CSS selector (as typing would) and clicks `submit`.
    fn fill_and_submit(&mut self, fields: &HashMap<&str, &str>, submit: &str) {
        for (selector, value) in fields {
            let script = format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) throw new Error('no ' + {sel}); e.value = {val}; return true; }})()",
                sel = json!(selector),
                val = json!(value)
            );
            self.eval(&script);
        }
        self.leave();
        self.eval(&format!(
            "document.querySelector({}).click(); true",
            json!(submit)
        ));
    }

    fn screenshot(&mut self, dir: &Path, name: &str) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let data = base64_decode(shot["data"].as_str().expect("png data"));
        assert!(data.starts_with(b"\x89PNG"), "{name} is a PNG");
        std::fs::write(dir.join(name), data).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().filter(|c| **c == b'=').count();
        let n = chunk.iter().fold(0u32, |acc, c| (acc << 6) | value(*c)) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad.max(4 - chunk.len())]);
    }
    out
}

/// Writes a monitor's checks every 15 minutes over two days, and the
/// server's overall score, straight into the database the server uses.
/// The path of the `prefix` link in the latest mail to `recipient` (mail
/// is off here: it waits in the queue, as staff see it on /staff/mail).
fn mailed_path(url: &str, recipient: &str, prefix: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let db = timepool::control::db::Db::connect(url)
            .await
            .expect("connect");
        let mails = timepool::control::db::mail::recent(&db, 10)
            .await
            .expect("queue");
        db.pool.close().await;
        let mail = mails
            .iter()
            .find(|m| m.recipient == recipient)
            .expect("a mail");
        let at = mail
            .body
            .find(prefix)
            .unwrap_or_else(|| panic!("no {prefix} link in {}", mail.body));
        mail.body[at..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

fn seed_history(url: &str, address: &str) {
    use timepool::control::db::scores::{self, Check};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let db = timepool::control::db::Db::connect(url)
            .await
            .expect("connect");
        let server = timepool::control::db::servers::get_by_address(&db, address)
            .await
            .expect("q")
            .expect("server");
        let mut tx = db.begin().await.expect("begin");
        let (monitor_id, _) = timepool::control::db::monitors::create(&mut tx, "e2e-monitor")
            .await
            .expect("monitor");
        let start = timepool::control::db::now() - 2 * 86_400;
        let mut score = -5.0f64;
        for i in 0..192i64 {
            let ts = start + i * 900;
            // A wobble of a few ms, and an outage in the middle.
            let outage = (90..100).contains(&i);
            let offset = ((i as f64) / 7.0).sin() * 0.004;
            let step = if outage { -5.0 } else { 1.0 };
            score = score * 0.95 + step;
            let check = Check {
                server_id: server.id,
                monitor_id,
                ts,
                offset: (!outage).then_some(offset),
                rtt: (!outage).then_some(0.012),
                stratum: Some(2),
                leap: Some(0),
                error: outage.then(|| "no response".to_string()),
                step,
                score,
                good_point: true,
            };
            scores::record_check(&mut tx, &check).await.expect("check");
            scores::set_server_score(&mut tx, server.id, score, ts)
                .await
                .expect("score");
        }
        tx.commit().await.expect("commit");
        db.pool.close().await;
    });
}

#[test]
fn base64_round_trip() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}

#[test]
fn browser_sign_up_add_server_and_see_its_score_page() {
    let Some(chromium) = find_chromium() else {
        assert!(
            !web_support::required("TIMEPOOL_E2E_REQUIRED"),
            "chromium is required but not installed"
        );
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium)");
        return;
    };
    let work = std::env::temp_dir().join(format!("timepool_e2e_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-output/e2e");
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    let data_dir = work.join("data").to_string_lossy().to_string();
    // The NTP server the operator adds: the web app asks it the time
    // before it joins (the join check).
    // (A worker thread: the responder answers while the test drives the
    // browser.)
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ntp = runtime
        .block_on(timepool::shared::ntp::responder::Responder::start(
            "127.0.0.1:0".parse().expect("addr"),
            timepool::shared::ntp::responder::Behaviour::Offset {
                offset: 0.001,
                stratum: 2,
            },
        ))
        .expect("NTP responder");
    let ntp_port = ntp.local_addr().port().to_string();
    let (server, port) = start_web(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--join-check-port",
            &ntp_port,
            "--allow-loopback",
            "--origin",
            "pool.example.org",
        ],
        &[],
    );
    let base = format!("http://127.0.0.1:{port}");
    let mut browser = Browser::launch(&chromium, &work.join("profile"));
    browser.open_tab();

    browser.goto(&base, "/");
    assert!(browser.text().contains("Active servers"));
    browser.screenshot(&shots, "01-home.png");

    // Sign up through the form; a bad password first shows the message.
    browser.goto(&base, "/signup");
    let mut fields = HashMap::from([
        ("#f-email", "e2e@example.net"),
        ("#f-password", "short"),
        ("#f-password2", "short"),
    ]);
    browser.fill_and_submit(&fields, "form.card button[type=submit]");
    browser.wait_for("/signup");
    assert!(browser.text().contains("at least 10 characters"));
    browser.screenshot(&shots, "02-signup-error.png");
    fields.insert("#f-password", "e2e password 123");
    fields.insert("#f-password2", "e2e password 123");
    browser.fill_and_submit(&fields, "form.card button[type=submit]");
    browser.wait_for("/manage");
    let page = browser.text();
    assert!(page.contains("No servers yet"), "{page}");
    assert!(page.contains("Confirm your address"), "{page}");

    // Follow the link of the confirmation mail (waiting in the queue:
    // this instance has no SMTP server).
    let database = format!("sqlite://{data_dir}/timepool.db");
    let link = mailed_path(&database, "e2e@example.net", "/verify/");
    browser.leave();
    browser.call("Page.navigate", json!({ "url": format!("{base}{link}") }));
    browser.wait_for("/manage?done=email-verified");
    let page = browser.text();
    assert!(page.contains("Your address is confirmed."), "{page}");
    browser.screenshot(&shots, "02b-address-confirmed.png");

    // Add a server: loopback is allowed on this instance.
    let add = HashMap::from([("#f-address", "127.0.0.1"), ("#f-zone", "de")]);
    browser.fill_and_submit(&add, "form.card button[type=submit]");
    browser.wait_for("/manage?added=1");
    let list = browser.text();
    assert!(
        list.contains("127.0.0.1") && list.contains("de, europe, @") && list.contains("new"),
        "{list}"
    );
    browser.screenshot(&shots, "03-my-servers.png");

    // Verify it the pool's way: its page gives a one-time URL, fetched
    // from the server's own address (127.0.0.1, where this test runs).
    browser.leave();
    browser.eval("document.querySelector('a[href^=\"/manage/servers/\"]').click(); true");
    browser.wait_for("/manage/servers/");
    let server_page = browser
        .eval("location.pathname")
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(browser.text().contains("not yet"));
    browser.leave();
    browser.eval("document.querySelector('form[action$=\"/verify\"] button').click(); true");
    browser.wait_for(&format!("{server_page}/verify"));
    let page = browser.text();
    browser.screenshot(&shots, "03b-verify-url.png");
    // (The page names the site by --site-url; the path is what counts.)
    let token = page
        .split("/verify-server/")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '\'').next())
        .unwrap_or_else(|| panic!("no verification URL in:\n{page}"));
    let path = format!("/verify-server/{token}");
    let fetched = web_support::http(port, "GET", &path, &[], None);
    assert_eq!(
        (
            fetched.status,
            String::from_utf8_lossy(&fetched.body).trim()
        ),
        (200, "127.0.0.1 is verified.")
    );
    browser.goto(&base, &server_page);
    assert!(!browser.text().contains("not yet"), "{}", browser.text());
    browser.goto(&base, "/manage");

    // A 300-character address is refused, shown, and wrapped: the page
    // stays as wide as the window.
    let long = "a".repeat(300);
    let add_long = HashMap::from([("#f-address", long.as_str()), ("#f-zone", "de")]);
    browser.fill_and_submit(&add_long, "form.card button[type=submit]");
    browser.wait_for("/manage");
    assert!(browser.text().contains("neither an IP address"));
    let widths = browser.eval("[document.documentElement.scrollWidth, window.innerWidth]");
    let (page_width, window_width) = (widths[0].as_u64(), widths[1].as_u64());
    assert!(
        page_width.is_some() && page_width <= window_width,
        "page {page_width:?} px wide in a {window_width:?} px window"
    );

    // The same page on a phone-sized screen.
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
    );
    browser.screenshot(&shots, "04-my-servers-mobile.png");
    browser.call("Emulation.clearDeviceMetricsOverride", json!({}));

    // Give it two days of measurements (as the ingest of issue 6 will) so
    // the score page has a graph to show.
    seed_history(&format!("sqlite://{data_dir}/timepool.db"), "127.0.0.1");

    // Its score page, by the link in the list.
    browser.leave();
    browser.eval("document.querySelector('a[href=\"/scores/127.0.0.1\"]').click(); true");
    browser.wait_for("/scores/127.0.0.1");
    let page = browser.text();
    assert!(
        page.contains("Monitors") && page.contains("Score"),
        "{page}"
    );
    let graph_loaded = browser.eval(
        "new Promise(r => { const i = document.querySelector('figure.graph img'); \
         if (i.complete) r(i.naturalWidth); else { i.onload = () => r(i.naturalWidth); i.onerror = () => r(0); } })",
    );
    assert!(
        graph_loaded.as_u64().unwrap_or(0) > 0,
        "the SVG graph loads"
    );
    browser.screenshot(&shots, "05-score-page.png");

    browser.goto(&base, "/zone/de");
    assert!(browser.text().contains("0.de.pool.example.org"));
    browser.screenshot(&shots, "06-zone-de.png");
    browser.goto(&base, "/zone/@");
    browser.screenshot(&shots, "07-zone-global.png");
    browser.goto(&base, "/join");
    browser.screenshot(&shots, "08-join.png");
    browser.goto(&base, "/no/such/page");
    assert!(browser.text().contains("Not found"));
    browser.screenshot(&shots, "09-not-found.png");

    // The site in its users' languages (issue 16): the home page in
    // Vietnamese and Chinese (scripts/test.sh installs the CJK fonts), the
    // manage page in German.
    for (path, lang, shot) in [
        ("/vi/", "vi", "10-home-vi.png"),
        ("/zh/", "zh-CN", "11-home-zh.png"),
        ("/de/manage", "de", "12-manage-de.png"),
    ] {
        browser.goto(&base, path);
        let shown = browser.eval("document.documentElement.lang");
        assert_eq!(shown.as_str(), Some(lang), "{path}");
        browser.screenshot(&shots, shot);
    }
    let manage = browser.text();
    assert!(manage.contains("Meine Server"), "{manage}");
    assert!(!manage.contains("Add a server"), "{manage}");

    // A forgotten password: a new browser state, the link on the login
    // page, the mail (waiting in the queue), a new password, a login.
    browser.call("Network.clearBrowserCookies", json!({}));
    browser.goto(&base, "/login");
    browser.leave();
    browser.eval("document.querySelector('a[href=\"/reset\"]').click(); true");
    browser.wait_for("/reset");
    let asked = HashMap::from([("#f-email", "e2e@example.net")]);
    browser.fill_and_submit(&asked, "form.card button[type=submit]");
    browser.wait_for("/reset");
    let page = browser.text();
    assert!(page.contains("is on its way"), "{page}");
    let link = mailed_path(&database, "e2e@example.net", "/reset/");
    browser.goto(&base, &link);
    browser.screenshot(&shots, "13-new-password.png");
    let new_password = "a new e2e password";
    let chosen = HashMap::from([
        ("#f-password", new_password),
        ("#f-password2", new_password),
    ]);
    browser.fill_and_submit(&chosen, "form.card button[type=submit]");
    browser.wait_for("/login?done=password-changed");
    let page = browser.text();
    assert!(page.contains("Your password is changed"), "{page}");
    let login = HashMap::from([
        ("#f-email", "e2e@example.net"),
        ("#f-password", new_password),
    ]);
    browser.fill_and_submit(&login, "form.card button[type=submit]");
    browser.wait_for("/manage");
    let page = browser.text();
    assert!(
        page.contains("127.0.0.1"),
        "logged in with the new password: {page}"
    );

    drop(browser);
    sigterm_and_wait(server);
    let _ = std::fs::remove_dir_all(&work);
}
