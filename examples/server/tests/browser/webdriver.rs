//! Just enough of the W3C WebDriver protocol to drive headless Chromium
//! through chromedriver: open pages, fill and click, read text, run
//! script, take screenshots.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// A chromedriver process; it ends with this value.
pub(crate) struct Driver {
    process: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver (`CHROMEDRIVER`, default `/usr/bin/chromedriver`)
    /// on a free port.
    ///
    /// # Panics
    ///
    /// When chromedriver or Chromium is missing, saying how to install them.
    pub(crate) async fn start() -> Driver {
        let driver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        program("CHROME", "/usr/bin/chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let process = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {driver}: {error}"));
        let driver = Driver {
            process,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver.http.get(format!("{}/status", driver.base)).send();
            if let Ok(response) = ready.await {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser window with its own cookies.
    pub(crate) async fn session(&self) -> Session {
        let chrome = program("CHROME", "/usr/bin/chromium");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1100,900"]
            }
        }}});
        let created = call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.base),
            Some(capabilities),
        )
        .await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"));
        Session {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

/// One browser window.
pub(crate) struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    pub(crate) async fn open(&self, url: &str) {
        self.command("/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body) with `args`; returns its result.
    pub(crate) async fn run(&self, script: &str, args: Value) -> Value {
        self.command("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The text of the first element matching `css` (empty when none).
    pub(crate) async fn text(&self, css: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';";
        self.run(script, json!([css]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Types `value` into the field matching `css`, replacing its content.
    pub(crate) async fn fill(&self, css: &str, value: &str) {
        let element = self.element(css).await;
        self.command(&format!("/element/{element}/clear"), json!({}))
            .await;
        self.command(
            &format!("/element/{element}/value"),
            json!({ "text": value }),
        )
        .await;
    }

    /// Chooses `value` in the `<select>` matching `css`.
    /// Chooses `value` in a select, once it offers it (the page may fill
    /// its options after loading).
    pub(crate) async fn select(&self, css: &str, value: &str) {
        let script = "const select = document.querySelector(arguments[0]); \
             if (!select) return false; select.value = arguments[1]; \
             return select.value === arguments[1];";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.run(script, json!([css, value])).await != true {
            assert!(
                std::time::Instant::now() < deadline,
                "{css} never offered {value}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.command(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Waits until the text of `css` satisfies `wanted`; returns it.
    ///
    /// # Panics
    ///
    /// After `patience`, with the text last seen.
    pub(crate) async fn wait_for_text(
        &self,
        css: &str,
        patience: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let text = self.text(css).await;
            if wanted(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} still shows {text:?} after {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the window.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let url = format!("{}/screenshot", self.base);
        let png = call(&self.http, reqwest::Method::GET, &url, None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::write(path, bytes).expect("screenshot written");
    }

    pub(crate) async fn close(self) {
        call(&self.http, reqwest::Method::DELETE, &self.base, None).await;
    }

    async fn element(&self, css: &str) -> String {
        // Elements may appear a moment after the action that shows them.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({ "using": "css selector", "value": css }))
                .send()
                .await
                .expect("chromedriver answers");
            if found.status().is_success() {
                let body: Value = found.json().await.expect("JSON");
                let id = body["value"]
                    .as_object()
                    .and_then(|element| element.values().next())
                    .and_then(Value::as_str)
                    .expect("an element reference");
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element matches {css}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            Some(body),
        )
        .await
    }
}

/// One WebDriver request; its `value`, or a panic with the driver's error.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("chromedriver answers");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON from chromedriver");
    assert!(status.is_success(), "WebDriver {url}: {status} {body}");
    body["value"].clone()
}

/// The path in `variable`, or `default`, which must exist.
fn program(variable: &str, default: &str) -> String {
    let path = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    assert!(
        Path::new(&path).exists(),
        "the browser test needs {path} (set {variable} to use another). On Debian, \
         `.ci/install-browser` installs Chromium and ChromeDriver."
    );
    path
}
