//! The web page (SERVER.md section 6) end to end in a real headless
//! Chromium (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/test-deps.sh`), driven over WebDriver with fantoccini against
//! a real `composer serve` on 127.0.0.1. Every step leaves a PNG under
//! `target/web-e2e/` for a person to look at.

mod bench;
mod page;

use crate::hosting::serve::{sha, start_with, Server, KEY_A};
use crate::support::{temp_dir, write};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one wait in the page may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// One browser at a time: each test starts its own Chromium, and the
/// machine has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/web-e2e` of the build these tests belong to.
pub fn shots_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => repo().join(dir),
        None => repo().join("target"),
    };
    let dir = target.join("web-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chromedriver` on the PATH. Never a skip: a machine without it fails
/// with what to run.
fn chromedriver() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("chromedriver"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed, so the web page cannot be tested: \
             run `bash scripts/test-deps.sh` (Debian's chromium and chromium-driver)"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A chromedriver process in its own process group, with the Chromium it
/// starts: dropping it kills the whole group, so a failed test leaves no
/// browser behind.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(log: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let binary = chromedriver();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&binary)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Driver { child, port };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "chromedriver did not start; its log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A headless Chromium showing the page, with the test's name for its
/// screenshots.
pub struct Browser {
    pub client: Client,
    pub base: String,
    name: String,
    step: std::cell::Cell<u32>,
    // Dropped after the client: the driver group, then the profile folder.
    _driver: Driver,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// A fresh browser (its own profile, 1280x900) for the test `name`,
    /// pointed at nothing yet.
    pub async fn start(name: &str, base: &str) -> Browser {
        let turn = ONE_BROWSER.lock().await;
        let dir = shots_dir();
        for old in std::fs::read_dir(&dir).unwrap().flatten() {
            if old
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
            {
                let _ = std::fs::remove_file(old.path());
            }
        }
        let driver = Driver::start(&dir.join(format!("{name}-chromedriver.log")));
        let profile = temp_dir();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": [
                "--headless=new",
                "--no-sandbox", // CI runs the tests as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--autoplay-policy=no-user-gesture-required",
                format!("--user-data-dir={}", profile.path().display()),
            ]}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session with headless Chromium: {e}"));
        client.set_window_size(1280, 900).await.unwrap();
        Browser {
            client,
            base: base.to_string(),
            name: name.to_string(),
            step: std::cell::Cell::new(0),
            _driver: driver,
            _profile: profile,
            _turn: turn,
        }
    }

    /// Ends the WebDriver session (the driver's group is killed on drop).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed in the page: {e}\n{script}"))
    }

    /// The page's visible text.
    pub async fn visible_text(&self) -> String {
        self.js("return document.body.innerText;", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG of the whole page (the window grown to the page's height for
    /// the shot) as `target/web-e2e/NAME-NN-STEP.png`.
    pub async fn shot(&self, step: &str) -> PathBuf {
        let n = self.step.get() + 1;
        self.step.set(n);
        let path = shots_dir().join(format!("{}-{n:02}-{step}.png", self.name));
        let (w, h) = self.client.get_window_size().await.unwrap();
        let full = self
            .js(
                "return Math.ceil(document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight));",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(h);
        let grow = full > h;
        if grow {
            let _ = self
                .client
                .set_window_size(w as u32, full.min(4000) as u32)
                .await;
        }
        let png = self.client.screenshot().await.unwrap();
        if grow {
            let _ = self.client.set_window_size(w as u32, h as u32).await;
        }
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Polls `script` (a function body) until it returns something other
    /// than null, false, 0 or "", and returns that; after `DEADLINE` fails
    /// with `what`, the page's text and a screenshot.
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if started.elapsed() > DEADLINE {
                let shot = self.shot("timeout").await;
                let text = self.visible_text().await;
                panic!(
                    "waited {DEADLINE:?} for {what}; screenshot {}\n--- the page shows ---\n{text}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the element `css` to be shown (not in a hidden section).
    pub async fn wait_visible(&self, css: &str) {
        self.wait_for(
            &format!("`{css}` to be shown"),
            "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;",
            vec![json!(css)],
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        self.wait_visible(css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
    }

    /// Replaces the value of the field `css` by typing `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_visible(css).await;
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Opens the page and signs in with `key` (the key form, as a person).
    pub async fn sign_in(&self, key: &str) {
        self.client.goto(&format!("{}/", self.base)).await.unwrap();
        self.type_into("#key-input", key).await;
        self.click("#key-form button[type=submit]").await;
    }

    /// The run's status badge once it says one of `statuses`.
    pub async fn wait_status(&self, statuses: &[&str]) -> String {
        self.wait_for(
            &format!("the run's status to become one of {statuses:?}"),
            "const s = document.querySelector('#run-status').textContent; return arguments[0].includes(s) ? s : null;",
            vec![json!(statuses)],
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
    }

    /// Every node of the graph by its `data-state`.
    pub async fn node_states(&self) -> Vec<(String, String)> {
        let v = self
            .js(
                "return [...document.querySelectorAll('#graph g.node:not(.terminal)')].map((g) => [g.dataset.node, g.dataset.state]);",
                vec![],
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// A running server and what it needs to stay up.
pub struct Site {
    pub base: String,
    _server: Server,
    _plugins: crate::plugins::Env,
}

/// A server for one tenant (key `KEY_A`) whose recipe folder holds the
/// flagship (with its imports) and `recipes`, with the built plugins
/// (`plugins/dist`) in its plugin folders and their compiled code already
/// cached (compiling them all in a debug build takes a minute).
pub fn site(recipes: &[(&str, &str)]) -> Site {
    let plugins = crate::plugins::Env::new();
    let dir = temp_dir();
    let d = dir.path();
    let folder = d.join("a").join("recipes");
    copy_flagship(&folder);
    for (name, text) in recipes {
        write(&folder, name, text);
    }
    write(
        d,
        "composer.toml",
        &format!(
            r#"
[cache]
enabled = false
path = "{db}"

[server]
data_dir = "{data}"

[providers.retry]
max_retries = 0

[plugins]
cache_dir = "{cache}"

[[tenants]]
id = "a"
key_sha256 = ["{ka}"]
recipes = ["{folder}"]
plugins = ["{dist}"]
"#,
            db = d.join("composer.db").display(),
            data = d.join("data").display(),
            ka = sha(KEY_A),
            folder = folder.display(),
            dist = crate::plugins::dist().display(),
            cache = plugins.cache.display(),
        ),
    );
    let (child, base) = start_with(d, &[]);
    Site {
        base: base.clone(),
        _server: Server {
            child,
            base,
            _dir: dir,
        },
        _plugins: plugins,
    }
}

/// `recipes/article_studio.yaml` with `recipes/definitions/` and
/// `recipes/prompts/` (its imports), into `folder`.
fn copy_flagship(folder: &Path) {
    let src = repo().join("recipes");
    std::fs::create_dir_all(folder).unwrap();
    std::fs::copy(
        src.join("article_studio.yaml"),
        folder.join("article_studio.yaml"),
    )
    .unwrap();
    for sub in ["definitions", "prompts"] {
        std::fs::create_dir_all(folder.join(sub)).unwrap();
        for f in std::fs::read_dir(src.join(sub)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, folder.join(sub).join(f.file_name().unwrap())).unwrap();
        }
    }
}
