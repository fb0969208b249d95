//! Functions that `function_task` and `reduce` nodes call: the registry
//! (scopes LOCAL > PROJECT > CORE) and the WebAssembly plugin host.
//!
//! - `bindings`: the one `bindgen!` of `plugin-sdk/wit`;
//! - `runtime`: engine, compiled-code cache, fresh instance per call;
//! - `limits`: fuel, memory, tables, instances, time, output size;
//! - `sandbox`: WASI with no ambient authority, granted folders and
//!   variables only;
//! - `outbound`: HTTP requests to granted hosts only, capped and timed;
//! - `discovery`: where plugins are looked for;
//! - `catalog`: plugin folders → registered functions (lazily);
//! - `registry`: names → functions, by scope.

pub mod bindings;
pub mod catalog;
pub mod discovery;
pub mod error;
pub mod limits;
pub mod outbound;
pub mod registry;
pub mod runtime;
pub mod sandbox;

pub use error::PluginError;
pub use limits::{LimitOverrides, PluginLimits};
pub use registry::{
    CallContext, CallError, Function, FunctionInfo, FunctionRegistry, RunPluginPolicy, Scope,
};
pub use sandbox::{Grant, OpenGrants};
