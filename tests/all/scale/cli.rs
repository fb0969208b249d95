//! The command line on a service's settings: with `[storage] url` naming
//! PostgreSQL, `composer run` records its run there (beside the runs of
//! `serve` and `worker`), and `composer runs list`, `runs show` and
//! `report` read them from there; a URL of neither kind is an error that
//! says what it should look like.

use super::services::Postgres;
use crate::support::{composer_in, temp_dir, write};

const RECIPE: &str = r#"
name: hello
nodes:
  - {id: greet, type: language_task, model: {provider: mock, model: echo}, prompt: "hello there"}
final_outputs: [greet]
"#;

#[test]
fn the_command_line_records_and_reads_runs_in_postgresql() {
    let postgres = Postgres::start();
    let url = postgres.database();
    let dir = temp_dir();
    let d = dir.path();
    write(d, "hello.yaml", RECIPE);
    write(
        d,
        "composer.toml",
        &format!(
            "[cache]\nenabled = false\npath = \"{}\"\n\n[storage]\nurl = \"{url}\"\n",
            d.join("local.db").display()
        ),
    );
    let ran = composer_in(d, ["run", "hello.yaml", "--json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        postgres.query(&url, "SELECT count(*) FROM runs WHERE status = 'succeeded'"),
        "1"
    );
    let id = postgres.query(&url, "SELECT id FROM runs");
    // The local file (the result cache's) holds no run.
    let local = composer::store::Database::open(&d.join("local.db")).unwrap();
    let local = composer::store::SqliteStore::new(std::sync::Arc::new(local));
    assert!(
        local.list(&Default::default()).unwrap().is_empty(),
        "the run went to the local SQLite file too"
    );

    let listed = composer_in(d, ["runs", "list"]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let listed = listed.stdout;
    assert!(
        listed.contains(&id) && listed.contains("succeeded"),
        "{listed}"
    );
    let shown = composer_in(d, ["runs", "show", &id, "--json"]);
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    assert_eq!(shown["nodes"][0]["node"], "greet", "{shown}");
    let missing = composer_in(d, ["runs", "show", "run-nope"]);
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains("PostgreSQL 127.0.0.1:"),
        "{}",
        missing.stderr
    );
    let report = composer_in(d, ["report", "--json"]);
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert!(report.to_string().contains("hello"), "{report}");

    // A URL of neither kind.
    write(
        d,
        "composer.toml",
        "[storage]\nurl = \"mysql://somewhere/db\"\n",
    );
    let refused = composer_in(d, ["run", "hello.yaml"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("use sqlite://PATH or postgres://"),
        "{}",
        refused.stderr
    );
}
