//! Hosting core and `composer serve`: durable runs (SIGKILL then resume,
//! hitl waiting across processes), error kinds, and the HTTP API against a
//! real server process on 127.0.0.1.

mod durable;
mod kinds;
pub(crate) mod serve;
pub(crate) mod serve_limits;

use crate::providers::fake::{Fake, Fault};
use std::path::Path;
use std::time::Duration;

/// A `composer.toml` whose `local` endpoint is the fake, with nothing
/// cached (so every node that runs calls the fake).
pub fn config_for(fake: &Fake, dir: &Path, extra: &str) -> std::path::PathBuf {
    crate::support::write(
        dir,
        "composer.toml",
        &format!(
            r#"
[cache]
enabled = false
path = "{db}"

[providers.endpoint.local]
protocol = "openai"
base_url = "{url}/v1"
api_key_env = ""
key_required = false

[providers.retry]
max_retries = 0
{extra}
"#,
            db = dir.join("composer.db").display(),
            url = fake.url(),
        ),
    )
}

/// A fake whose model `slow` answers after `delay`.
pub fn slow_fake(delay: Duration) -> Fake {
    let fake = Fake::start();
    fake.always("slow", Fault::Hang(delay));
    fake
}

/// Requests the fake saw whose prompt contains `text`.
pub fn requests_with(fake: &Fake, text: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.body_json().to_string().contains(text))
        .count()
}
