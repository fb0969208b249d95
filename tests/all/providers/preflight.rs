//! Missing API keys are found before anything runs: the run is refused,
//! naming each variable and the nodes that need it, and no request is
//! made. Through `run_recipe`, and through `composer run`, whose keys come
//! from the environment and a `.env` file.

use super::fake::Fake;
use super::{settings, start, temp_dir, ANTHROPIC_KEY, OPENAI_KEY};
use composer::engine::error::RunError;
use composer::providers::keys::Keys;
use composer::providers::Providers;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const TWO_PROVIDERS: &str = r#"
name: two providers
nodes:
  - id: draft
    type: language_task
    model: {provider: openai, model: gpt-4o-mini}
    prompt: "Draft a line about bees"
  - id: review
    type: language_task
    model: {provider: anthropic, model: claude-3-5-haiku-latest}
    prompt: "Review: {{ draft }}"
  - id: polish
    type: language_task
    model: {provider: openai, model: gpt-4.1-nano}
    prompt: "Polish: {{ review }}"
"#;

#[tokio::test]
async fn missing_keys_are_named_before_any_request() {
    let fake = Fake::start();
    let providers = Providers::from_settings(&settings(&fake), &Keys::fixed([])).unwrap();
    let refused = match start(providers, TWO_PROVIDERS, json!({})).await {
        Ok(ran) => panic!("the run started:\n{}", ran.describe()),
        Err(refused) => refused,
    };
    let RunError::Preflight(problems) = &refused.0 else {
        panic!("expected a preflight error, got {:?}", refused.0);
    };
    let message = problems.join("\n");
    let line = |var: &str| {
        message
            .lines()
            .find(|l| l.contains(var))
            .unwrap_or_else(|| panic!("`{var}` is not named:\n{message}"))
            .to_string()
    };
    let openai = line("OPENAI_API_KEY");
    assert!(
        openai.contains("`draft`") && openai.contains("`polish`") && !openai.contains("review"),
        "{openai}"
    );
    let anthropic = line("ANTHROPIC_API_KEY");
    assert!(
        anthropic.contains("`review`") && !anthropic.contains("draft"),
        "{anthropic}"
    );
    assert!(
        message.contains(".env"),
        "says where keys come from: {message}"
    );
    assert_eq!(fake.request_count(), 0);
    assert_eq!(fake.connections(), 0);
}

#[tokio::test]
async fn one_missing_key_refuses_the_whole_run() {
    let fake = Fake::start();
    let keys = Keys::fixed([("OPENAI_API_KEY".to_string(), OPENAI_KEY.to_string())]);
    let providers = Providers::from_settings(&settings(&fake), &keys).unwrap();
    let Err(refused) = start(providers, TWO_PROVIDERS, json!({})).await else {
        panic!("the run started without ANTHROPIC_API_KEY");
    };
    let message = refused.0.to_string();
    assert!(message.contains("ANTHROPIC_API_KEY"), "{message}");
    assert!(!message.contains("OPENAI_API_KEY"), "{message}");
    assert_eq!(fake.request_count(), 0, "not even the openai nodes ran");
}

/// A folder holding the recipe and a composer.toml pointing openai and
/// anthropic at the fake.
fn project(fake: &Fake) -> tempfile::TempDir {
    let dir = temp_dir();
    std::fs::write(dir.path().join("recipe.yaml"), TWO_PROVIDERS).unwrap();
    let toml = format!(
        r#"
[providers]
request_timeout_secs = 10

[providers.retry]
base_delay_ms = 5
max_delay_ms = 20

[providers.rate_limits]

[providers.endpoint.openai]
protocol = "openai"
base_url = "{url}/v1"
api_key_env = "OPENAI_API_KEY"

[providers.endpoint.anthropic]
protocol = "anthropic"
base_url = "{url}/v1"
api_key_env = "ANTHROPIC_API_KEY"
"#,
        url = fake.url()
    );
    std::fs::write(dir.path().join("composer.toml"), toml).unwrap();
    dir
}

/// `composer run recipe.yaml --json --out out` in `cwd`, with an empty
/// environment but PATH and HOME.
fn composer_run(cwd: &Path) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_composer"));
    command
        .current_dir(cwd)
        .args(["run", "recipe.yaml", "--json", "--out", "out"])
        .env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            command.env(var, v);
        }
    }
    // No plugins from this machine's user folder (see `composer_command`).
    command.env(
        "XDG_DATA_HOME",
        std::env::temp_dir().join("composer-tests-no-user-data"),
    );
    let out = command.output().expect("cannot run the composer binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn composer_run_without_keys_exits_2_naming_them() {
    let fake = Fake::start();
    let dir = project(&fake);
    let (code, stdout, stderr) = composer_run(dir.path());
    let describe = format!("exit {code:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(code, Some(2), "{describe}");
    assert!(stderr.contains("the run cannot start"), "{describe}");
    for needle in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "`draft`", "`review`"] {
        assert!(stderr.contains(needle), "`{needle}` not named:\n{describe}");
    }
    if !stdout.is_empty() {
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(v["status"], "not_started", "{describe}");
        assert_eq!(v["error"]["kind"], "invalid_recipe", "{describe}");
    }
    assert_eq!(fake.request_count(), 0);
    assert!(!dir.path().join("out").exists(), "no run folder was made");
}

#[test]
fn composer_run_takes_keys_from_a_dotenv_file() {
    let fake = Fake::start();
    let dir = project(&fake);
    std::fs::write(
        dir.path().join(".env"),
        format!("OPENAI_API_KEY={OPENAI_KEY}\nANTHROPIC_API_KEY=\"{ANTHROPIC_KEY}\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = composer_run(dir.path());
    let describe = format!("exit {code:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(code, Some(0), "{describe}");
    let outputs: serde_json::Value = serde_json::from_str(&stdout).expect(&describe);
    assert_eq!(
        outputs["polish"], "fake answer from gpt-4.1-nano",
        "{describe}"
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let bearer = format!("Bearer {OPENAI_KEY}");
    for r in &requests {
        match r.path.as_str() {
            "/v1/chat/completions" => {
                assert_eq!(r.header("authorization"), Some(bearer.as_str()))
            }
            "/v1/messages" => assert_eq!(r.header("x-api-key"), Some(ANTHROPIC_KEY)),
            other => panic!("unexpected request to {other}"),
        }
    }
    // `review` saw `draft`'s answer.
    let review = requests
        .iter()
        .find(|r| r.path == "/v1/messages")
        .unwrap()
        .body_json()["messages"][0]["content"]
        .clone();
    assert_eq!(review, "Review: fake answer from gpt-4o-mini");
}
