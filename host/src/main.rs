use std::process::ExitCode;

fn main() -> ExitCode {
    composer::cli::main()
}
