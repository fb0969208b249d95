//! Several `composer serve` and `composer worker` processes on one private
//! PostgreSQL and one private Redis (SERVER.md sections 1, 4 and 5), with
//! the fake provider counting what reaches it.

use super::services::{Postgres, Redis};
use crate::hosting::serve::{call, sha, KEY_A};
use crate::providers::fake::Fake;
use crate::support::{composer_command, temp_dir, write};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// One service: its database, Redis, the fake provider and the folder of
/// its config, recipes and shared data folder. Processes are killed when
/// it is dropped.
pub(crate) struct Cluster {
    pub(crate) redis: Redis,
    pub(crate) fake: Fake,
    pub(crate) dir: tempfile::TempDir,
    processes: Vec<Child>,
    database: String,
    // Dropped last: the processes go first.
    postgres: Postgres,
}

/// A running process of the cluster: its index in `Cluster::processes`
/// and, for `serve`, its base URL.
pub(crate) struct Process {
    pub(crate) index: usize,
    pub(crate) base: Option<String>,
}

impl Cluster {
    /// Starts PostgreSQL and Redis and writes a config for tenant `a`
    /// (`quotas` and `extra` are TOML lines) with `recipes`.
    pub(crate) fn new(quotas: &str, extra: &str, recipes: &[(&str, &str)]) -> Cluster {
        Cluster::build(quotas, extra, recipes, false)
    }

    /// The same with the result cache on (in Redis).
    pub(crate) fn cached(quotas: &str, recipes: &[(&str, &str)]) -> Cluster {
        Cluster::build(quotas, "", recipes, true)
    }

    fn build(quotas: &str, extra: &str, recipes: &[(&str, &str)], cache: bool) -> Cluster {
        let postgres = Postgres::start();
        let redis = Redis::start();
        let fake = Fake::start();
        let dir = temp_dir();
        let d = dir.path();
        let database = postgres.database();
        for (name, text) in recipes {
            write(d, &format!("recipes/{name}.yaml"), text);
        }
        write(
            d,
            "composer.toml",
            &format!(
                r#"
[cache]
enabled = {cache}
path = "{db}"
redis_url = "{redis}"

[storage]
url = "{pg}"
pool_size = 8

[providers.endpoint.local]
protocol = "openai"
base_url = "{fake}/v1"
api_key_env = ""
key_required = false

[providers.retry]
max_retries = 0

[server]
data_dir = "{data}"
lease_secs = 3
max_running = 16

{extra}

[[tenants]]
id = "a"
key_sha256 = ["{ka}"]
recipes = ["{d}/recipes"]

[tenants.quotas]
{quotas}
"#,
                db = d.join("composer.db").display(),
                redis = redis.url(),
                cache = cache,
                pg = database,
                fake = fake.url(),
                data = d.join("data").display(),
                ka = sha(KEY_A),
                d = d.display(),
            ),
        );
        Cluster {
            redis,
            fake,
            dir,
            processes: Vec::new(),
            database,
            postgres,
        }
    }

    pub(crate) fn postgres(&self) -> &Postgres {
        &self.postgres
    }

    /// The answer of one SQL query on the service's database.
    pub(crate) fn sql(&self, query: &str) -> String {
        self.postgres.query(&self.database, query)
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.path().join(name)).expect("a log file")
    }

    /// `composer serve` (with its worker unless `worker` is false).
    pub(crate) fn serve(&mut self, worker: bool) -> Process {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
        if !worker {
            args.push("--no-worker");
        }
        self.listening(&args)
    }

    /// `composer worker` answering `/metrics` and the probes on a port.
    pub(crate) fn worker_with_metrics(&mut self) -> Process {
        self.listening(&["worker", "--metrics-addr", "127.0.0.1:0"])
    }

    /// Starts a process that announces its address on stderr.
    fn listening(&mut self, args: &[&str]) -> Process {
        let mut child = composer_command(self.dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("composer starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("composer {args:?} stopped before listening:\n{seen}");
            };
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_string();
            }
            seen.push_str(&line);
            seen.push('\n');
        };
        // Keep draining its logs so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.processes.push(child);
        Process {
            index: self.processes.len() - 1,
            base: Some(base),
        }
    }

    /// `composer worker`.
    pub(crate) fn worker(&mut self) -> Process {
        let n = self.processes.len();
        let child = composer_command(self.dir.path())
            .args(["worker"])
            .stdout(Stdio::null())
            .stderr(self.log(&format!("worker-{n}.log")))
            .spawn()
            .expect("composer worker starts");
        self.processes.push(child);
        Process {
            index: n,
            base: None,
        }
    }

    pub(crate) fn kill(&mut self, p: &Process) {
        let child = &mut self.processes[p.index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freezes the process (SIGSTOP), as a long pause or a partition would.
    pub(crate) fn pause(&mut self, p: &Process) {
        self.signal(p, "-STOP");
    }

    /// Wakes a frozen process (SIGCONT).
    pub(crate) fn resume(&mut self, p: &Process) {
        self.signal(p, "-CONT");
    }

    fn signal(&mut self, p: &Process, signal: &str) {
        let pid = self.processes[p.index].id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self, p: &Process) -> bool {
        matches!(self.processes[p.index].try_wait(), Ok(None))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Submits a run of `recipe` to `base`; retries while a quota refuses it.
pub(crate) async fn submit(base: &str, recipe: &str, inputs: Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, body, _) = call(
            Method::POST,
            &format!("{base}/v1/recipes/{recipe}/runs"),
            Some(KEY_A),
            Some(json!({ "inputs": inputs })),
        )
        .await;
        if st == 202 {
            return body["id"].as_str().expect("a run id").to_string();
        }
        assert_eq!(st, 429, "{body}");
        assert!(Instant::now() < deadline, "never admitted: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) use crate::hosting::serve_limits::{is_final, poll_run};

/// A one-node recipe whose prompt names its input `n` (`run-<n>-end`).
/// Three nodes in a chain; the second calls the `slow` model (give it a
/// fault to hold it).
pub(crate) const CHAIN: &str = r#"
name: chain
nodes:
  - {id: first, type: language_task, model: {provider: local, model: fast}, prompt: "first-step"}
  - {id: second, type: language_task, model: {provider: local, model: slow}, prompt: "second-step {{ first }}"}
  - {id: third, type: language_task, model: {provider: local, model: fast}, prompt: "third-step {{ second }}"}
edges: [first to second, second to third]
final_outputs: [third]
"#;

pub(crate) const ONE: &str = r#"
name: one
user_inputs: [{id: n, type: string}]
nodes:
  - {id: say, type: language_task, model: {provider: local, model: fast}, prompt: "run-{{ n }}-end"}
final_outputs: [say]
"#;

/// Submits `count` runs of `recipe` (input `n` = 0, 1, ...) to the servers
/// in turn, `parallel` at a time; answers their ids in order.
pub(crate) async fn submit_many(
    bases: &[String],
    recipe: &str,
    count: usize,
    parallel: usize,
) -> Vec<String> {
    use futures::stream::{self, StreamExt};
    stream::iter(0..count)
        .map(|n| {
            let target = bases[n % bases.len()].clone();
            async move { submit(&target, recipe, json!({"n": n.to_string()})).await }
        })
        .buffered(parallel)
        .collect()
        .await
}

/// Waits until `/readyz` answers 200 (panics after 30 s).
pub(crate) async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, _) = call(Method::GET, &format!("{url}/readyz"), None, None).await;
        if st == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of node `id` in a run object.
pub(crate) fn node_status<'a>(run: &'a Value, id: &str) -> Option<&'a str> {
    run["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)?
        .get("status")?
        .as_str()
}

/// Requests the fake saw whose body contains `text`.
pub(crate) fn requests_with(fake: &Fake, text: &str) -> usize {
    crate::hosting::requests_with(fake, text)
}

pub(crate) fn base(p: &Process) -> &str {
    p.base.as_deref().expect("a serve process")
}
