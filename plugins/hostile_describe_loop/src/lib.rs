//! `hostile_describe_loop`: a TEST-ONLY component whose `describe` busy-loops
//! forever, so a host that checks uploads by describing them must stop it
//! (fuel or time). Built to `plugins/dist/test/`, never next to real plugins.
//!
//! `Guest` is implemented by hand: `export!` only generates a well-behaved
//! `describe`.

use composer_plugin_sdk::bindings::Guest;
use composer_plugin_sdk::FunctionInfo;
use std::hint::black_box;

struct DescribeLoop;

impl Guest for DescribeLoop {
    fn describe() -> Vec<FunctionInfo> {
        // The counter keeps the loop from being optimized away.
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn call(function: String, _input: String) -> Result<String, String> {
        Err(format!("this plugin has no function `{function}`"))
    }
}

composer_plugin_sdk::bindings::__export_plugin_world!(DescribeLoop with_types_in composer_plugin_sdk::bindings);
