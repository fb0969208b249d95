//! The real binary, each test from its own temporary working folder (so
//! the database is `<cwd>/.composer/composer.db`): repeated runs against the
//! counting fake, `--no-cache`, `--refresh`, corrupted and locked database
//! files, `[cache]` settings, `composer cache stats|clear|prune`,
//! `composer runs list|show`, and a run killed after its first node.

use super::{fixtures, Env, Fake};
use crate::support::{composer_in, Output};
use composer::store::{Database, SqliteStore};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn recipe(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// `composer ARGS` in `env.root`, which must succeed.
fn ok(env: &Env, args: &[&str]) -> Output {
    let out = composer_in(&env.root, args);
    assert_eq!(out.code, Some(0), "composer {args:?}\n{}", out.describe());
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    out
}

/// `composer run ask.yaml --json ARGS` in `env.root`; its outputs.
fn ask(env: &Env, args: &[&str]) -> (serde_json::Map<String, Value>, Output) {
    let path = recipe("ask.yaml");
    let mut all = vec!["run", path.as_str(), "--json", "--out", "out"];
    all.extend_from_slice(args);
    let out = ok(env, &all);
    match serde_json::from_str(&out.stdout) {
        Ok(Value::Object(m)) => (m, out),
        _ => panic!("stdout is not a JSON object\n{}", out.describe()),
    }
}

/// An env whose composer.toml declares the fake provider.
fn env_with(fake: &Fake, extra: &str) -> Env {
    let env = Env::new();
    std::fs::write(
        env.root.join("composer.toml"),
        format!("{}\n{extra}", fake.config()),
    )
    .unwrap();
    env
}

/// `.composer/composer.db`'s runs, newest first, via `composer runs list --json`.
fn listed_runs(env: &Env) -> Vec<Value> {
    let out = ok(env, &["runs", "list", "--json"]);
    match serde_json::from_str(&out.stdout) {
        Ok(Value::Array(runs)) => runs,
        _ => panic!("not a JSON array\n{}", out.describe()),
    }
}

#[test]
fn a_second_cli_run_makes_no_provider_call() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    let (first, _) = ask(&env, &[]);
    assert_eq!(fake.calls(), 2);
    let (second, log) = ask(&env, &[]);
    assert_eq!(fake.calls(), 2, "the second run called the provider");
    assert_eq!(second, first);
    assert!(
        log.stderr.contains("outline finished") && log.stderr.contains("[cached]"),
        "{}",
        log.describe()
    );
    assert!(env.db.is_file());
    assert_eq!(env.entries()["language_task"], 2);

    let (other, _) = ask(&env, &["-i", "topic=beavers"]);
    assert_eq!(fake.calls(), 4, "another input is another prompt");
    assert_ne!(other, first);
}

#[test]
fn no_cache_makes_calls_and_stores_nothing() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    let (a, _) = ask(&env, &["--no-cache"]);
    let (b, _) = ask(&env, &["--no-cache"]);
    assert_eq!(fake.calls(), 4);
    assert_ne!(a, b, "fresh answers each time");
    assert_eq!(env.entry_count(), 0, "--no-cache stored results");
    // The runs themselves are still recorded.
    assert_eq!(listed_runs(&env).len(), 2);
    let stats = ok(&env, &["cache", "stats"]);
    assert!(
        stats.stdout.contains("the cache is empty"),
        "{}",
        stats.describe()
    );
}

#[test]
fn refresh_makes_calls_and_stores_them() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    let (first, _) = ask(&env, &[]);
    let (refreshed, _) = ask(&env, &["--refresh"]);
    assert_eq!(fake.calls(), 4, "--refresh read the cache");
    assert_ne!(refreshed, first);
    let (later, _) = ask(&env, &[]);
    assert_eq!(fake.calls(), 4);
    assert_eq!(later, refreshed, "the refreshed results were not stored");

    let both = composer_in(
        &env.root,
        ["run", &recipe("ask.yaml"), "--no-cache", "--refresh"],
    );
    assert_eq!(both.code, Some(2), "{}", both.describe());
}

#[test]
fn a_corrupted_database_gives_a_warning_and_a_run_without_the_cache() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&env.db, &garbage).unwrap();
    for expected_calls in [2, 4] {
        let (outputs, log) = ask(&env, &[]);
        assert_eq!(outputs.len(), 2);
        assert!(
            log.stderr.contains("warning:")
                && log.stderr.contains("running without the result cache"),
            "{}",
            log.describe()
        );
        assert_eq!(fake.calls(), expected_calls, "the broken cache was read");
    }
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        garbage,
        "the file was changed"
    );

    // The commands that only read the database fail cleanly.
    for args in [&["cache", "stats"][..], &["runs", "list"][..]] {
        let out = composer_in(&env.root, args);
        assert_eq!(out.code, Some(1), "{args:?}\n{}", out.describe());
        assert!(out.stderr.contains("error:"), "{}", out.describe());
        assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    }
}

/// Holds an exclusive lock on the database at `path` (created if needed)
/// until the connection is dropped.
pub fn lock_database(path: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS lock_holder (x INTEGER);")
        .unwrap();
    conn
}

#[test]
fn a_locked_database_gives_a_warning_and_a_run_without_the_cache() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    let lock = lock_database(&env.db);
    let (outputs, log) = ask(&env, &[]);
    assert_eq!(outputs.len(), 2);
    assert!(
        log.stderr.contains("warning:") && log.stderr.contains("locked"),
        "{}",
        log.describe()
    );
    assert_eq!(fake.calls(), 2);
    drop(lock);
    // Once free, the database works again.
    ask(&env, &[]);
    ask(&env, &[]);
    assert_eq!(fake.calls(), 4);
}

#[test]
fn cache_settings_move_or_disable_the_database() {
    let fake = Fake::start();
    let env = env_with(&fake, "[cache]\npath = \"data/results.db\"\n");
    ask(&env, &[]);
    ask(&env, &[]);
    assert_eq!(fake.calls(), 2);
    assert!(env.root.join("data").join("results.db").is_file());
    assert!(!env.db.exists(), "the default path was used");
    let stats = ok(&env, &["cache", "stats"]);
    assert!(
        stats.stdout.contains("language_task"),
        "{}",
        stats.describe()
    );
    assert_eq!(listed_runs(&env).len(), 2);

    let off = env_with(&fake, "[cache]\nenabled = false\n");
    ask(&off, &[]);
    ask(&off, &[]);
    assert_eq!(fake.calls(), 6, "`enabled = false` still cached");
    assert_eq!(off.entry_count(), 0);
    assert_eq!(listed_runs(&off).len(), 2, "runs are recorded all the same");
}

/// The line of `composer cache stats` for `kind`.
fn stats_line(out: &Output, kind: &str) -> String {
    out.stdout
        .lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no `{kind}` line\n{}", out.describe()))
        .to_string()
}

/// The words of `line` as a list.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn cache_stats_prune_and_clear() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    let empty = ok(&env, &["cache", "stats"]);
    assert!(
        empty.stdout.contains("the cache is empty"),
        "{}",
        empty.describe()
    );
    ask(&env, &[]);

    let stats = ok(&env, &["cache", "stats"]);
    let line = stats_line(&stats, "language_task");
    let w = words(&line);
    assert_eq!(
        (w[1], w[2], w[5], w[6]),
        ("2", "entries", "0", "expired"),
        "{line}"
    );
    assert!(w[3].parse::<u64>().unwrap() > 0, "{line}");
    assert_eq!(words(&stats_line(&stats, "total"))[1], "2");

    // One entry expires (its time set in the past).
    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute(
            "UPDATE cache SET expires_at = 1 WHERE rowid = (SELECT MIN(rowid) FROM cache)",
            [],
        )
        .unwrap();
    let stats = ok(&env, &["cache", "stats"]);
    assert_eq!(words(&stats_line(&stats, "language_task"))[5], "1");
    let pruned = ok(&env, &["cache", "prune"]);
    assert_eq!(pruned.stdout.trim(), "removed 1 expired entries");
    assert_eq!(env.entry_count(), 1);
    let pruned = ok(&env, &["cache", "prune"]);
    assert_eq!(pruned.stdout.trim(), "removed 0 expired entries");

    let cleared = ok(&env, &["cache", "clear"]);
    assert_eq!(cleared.stdout.trim(), "removed 1 entries");
    assert_eq!(env.entry_count(), 0);
    let stats = ok(&env, &["cache", "stats"]);
    assert!(
        stats.stdout.contains("the cache is empty"),
        "{}",
        stats.describe()
    );

    // The next run calls again.
    ask(&env, &[]);
    assert_eq!(fake.calls(), 4);
}

#[test]
fn runs_list_and_show() {
    let env = Env::new();
    let empty = ok(&env, &["runs", "list"]);
    assert!(
        empty.stdout.contains("no runs recorded"),
        "{}",
        empty.describe()
    );

    let good = recipe("fast_then_slow.yaml");
    let bad = recipe("failing.yaml");
    // `slow` waits 10 s unless --model replaces its mock settings (then
    // each node echoes its prompt).
    ok(
        &env,
        &["run", &good, "--out", "out", "--model", "mock/echo"],
    );
    let failed = composer_in(&env.root, ["run", &bad, "--out", "out"]);
    assert_eq!(failed.code, Some(1), "{}", failed.describe());

    let runs = listed_runs(&env);
    assert_eq!(runs.len(), 2);
    let (newest, oldest) = (&runs[0], &runs[1]);
    assert_eq!(newest["recipe"], "cache failing");
    assert_eq!(newest["status"], "failed");
    assert_eq!(oldest["recipe"], "fast then slow");
    assert_eq!(oldest["status"], "succeeded");
    let id_ok = oldest["id"].as_str().unwrap().to_string();
    let id_failed = newest["id"].as_str().unwrap().to_string();
    assert!(
        failed.stderr.contains(&id_failed),
        "the failed run's id is printed\n{}",
        failed.describe()
    );

    let text = ok(&env, &["runs", "list"]);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text.describe());
    assert!(lines[0].starts_with(&id_failed) && lines[0].contains("failed"));
    assert!(lines[1].starts_with(&id_ok) && lines[1].contains("succeeded"));
    assert!(lines[1].ends_with("fast then slow"));

    let only = ok(
        &env,
        &["runs", "list", "--recipe", "cache failing", "--json"],
    );
    let only: Vec<Value> = serde_json::from_str(&only.stdout).unwrap();
    assert_eq!(only.len(), 1);
    let limited = ok(&env, &["runs", "list", "--limit", "1", "--json"]);
    let limited: Vec<Value> = serde_json::from_str(&limited.stdout).unwrap();
    assert_eq!(limited[0]["id"], newest["id"]);

    let shown = ok(&env, &["runs", "show", &id_ok, "--json"]);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["run"]["status"], "succeeded");
    assert_eq!(shown["run"]["outputs"]["slow"], "after quick");
    let nodes = shown["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["node"], "fast");
    assert_eq!(nodes[0]["status"], "completed");
    assert_eq!(nodes[0]["output"], "quick");
    assert_eq!(nodes[1]["node"], "slow");
    assert_eq!(nodes[1]["output"], "after quick");

    let text = ok(&env, &["runs", "show", &id_failed]);
    for part in [
        id_failed.as_str(),
        "(cache failing) failed",
        "error",
        "injected failure",
        "fine",
        "breaks",
    ] {
        assert!(
            text.stdout.contains(part),
            "`{part}` missing\n{}",
            text.describe()
        );
    }

    let missing = composer_in(&env.root, ["runs", "show", "run-00000000-000000-none"]);
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(missing.stderr.contains("no run"), "{}", missing.describe());
}

#[test]
fn a_killed_run_keeps_the_results_of_its_finished_nodes() {
    let env = Env::new();
    let mut child = crate::support::composer_command(&env.root)
        .args(["run", &recipe("fast_then_slow.yaml"), "--out", "out"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start composer");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("fast finished");
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`fast` never finished; stderr:\n{}", seen.join("\n"));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "composer ended before it was killed:\n{}",
        seen.join("\n")
    );
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    let store = SqliteStore::new(Arc::new(
        Database::open(&env.db).expect("the database opens"),
    ));
    let runs = store.list(&Default::default()).unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.recipe, "fast then slow");
    assert_eq!(run.status, "running", "a killed run stays `running`");
    assert_eq!(run.finished_at, None);
    let (_, nodes) = store.get(&run.id).unwrap().unwrap();
    let fast = nodes
        .iter()
        .find(|n| n.node == "fast")
        .expect("a record of `fast`");
    assert_eq!(fast.status, "completed");
    assert_eq!(fast.output, Some(Value::from("fast answer")));
    assert!(fast.duration.is_some());
    let slow = nodes
        .iter()
        .find(|n| n.node == "slow")
        .expect("a record of `slow`");
    assert_eq!(slow.status, "running");
    assert_eq!(slow.output, None);
    let events: Vec<String> = store
        .events(&run.id)
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(events.contains(&"node_finished".to_string()), "{events:?}");
    assert!(!events.contains(&"run_finished".to_string()), "{events:?}");
    // Its result was cached too: the next run does not wait for `fast`.
    assert_eq!(env.entries().get("language_task"), Some(&1));
}

#[test]
fn a_database_damaged_past_its_header_never_stops_a_run() {
    let fake = Fake::start();
    let env = env_with(&fake, "");
    ask(&env, &[]);
    // Checkpoint the WAL into the file, then ruin every page but the first
    // (the schema stays readable; the tables do not).
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let mut bytes = std::fs::read(&env.db).unwrap();
    let page = 4096.min(bytes.len());
    assert!(bytes.len() > page, "the database has more than one page");
    for (i, b) in bytes[page..].iter_mut().enumerate() {
        *b = (i * 31 % 253) as u8;
    }
    std::fs::write(&env.db, &bytes).unwrap();

    let (outputs, log) = ask(&env, &[]);
    assert_eq!(outputs.len(), 2, "{}", log.describe());
    assert_eq!(fake.calls(), 4, "a damaged cache cannot answer");
    assert!(log.stderr.contains("warn"), "{}", log.describe());
}
