//! What can go wrong with a plugin call. Every variant names the plugin and
//! the function; limit errors also name the limit and its value, so a
//! recipe author can tell "my function is slow" from "my function is broken".

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum PluginError {
    #[error("plugin `{plugin}` cannot be loaded: {message}")]
    Load { plugin: String, message: String },
    #[error("plugin `{plugin}`, function `{function}`: ran out of fuel (limit {fuel} units); raise `fuel` for this plugin if the work is legitimate")]
    FuelExhausted {
        plugin: String,
        function: String,
        fuel: u64,
    },
    #[error("plugin `{plugin}`, function `{function}`: timed out after {timeout_ms} ms (limit `timeout_ms`)")]
    Timeout {
        plugin: String,
        function: String,
        timeout_ms: u64,
    },
    #[error("plugin `{plugin}`, function `{function}`: memory limit of {limit_bytes} bytes exceeded (asked for {requested_bytes})")]
    MemoryLimit {
        plugin: String,
        function: String,
        limit_bytes: u64,
        requested_bytes: u64,
    },
    #[error("plugin `{plugin}`, function `{function}`: table limit of {limit} elements exceeded")]
    TableLimit {
        plugin: String,
        function: String,
        limit: u64,
    },
    #[error("plugin `{plugin}`, function `{function}`: output of {bytes} bytes exceeds the limit of {limit_bytes} bytes (`max_output_bytes`)")]
    OutputTooLarge {
        plugin: String,
        function: String,
        bytes: u64,
        limit_bytes: u64,
    },
    #[error("plugin `{plugin}`, function `{function}`: crashed ({reason})")]
    Trapped {
        plugin: String,
        function: String,
        reason: String,
    },
    #[error("plugin `{plugin}`, function `{function}`: returned invalid JSON ({message})")]
    InvalidOutput {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin `{plugin}`, function `{function}`: {message}")]
    Failed {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin `{plugin}`: cannot prepare the sandbox: {message}")]
    Sandbox { plugin: String, message: String },
    /// The host refused or cut one of the call's HTTP requests and the call
    /// then failed; `detail` is what the plugin reported.
    #[error("plugin `{plugin}`, function `{function}`: request to `{url}` refused: {problem} (the plugin reported: {detail})")]
    Outbound {
        plugin: String,
        function: String,
        url: String,
        problem: crate::plugins::outbound::OutboundProblem,
        detail: String,
    },
    /// Secrets the plugin is granted but that are not set.
    #[error("plugin `{plugin}`: {} not set; granted by its `secrets`, set in the environment or a .env file", names(.missing))]
    MissingSecrets {
        plugin: String,
        missing: Vec<String>,
    },
}

fn names(vars: &[String]) -> String {
    vars.iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
