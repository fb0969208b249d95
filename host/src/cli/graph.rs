//! `composer graph RECIPE [--format mermaid|dot]`

use crate::recipe::graph::{dot, mermaid};
use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

pub fn run(path: &Path, format: GraphFormat) -> ExitCode {
    match crate::check_file(path) {
        Ok((_, plan)) => {
            let text = match format {
                GraphFormat::Mermaid => mermaid(&plan),
                GraphFormat::Dot => dot(&plan),
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            super::print_failure(&failure);
            ExitCode::FAILURE
        }
    }
}
