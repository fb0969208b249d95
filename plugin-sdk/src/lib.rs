//! Write composer plugins as plain Rust functions.
//!
//! A plugin function takes one serde-deserializable input (the node's
//! resolved inputs, as a JSON object) and returns a serializable output or
//! an error message:
//!
//! ```ignore
//! use composer_plugin_sdk::{export, log};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { text: String }
//!
//! #[derive(Serialize)]
//! struct Output { words: usize }
//!
//! fn count_words(input: Input) -> Result<Output, String> {
//!     log::info("counting");
//!     Ok(Output { words: input.text.split_whitespace().count() })
//! }
//!
//! export!(count_words: "Counts the words of `text`" (pure));
//! ```
//!
//! Build it for `wasm32-wasip2` (`composer plugin build`) and the result is
//! a component that composer loads from its plugin folders. The contract is
//! `wit/plugin.wit`.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "composer_plugin_sdk::bindings",
    });
}

pub use bindings::FunctionInfo;
#[doc(hidden)]
pub use serde_json;

/// Logging into the run's events.
pub mod log {
    use crate::bindings::composer::plugin::host::{self, Level};

    pub fn trace(message: &str) {
        host::log(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}

/// Reports progress of a long call (`done` of `total` units).
pub fn progress(done: u64, total: u64) {
    bindings::composer::plugin::host::progress(done, total);
}

/// Decodes the input, calls `f`, encodes the output. Used by `export!`.
#[doc(hidden)]
pub fn invoke<I, O, E>(input: &str, f: impl FnOnce(I) -> Result<O, E>) -> Result<String, String>
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
    E: std::fmt::Display,
{
    let input: I = serde_json::from_str(input).map_err(|e| format!("invalid input: {e}"))?;
    let output = f(input).map_err(|e| e.to_string())?;
    serde_json::to_string(&output).map_err(|e| format!("cannot encode output: {e}"))
}

/// Describes one function. Used by `export!`.
#[doc(hidden)]
pub fn info(name: &str, description: &str, pure: bool) -> FunctionInfo {
    FunctionInfo {
        name: name.to_string(),
        description: description.to_string(),
        tags: Vec::new(),
        input_schema: None,
        pure,
    }
}

/// Exports plain Rust functions as the plugin's functions:
///
/// ```ignore
/// export!(split_transcript: "Groups lines into speaker turns" (pure));
/// export!(
///     combine_audio_files: "Joins WAV segments",
///     count_words: "Counts words" (pure),
/// );
/// ```
///
/// `(pure)` marks a function whose output depends only on its input (the
/// host may cache it). Each function is `fn(I) -> Result<O, E>` with
/// `I: Deserialize`, `O: Serialize`, `E: Display`.
#[macro_export]
macro_rules! export {
    ($($name:ident : $description:literal $(($pure:ident))?),+ $(,)?) => {
        struct __ComposerPlugin;

        impl $crate::bindings::Guest for __ComposerPlugin {
            fn describe() -> ::std::vec::Vec<$crate::FunctionInfo> {
                ::std::vec![$(
                    $crate::info(stringify!($name), $description, $crate::export!(@pure $($pure)?))
                ),+]
            }

            fn call(
                function: ::std::string::String,
                input: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                match function.as_str() {
                    $(stringify!($name) => $crate::invoke(&input, $name),)+
                    other => ::std::result::Result::Err(::std::format!(
                        "this plugin has no function `{}`", other
                    )),
                }
            }
        }

        $crate::bindings::__export_plugin_world!(__ComposerPlugin with_types_in $crate::bindings);
    };
    (@pure pure) => { true };
    (@pure) => { false };
}
