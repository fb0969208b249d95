//! `hostile_describe_alloc`: a TEST-ONLY component whose `describe`
//! allocates and touches 1 MiB chunks until it is stopped, so a host that
//! checks uploads by describing them must cap its memory. Built to
//! `plugins/dist/test/`, never next to real plugins.
//!
//! `Guest` is implemented by hand: `export!` only generates a well-behaved
//! `describe`.

use composer_plugin_sdk::bindings::Guest;
use composer_plugin_sdk::FunctionInfo;
use std::hint::black_box;

const MIB: usize = 1024 * 1024;

struct DescribeAlloc;

impl Guest for DescribeAlloc {
    fn describe() -> Vec<FunctionInfo> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; MIB];
            for (i, byte) in chunk.iter_mut().enumerate().step_by(4096) {
                *byte = i as u8 | 1; // touch every page
            }
            chunks.push(black_box(chunk));
        }
    }

    fn call(function: String, _input: String) -> Result<String, String> {
        Err(format!("this plugin has no function `{function}`"))
    }
}

composer_plugin_sdk::bindings::__export_plugin_world!(DescribeAlloc with_types_in composer_plugin_sdk::bindings);
