//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through
//! chromedriver: just the commands the page tests use.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const ARROW_LEFT: &str = "\u{E012}";
pub const ARROW_RIGHT: &str = "\u{E014}";
pub const ENTER: &str = "\u{E007}";

/// Where Debian puts the driver; `None` when it is not installed.
pub fn chromedriver() -> Option<&'static str> {
    ["/usr/bin/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

pub struct Browser {
    http: reqwest::Client,
    url: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session that saves downloads
    /// into `downloads`.
    pub async fn start(driver: &str, downloads: &Path) -> Browser {
        let port = crate::common::process::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                if r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        // The closed network here refuses Chromium's background connections: turn them off.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_string();
        Browser {
            http,
            url: format!("{base}/session/{session}"),
            driver: child,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        if let Some(error) = response["value"]["error"].as_str() {
            panic!(
                "webdriver {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        response["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Elements matching `css` now (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.post("/elements", json!({"using": "css selector", "value": css}))
            .await
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element(id.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting for it to appear (10 s).
    pub async fn find(&self, css: &str) -> Element {
        for _ in 0..200 {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                return element;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no element {css} appeared");
    }

    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Types `text` into an element (WebDriver key codes for special keys).
    pub async fn keys(&self, element: &Element, text: &str) {
        self.post(
            &format!("/element/{}/value", element.0),
            json!({"text": text}),
        )
        .await;
    }

    /// Presses the mouse `from` pixels right of the element's centre, drags to `to`, releases.
    pub async fn drag(&self, element: &Element, from: i64, to: i64) {
        let origin = json!({ ELEMENT: element.0 });
        self.post(
            "/actions",
            json!({"actions": [{
                "type": "pointer",
                "id": "mouse",
                "parameters": {"pointerType": "mouse"},
                "actions": [
                    {"type": "pointerMove", "duration": 0, "origin": origin, "x": from, "y": 0},
                    {"type": "pointerDown", "button": 0},
                    {"type": "pointerMove", "duration": 150, "origin": origin, "x": (from + to) / 2, "y": 0},
                    {"type": "pointerMove", "duration": 150, "origin": origin, "x": to, "y": 0},
                    {"type": "pointerUp", "button": 0}
                ]
            }]}),
        )
        .await;
        self.command(reqwest::Method::DELETE, "/actions", None)
            .await;
    }

    pub async fn clear(&self, element: &Element) {
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await;
    }

    pub async fn text(&self, element: &Element) -> String {
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`, elements as references).
    pub async fn exec(&self, script: &str, args: &[Value]) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    pub fn arg(element: &Element) -> Value {
        json!({ ELEMENT: element.0 })
    }

    /// Polls `script` until it returns true (10 s).
    pub async fn wait_for(&self, what: &str, script: &str) {
        for _ in 0..200 {
            if self.exec(script, &[]).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What the page showed instead, so that a failure in CI can be read without a rerun.
        let shown = self
            .exec("return document.body.innerText.slice(0, 1500)", &[])
            .await;
        panic!(
            "page never reached: {what}; the page showed:\n{}",
            shown.as_str().unwrap_or("")
        );
    }

    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 png"))
            .expect("png");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(path, bytes).expect("write screenshot");
    }
}

impl Browser {
    /// Ends the session (Chromium exits) and stops the driver.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
