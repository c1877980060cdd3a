//! Shared test harness for the web tests: a fresh database per test on
//! SQLite, and on PostgreSQL too when TIMEPOOL_TEST_PG_URL is set
//! (scripts/pg-test-cluster.sh start), plus a small cookie-keeping client
//! that drives the router in process.
#![allow(dead_code)]

pub mod processes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use timepool::control::db::Db;
use timepool::control::web::{AppState, Settings, router};
use tower::ServiceExt;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Whether a test's outside component must be there: the variable is
/// `1` (scripts/test.sh sets every `TIMEPOOL_*_REQUIRED` so, and CI runs
/// it), so a missing PostgreSQL, Chromium or SMTP server fails the test
/// instead of skipping it. Any other value, or none, lets it skip.
pub fn required(variable: &str) -> bool {
    std::env::var(variable).as_deref() == Ok("1")
}

/// Database URLs to run a test against, each a fresh empty database:
/// SQLite, and PostgreSQL when TIMEPOOL_TEST_PG_URL is set (required with
/// TIMEPOOL_PG_REQUIRED=1).
pub async fn database_urls() -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(unique("timepool_test"));
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}/timepool.db?mode=rwc", dir.display()),
    )];
    if let Ok(admin_url) = std::env::var("TIMEPOOL_TEST_PG_URL")
        && !admin_url.is_empty()
    {
        urls.push(("postgres", fresh_pg_database(&admin_url).await));
    } else {
        assert!(
            !required("TIMEPOOL_PG_REQUIRED"),
            "TIMEPOOL_PG_REQUIRED=1 but TIMEPOOL_TEST_PG_URL is not set (scripts/pg-test-cluster.sh start)"
        );
    }
    urls
}

async fn fresh_pg_database(admin_url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = unique("tp");
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
        .await
        .expect("connect to TIMEPOOL_TEST_PG_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
    format!("{base}/{name}{query}")
}

pub fn settings(url: &str, allow_loopback: bool) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: url.to_string(),
        origin: "pool.example.org".to_string(),
        community_url: "https://community.example.org/".to_string(),
        allow_loopback,
        // Tests add documentation and public addresses: nothing is sent
        // to them (tests/web_join_check.rs turns the check on).
        join_check: None,
        // Servers are verified in tests/web_ownership.rs; elsewhere an
        // account adds what it needs at once.
        unverified_netspeed_max: None,
        secure_cookies: false,
        smtp_url: None,
        smtp_ca_file: None,
        mail_from: "timepool test <noreply@pool.example.org>".to_string(),
        site_url: "http://timepool.test".to_string(),
        // Tests read counts right after changing servers.
        counts_cache_secs: 0,
        geoip: None,
        check_schedule: Default::default(),
        tls: None,
        internal_listen: None,
        trusted_proxies: Vec::new(),
        limits: timepool::control::web::Limits::default(),
        require_node_tokens: false,
        alerts: Default::default(),
        selector: Default::default(),
    }
}

/// One app on one database.
pub struct TestApp {
    pub engine: &'static str,
    pub db: Db,
    pub router: Router,
    pub state: AppState,
}

impl TestApp {
    pub fn client(&self) -> Client {
        Client {
            db: self.db.clone(),
            router: self.router.clone(),
            cookies: HashMap::new(),
        }
    }
}

/// Runs `body` once per engine with a fresh database each time.
pub async fn for_each_engine<F, Fut>(allow_loopback: bool, body: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for_each_engine_with_geo(allow_loopback, false, body).await
}

/// The same, with the project's test GeoIP database placing new servers
/// when `with_geo` is set.
pub async fn for_each_engine_with_geo<F, Fut>(allow_loopback: bool, with_geo: bool, body: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_engines(|_| {}, allow_loopback, with_geo, body).await
}

/// The same with settings changed by `configure`. Requests may say which
/// peer address they come from in an `x-test-peer` header (the app sees
/// it as the connection's address).
pub async fn for_each_engine_configured<F, Fut>(configure: impl Fn(&mut Settings), body: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_engines(configure, false, false, body).await
}

/// Middleware of the configured apps: `x-test-peer` -> `ConnectInfo`.
async fn test_peer(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .headers()
        .get("x-test-peer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<std::net::SocketAddr>().ok());
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    next.run(request).await
}

async fn run_engines<F, Fut>(
    configure: impl Fn(&mut Settings),
    allow_loopback: bool,
    with_geo: bool,
    body: F,
) where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (engine, url) in database_urls().await {
        let db = Db::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{engine}: connect {url}: {e}"));
        let mut settings = settings(&url, allow_loopback);
        configure(&mut settings);
        let mut state = AppState::new(db.clone(), settings);
        if with_geo {
            let database = timepool::shared::geo::testdata::write_test_database();
            state = state.with_geo(
                timepool::shared::geo::GeoTable::from_bytes(database, "test database")
                    .expect("test GeoIP"),
            );
        }
        let router = router(state.clone()).layer(axum::middleware::from_fn(test_peer));
        eprintln!("--- engine: {engine}");
        body(TestApp {
            engine,
            db: db.clone(),
            router,
            state,
        })
        .await;
        db.pool.close().await;
        // The SQLite file's directory goes with the test (PostgreSQL test
        // databases go with the throwaway cluster).
        if let Some(dir) = url
            .strip_prefix("sqlite://")
            .and_then(|rest| std::path::Path::new(rest.split('?').next()?).parent())
            && dir.starts_with(std::env::temp_dir())
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    /// The text as a browser shows it (HTML entities decoded).
    pub body: String,
    /// The bytes as sent, for checks of escaping.
    pub raw: String,
}

impl Response {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[track_caller]
    pub fn assert(&self, status: StatusCode, contains: &[&str]) -> &Response {
        assert_eq!(self.status, status, "body: {}", self.body);
        for needle in contains {
            assert!(
                self.body.contains(needle),
                "missing {needle:?} in body:\n{}",
                self.body
            );
        }
        self
    }
}

/// A browser-like client: keeps cookies, fills the CSRF field.
pub struct Client {
    /// The app's database: the mails a test follows wait in its queue.
    db: Db,
    router: Router,
    pub cookies: HashMap<String, String>,
}

pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Client {
    pub async fn request(&mut self, method: &str, path: &str, body: Option<String>) -> Response {
        self.request_with(method, path, body, &[]).await
    }

    /// A request with extra headers.
    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if !self.cookies.is_empty() {
            builder = builder.header(header::COOKIE, cookie_line(&self.cookies));
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body)),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(header::SET_COOKIE) {
            let text = value.to_str().expect("cookie text");
            let pair = text.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || text.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let mut body = raw.clone();
        if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
        {
            // Assertions read the text as a browser shows it.
            body = html_unescape(&body);
        }
        Response {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, None).await
    }

    /// The CSRF token a form shown to this client now carries (it is
    /// bound to the session, so it changes at login and logout).
    pub async fn csrf_token(&mut self) -> String {
        let page = self.get("/login").await;
        csrf_in(&page.body).unwrap_or_else(|| panic!("no csrf field in:\n{}", page.body))
    }

    /// POSTs a form with this client's CSRF token added.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let csrf = self.csrf_token().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &csrf));
        self.request("POST", path, Some(form_encode(&all))).await
    }

    /// POSTs a form with this client's CSRF token and extra headers.
    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Response {
        let csrf = self.csrf_token().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &csrf));
        self.request_with("POST", path, Some(form_encode(&all)), headers)
            .await
    }

    /// POSTs without adding the CSRF field.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.request("POST", path, Some(form_encode(fields))).await
    }

    /// Signs up a new operator, confirms the address by the mailed link
    /// and stays logged in.
    pub async fn signup(&mut self, email: &str) {
        self.signup_unconfirmed(email).await;
        let link = mailed_link(&self.db, email, "/verify/").await;
        let r = self.get(&link).await;
        assert_eq!(
            r.location(),
            "/manage?done=email-verified",
            "verify {email}"
        );
    }

    /// Signs up a new operator (the address not confirmed yet).
    pub async fn signup_unconfirmed(&mut self, email: &str) {
        let r = self
            .post(
                "/signup",
                &[
                    ("email", email),
                    ("password", "correct horse battery"),
                    ("password2", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "signup {email}: {}",
            r.body
        );
    }

    /// Adds a server and returns its id, found in the account's list.
    pub async fn add_server(&mut self, address: &str, zone: &str) -> i64 {
        let r = self
            .post(
                "/manage/servers",
                &[
                    ("address", address),
                    ("zone", zone),
                    ("netspeed", "1000000"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "add {address}: {}", r.body);
        let list = self.get("/manage").await;
        let canonical = address
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| address.to_string());
        server_id_in(&list.body, &canonical)
            .unwrap_or_else(|| panic!("{address} not listed:\n{}", list.body))
    }
}

/// A `Cookie` header's value.
fn cookie_line(cookies: &HashMap<String, String>) -> String {
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The value of the hidden `csrf` field of a page.
pub fn csrf_in(body: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

/// Finds `/manage/servers/{id}` in the row of `address` on the list page.
pub fn server_id_in(body: &str, address: &str) -> Option<i64> {
    let at = body.find(&format!(">{address}<"))?;
    let rest = &body[at..];
    let start = rest.find("/manage/servers/")? + "/manage/servers/".len();
    let digits: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Creates a staff user directly in the database; returns a logged-in client.
pub async fn staff_client(app: &TestApp, email: &str) -> Client {
    let hash = timepool::control::web::session::hash_password("staff password 123").expect("hash");
    let mut tx = app.db.begin().await.expect("begin");
    let staff =
        timepool::control::db::accounts::create_account_with_user(&mut tx, email, &hash, "staff")
            .await
            .expect("staff");
    timepool::control::db::accounts::mark_verified(&mut tx, staff.id)
        .await
        .expect("verified");
    tx.commit().await.expect("commit");
    let mut client = app.client();
    let r = client
        .post(
            "/login",
            &[("email", email), ("password", "staff password 123")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "staff login: {}", r.body);
    client
}

/// The entities minijinja's HTML escaping produces.
pub fn html_unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

// ---- The real binary ------------------------------------------------------

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `timepool web` and returns it with the port it listens on.
pub fn start_web(args: &[&str], envs: &[(&str, &str)]) -> (Child, u16) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timepool"));
    cmd.arg("web").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    start_web_command(cmd)
}

/// `start_web` for a command the caller prepared (`timepool web ...`).
pub fn start_web_command(mut cmd: Command) -> (Child, u16) {
    cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn timepool web");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(at) = line
            .find("listen=127.0.0.1:")
            .or_else(|| line.find("listen\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:"))
        {
            let rest = &line[at..];
            let after = &rest[rest.find("127.0.0.1:").expect("addr") + "127.0.0.1:".len()..];
            let port: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, port.parse().expect("port"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("timepool web did not report its listening address");
}

pub fn sigterm_and_wait(mut child: Child) {
    // SAFETY: kill(2) with a PID we spawned and own; no memory is touched.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timepool web did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response of the real binary, read to the end (`Connection: close`).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        html_unescape(&String::from_utf8_lossy(&self.body))
    }

    /// The (name, value) of every Set-Cookie.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, plain text.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    if let Some(body) = body {
        stream.write_all(body.as_bytes()).expect("send body");
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    parse_http(&raw)
}

fn parse_http(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")),
        "chunked bodies are not read here"
    );
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A browser against a running binary: keeps cookies, fills in the CSRF
/// token the forms carry.
pub struct Browser {
    pub port: u16,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(port: u16) -> Browser {
        Browser {
            port,
            cookies: HashMap::new(),
        }
    }

    /// The same cookies, sent to another instance.
    pub fn at(&self, port: u16) -> Browser {
        Browser {
            port,
            cookies: self.cookies.clone(),
        }
    }

    fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        let cookie = cookie_line(&self.cookies);
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            Vec::new()
        } else {
            vec![("Cookie", cookie.as_str())]
        };
        let response = http(self.port, method, path, &headers, body);
        for (name, value) in response.cookies() {
            if value.is_empty() {
                self.cookies.remove(&name);
            } else {
                self.cookies.insert(name, value);
            }
        }
        response
    }

    pub fn get(&mut self, path: &str) -> HttpResponse {
        self.send("GET", path, None)
    }

    /// The CSRF token of the forms this browser is shown now.
    pub fn csrf_token(&mut self) -> String {
        let page = self.get("/login");
        csrf_in(&page.text()).expect("a csrf field on /login")
    }

    /// POSTs a form with `token`, or this browser's own token when `None`.
    pub fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        token: Option<String>,
    ) -> HttpResponse {
        let token = token.unwrap_or_else(|| self.csrf_token());
        let mut all = fields.to_vec();
        all.push(("csrf", &token));
        let body = form_encode(&all);
        self.send("POST", path, Some(&body))
    }
}

/// The path of the link in the latest mail to `recipient` that starts
/// with `prefix` (`/invite/`), the tests' site URL taken off: mail is off
/// in the tests, so the mail waits in the queue with its text.
pub async fn mailed_link(db: &Db, recipient: &str, prefix: &str) -> String {
    let body: String = sqlx::query_scalar(
        "SELECT body FROM mail_queue WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(recipient.to_ascii_lowercase())
    .fetch_one(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("no mail to {recipient}: {e}"));
    body.split("http://timepool.test")
        .find(|rest| rest.starts_with(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {prefix} link in the mail to {recipient}: {body}"))
        .to_string()
}

/// A monitor made active by staff; returns its id and token.
pub async fn active_monitor(db: &timepool::control::db::Db, name: &str) -> (i64, String) {
    let mut tx = db.begin().await.expect("tx");
    let (id, token) = timepool::control::db::monitors::create(&mut tx, name)
        .await
        .expect("monitor");
    tx.commit().await.expect("commit");
    sqlx::query("UPDATE monitors SET state = 'active' WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .expect("active");
    (id, token)
}
