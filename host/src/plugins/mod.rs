//! Functions that `function_task` and `reduce` nodes call. The registry is
//! the interface; WebAssembly components fill the PROJECT and LOCAL scopes
//! (plugins issue), native Rust functions the CORE scope.

pub mod registry;

pub use registry::{CallContext, Function, FunctionInfo, FunctionRegistry, Scope};
