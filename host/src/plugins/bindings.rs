//! The one `bindgen!` of the plugin contract (`plugin-sdk/wit`). Host
//! imports (`log`, `progress`) are plain functions: they never trap.

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    exports: { default: async },
});

pub use self::composer::plugin::host::Level;
