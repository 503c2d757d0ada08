//! [`Browser`]: headless Chromium driven through `chromedriver` (WebDriver,
//! with `fantoccini`), for the tests of the operator console and the
//! subscriber portal.
//!
//! Each [`Browser`] starts its own `chromedriver` on a free port of
//! 127.0.0.1 as a child process (ended by its pid on drop, after its
//! session is deleted so that Chromium goes with it) and one headless
//! Chromium session in it, at 1280×900 ([`Viewport::Desktop`]) or as a
//! 390×844 phone ([`Viewport::Phone`], device metrics through Chromium's
//! mobile emulation, so the page gets a real 390 px wide viewport). The
//! browser reaches nothing but 127.0.0.1: every other address goes to a
//! proxy that does not exist.
//!
//! Without `chromium` or `chromedriver` on the machine (or with
//! `HOOKRELAY_TEST_BROWSER=off`), [`Browser::start`] answers `None`, and
//! the test passes as skipped; the first one prints once why (`.ci/run`
//! installs both, so CI always runs them).
//!
//! Helpers: `goto`, `fill`, `click`, `submit` (click and wait for the next
//! page), waits on a selector's text with a deadline (never a fixed
//! sleep), cookies, and [`Browser::screenshot`], a full-page PNG saved
//! under `target/ui-screenshots/<name>.png` whose width is checked against
//! the viewport's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::sleep;

/// How long a page may take to show what a test waits for.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(15);
/// How long `chromedriver` may take to answer `/status`.
const DRIVER_DEADLINE: Duration = Duration::from_secs(20);
/// The browser's program and its driver, as Debian installs them.
const CHROMIUM: &str = "chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// The window a [`Browser`] renders into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewport {
    /// 1280×900, a laptop.
    Desktop,
    /// 390×844 at pixel ratio 1, a phone (mobile emulation).
    Phone,
}

impl Viewport {
    pub fn width(self) -> u32 {
        match self {
            Viewport::Desktop => 1280,
            Viewport::Phone => 390,
        }
    }

    pub fn height(self) -> u32 {
        match self {
            Viewport::Desktop => 900,
            Viewport::Phone => 844,
        }
    }
}

/// Where `program` is, looked up in `PATH` (then `/usr/bin`).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Set to `off` to skip the browser tests on a machine that has a browser.
pub const BROWSER_ENV: &str = "HOOKRELAY_TEST_BROWSER";

/// Why the browser tests cannot run on this machine, or `None` when
/// `chromium` and `chromedriver` are both there (and [`BROWSER_ENV`] is
/// not `off`). Looked up once.
pub fn browser_missing() -> Option<&'static str> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let setting = std::env::var(BROWSER_ENV).unwrap_or_default();
            if matches!(setting.trim(), "off" | "0" | "false" | "no") {
                return Some(format!("{BROWSER_ENV}={setting}"));
            }
            let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
                .into_iter()
                .filter(|p| find_program(p).is_none())
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "{} not found (Debian: apt-get install chromium chromium-driver)",
                    missing.join(" and ")
                )
            })
        })
        .as_deref()
}

/// Prints, once per test binary, that the browser tests are skipped and
/// why; straight to stderr so the harness's capture does not swallow it.
fn announce_skip(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "hookrelay tests: browser tests (ui::*, portal::*) skipped: {reason}"
        );
    });
}

/// Whether this process runs as root (Chromium then needs `--no-sandbox`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The capabilities of a headless Chromium session at `viewport`, kept
/// off every network but the loopback.
fn capabilities(viewport: Viewport) -> Capabilities {
    let mut args = vec![
        "--headless=new".to_string(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-features=Translate,OptimizationHints,MediaRouter".into(),
        "--hide-scrollbars".into(),
        // Loopback bypasses proxies; everything else meets a closed port.
        "--proxy-server=http://127.0.0.1:9".into(),
        format!("--window-size={},{}", viewport.width(), viewport.height()),
    ];
    if running_as_root() {
        args.push("--no-sandbox".into());
    }
    let mut options = json!({ "args": args });
    if let Some(binary) = find_program(CHROMIUM) {
        options["binary"] = json!(binary);
    }
    if viewport == Viewport::Phone {
        options["mobileEmulation"] = json!({
            "deviceMetrics": {
                "width": viewport.width(),
                "height": viewport.height(),
                "pixelRatio": 1,
                "mobile": true,
                "touch": true,
            }
        });
    }
    let mut caps = Capabilities::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    caps
}

/// One blocking HTTP/1.1 request to 127.0.0.1:`port` (short timeouts);
/// the whole answer, or `None` when nothing answered.
fn local_http(port: u16, method: &str, path: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    // chromedriver keeps the connection open: read as far as Content-Length says.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if http_answer_complete(&answer) {
            break;
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether `answer` holds a whole HTTP/1.1 answer (headers, then as many
/// body bytes as its Content-Length says; none when it says nothing).
fn http_answer_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    answer.len() >= end + 4 + length
}

/// A free TCP port on 127.0.0.1 (bound, then released for the driver).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port on 127.0.0.1")
}

/// A `chromedriver` child process; on drop its session is deleted (which
/// ends Chromium) and the driver is killed by its pid.
struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
    log_path: PathBuf,
}

impl Driver {
    /// `chromedriver --port=<free port>`, once it answers `/status` as
    /// ready; a few tries in case another process took the port first.
    async fn start(log_dir: &Path) -> Driver {
        let mut last_error = String::new();
        for attempt in 1..=3 {
            let port = free_port();
            let log_path = log_dir.join(format!("chromedriver-{attempt}.log"));
            let log = std::fs::File::create(&log_path).expect("create chromedriver log");
            let child = Command::new(find_program(CHROMEDRIVER).expect("chromedriver found"))
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn chromedriver");
            let mut driver = Driver {
                child,
                port,
                session: None,
                log_path,
            };
            match driver.wait_until_ready().await {
                Ok(()) => return driver,
                Err(e) => last_error = e,
            }
        }
        panic!("chromedriver did not start: {last_error}");
    }

    /// Polls `/status` until it says ready, the driver exits, or the deadline.
    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "chromedriver on port {} exited with {status}: {}",
                    self.port,
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                ));
            }
            let port = self.port;
            let answer = actix_rt::task::spawn_blocking(move || local_http(port, "GET", "/status"))
                .await
                .ok()
                .flatten();
            if answer.is_some_and(|a| a.contains("\"ready\":true")) {
                return Ok(());
            }
            if started.elapsed() > DRIVER_DEADLINE {
                return Err(format!(
                    "chromedriver on port {} not ready within {DRIVER_DEADLINE:?}",
                    self.port
                ));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = local_http(self.port, "DELETE", &format!("/session/{session}"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chrome DevTools Protocol command sent through chromedriver
/// (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// The directory screenshots go to: `target/ui-screenshots` of this
/// package, or of `CARGO_TARGET_DIR` when that is set (at run time, else
/// at build time).
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .map(|t| if t.is_relative() { manifest.join(t) } else { t })
        .unwrap_or_else(|| manifest.join("target"));
    target.join("ui-screenshots")
}

/// Width and height of a PNG, read from its IHDR chunk.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&png[16..20]), be(&png[20..24])))
}

/// A headless Chromium session of its own `chromedriver`.
pub struct Browser {
    client: Client,
    pub viewport: Viewport,
    /// Holds chromedriver's log; kept when a test fails.
    dir: Option<tempfile::TempDir>,
    /// Dropped last: deletes the session and ends the driver.
    driver: Driver,
}

impl Browser {
    /// A 1280×900 browser, or `None` (test skipped) without one here.
    pub async fn desktop() -> Option<Browser> {
        Self::start(Viewport::Desktop).await
    }

    /// A 390×844 phone browser, or `None` (test skipped) without one here.
    pub async fn phone() -> Option<Browser> {
        Self::start(Viewport::Phone).await
    }

    /// A browser at `viewport`; `None`, after saying once why, when this
    /// machine has no `chromium` or no `chromedriver`.
    pub async fn start(viewport: Viewport) -> Option<Browser> {
        if let Some(reason) = browser_missing() {
            announce_skip(reason);
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("hookrelay-browser-")
            .tempdir()
            .expect("tempdir");
        let mut driver = Driver::start(dir.path()).await;
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities(viewport))
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no Chromium session from chromedriver: {e}\n{}",
                    std::fs::read_to_string(&driver.log_path).unwrap_or_default()
                )
            });
        driver.session = client.session_id().await.ok().flatten();
        let browser = Browser {
            client,
            viewport,
            dir: Some(dir),
            driver,
        };
        if viewport == Viewport::Desktop {
            browser
                .client
                .set_window_size(viewport.width(), viewport.height())
                .await
                .expect("set the window size");
        }
        Some(browser)
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page's load event.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The address of the page now shown.
    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// The path (and query) of the page now shown.
    pub async fn current_path(&self) -> String {
        match self.client.current_url().await {
            Ok(u) => match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            },
            Err(_) => String::new(),
        }
    }

    /// The visible text of the whole page (for failure messages).
    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// What a failure message shows of the page: its address and text.
    async fn context(&self) -> String {
        let text = self.page_text().await;
        let cut: String = text.chars().take(1500).collect();
        format!("page {}:\n{cut}", self.current_url().await)
    }

    /// The element `css` selects on the page now shown, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.client.find(Locator::Css(css)).await.ok()
    }

    /// The element `css` selects; panics with the page's text when absent.
    pub async fn find(&self, css: &str) -> Element {
        match self.try_find(css).await {
            Some(e) => e,
            None => panic!("no element {css:?} on the {}", self.context().await),
        }
    }

    /// Every element `css` selects.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    /// The text of the element `css` selects (panics when absent).
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// The value of attribute `name` of the element `css` selects.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.ok().flatten()
    }

    /// Types `value` into the field `css` selects, replacing what it held.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clearing {css:?}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("typing into {css:?}: {e}"));
    }

    /// Chooses the option with `value` in the `select` that `css` selects.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing {value:?} in {css:?}: {e}"));
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css:?}: {e}"));
    }

    /// Marks the document now shown, so that [`Browser::still_same_document`]
    /// can tell whether it has been replaced (a navigation or reload).
    pub async fn mark_document(&self) {
        self.execute("window.__hookrelayMark = true; return true;", vec![])
            .await;
    }

    /// Whether the document marked by [`Browser::mark_document`] is still the one shown.
    pub async fn still_same_document(&self) -> bool {
        self.client
            .execute("return window.__hookrelayMark === true;", vec![])
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// Clicks `css` (a submit button or a link) and waits until the next
    /// page has replaced this one and finished loading; answers its path.
    pub async fn submit(&self, css: &str) -> String {
        self.mark_document().await;
        self.click(css).await;
        let started = Instant::now();
        loop {
            let replaced = !self.still_same_document().await;
            if replaced {
                let complete = self
                    .client
                    .execute("return document.readyState;", vec![])
                    .await
                    .ok()
                    .is_some_and(|v| v == "complete");
                if complete {
                    return self.current_path().await;
                }
            }
            if started.elapsed() > PAGE_DEADLINE {
                panic!(
                    "clicking {css:?} did not lead to another page within {PAGE_DEADLINE:?}; {}",
                    self.context().await
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page (its `return` value as JSON).
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Waits until the text of the element `css` selects satisfies `cond`
    /// (polling, without reloading the page); answers that text.
    pub async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        let mut last = None;
        loop {
            if let Some(element) = self.try_find(css).await
                && let Ok(text) = element.text().await
            {
                if cond(text.trim()) {
                    return text.trim().to_string();
                }
                last = Some(text);
            }
            if started.elapsed() > PAGE_DEADLINE {
                panic!(
                    "waited {PAGE_DEADLINE:?} until {what} ({css:?}, last text {last:?}); {}",
                    self.context().await
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` is exactly `expected` (trimmed).
    pub async fn wait_for_text_eq(&self, css: &str, expected: &str) -> String {
        self.wait_for_text(css, &format!("{css} reads {expected:?}"), |t| t == expected)
            .await
    }

    /// Waits until the text of `css` contains `part`, ignoring case.
    pub async fn wait_for_text_contains(&self, css: &str, part: &str) -> String {
        let lower = part.to_lowercase();
        self.wait_for_text(css, &format!("{css} contains {part:?}"), |t| {
            t.to_lowercase().contains(&lower)
        })
        .await
    }

    /// Waits for `p#flash`, what the page says a POST action did, and
    /// asserts that it reports a success (not `p#flash.error`); answers
    /// its text.
    pub async fn wait_for_flash_ok(&self) -> String {
        let flash = self.wait_for_element("p#flash").await;
        let class = flash.attr("class").await.ok().flatten().unwrap_or_default();
        let text = flash.text().await.unwrap_or_default();
        assert!(
            !class.split_whitespace().any(|c| c == "error"),
            "the action failed: {text:?}; {}",
            self.context().await
        );
        text
    }

    /// Waits until `css` selects something; answers it.
    pub async fn wait_for_element(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            if started.elapsed() > PAGE_DEADLINE {
                panic!(
                    "waited {PAGE_DEADLINE:?} for {css:?}; {}",
                    self.context().await
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads the text of `css` over and over, without reloading, until it
    /// is exactly `last` or `deadline` passes; answers each distinct
    /// text in the order seen (to show a page's live refresh).
    pub async fn watch_text(&self, css: &str, last: &str, deadline: Duration) -> Vec<String> {
        let started = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            if let Some(element) = self.try_find(css).await
                && let Ok(text) = element.text().await
            {
                let text = text.trim().to_string();
                if seen.last() != Some(&text) {
                    seen.push(text.clone());
                }
                if text == last {
                    return seen;
                }
            }
            if started.elapsed() > deadline {
                panic!(
                    "waited {deadline:?} until {css:?} reads {last:?}; it read {seen:?}; {}",
                    self.context().await
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the asynchronous `script` in the page: its last argument is
    /// the callback that answers.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute_async(script, args)
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// `name=value` of the cookie `name`, for a `Cookie` header; panics
    /// when the browser has no such cookie.
    pub async fn cookie_header(&self, name: &str) -> String {
        let cookie = self
            .cookie(name)
            .await
            .unwrap_or_else(|| panic!("the browser has no cookie {name}"));
        format!("{}={}", cookie.name(), cookie.value())
    }

    /// The cookie `name` the browser holds for the page now shown.
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name() == name)
    }

    /// Signs in on the sign-in page at `url` (console `/ui/` or portal
    /// `/portal/`) with `token`; answers the path of the page it leads to.
    pub async fn sign_in(&self, url: &str, token: &str) -> String {
        self.goto(url).await;
        self.find("form#sign-in").await;
        self.fill("input#token", token).await;
        self.submit("button#sign-in-button").await
    }

    /// A full-page PNG of what is shown, saved as
    /// `target/ui-screenshots/<name>.png`; checks that it is as wide as
    /// the viewport. Answers the file's path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.png().await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
        path
    }

    /// The visible elements that reach past the right edge of the
    /// viewport (cut off, or making the page scroll sideways), as
    /// `tag#id.class`; those inside a container that scrolls sideways on
    /// purpose (`overflow-x: auto|scroll`, e.g. a wide table) are left out.
    pub async fn cut_off_elements(&self) -> Vec<String> {
        let found = self
            .execute(
                "const width = document.documentElement.clientWidth;
                 const scrolls = e => {
                   for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
                     const o = getComputedStyle(a).overflowX;
                     if (o === 'auto' || o === 'scroll') return true;
                   }
                   return false;
                 };
                 const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                   + (typeof e.className === 'string' && e.className
                      ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
                 const out = [];
                 for (const e of document.body.querySelectorAll('*')) {
                   const r = e.getBoundingClientRect();
                   if (r.width === 0 || r.height === 0) continue;
                   if (r.right > width + 1 && !scrolls(e)) out.push(name(e));
                 }
                 return out;",
                vec![],
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A full-page PNG of what is shown, checked to be as wide as the viewport.
    pub async fn png(&self) -> Vec<u8> {
        let png = self.full_page_png().await;
        let (width, height) =
            png_size(&png).unwrap_or_else(|| panic!("Chromium did not answer a PNG"));
        assert_eq!(
            width,
            self.viewport.width(),
            "a screenshot of {} is {width}×{height} px, not {} px wide",
            self.current_url().await,
            self.viewport.width()
        );
        png
    }

    /// The whole page (beyond the viewport's height) as a PNG, through
    /// the DevTools protocol; the viewport alone when that fails.
    async fn full_page_png(&self) -> Vec<u8> {
        let height = self
            .client
            .execute(
                "return Math.ceil(Math.max(document.documentElement.scrollHeight, \
                 document.body ? document.body.scrollHeight : 0, window.innerHeight));",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(u64::from(self.viewport.height()))
            .min(8000);
        let params = json!({
            "format": "png",
            "captureBeyondViewport": true,
            "clip": {
                "x": 0, "y": 0, "scale": 1,
                "width": self.viewport.width(),
                "height": height,
            }
        });
        let cdp = Cdp {
            cmd: "Page.captureScreenshot",
            params,
        };
        let full = self.client.issue_cmd(cdp).await.ok().and_then(|v| {
            let data = v["data"].as_str()?.to_string();
            base64::engine::general_purpose::STANDARD.decode(data).ok()
        });
        match full {
            Some(png) => png,
            None => self
                .client
                .screenshot()
                .await
                .unwrap_or_else(|e| panic!("screenshot: {e}")),
        }
    }

    /// Ends the session (and with it Chromium) and the driver now;
    /// dropping does the same without waiting.
    pub async fn close(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.driver.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "(test failed: kept chromedriver's log in {})",
                kept.display()
            );
        }
    }
}
