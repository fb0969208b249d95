//! Writes a bench's figures into its own section of docs/benchmarks.md,
//! between `<!-- NAME:start -->` and `<!-- NAME:end -->`; a section not
//! there yet is added at the end under `heading`.

use std::path::Path;

pub fn write_section(name: &str, heading: &str, body: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {}: {e}; figures not written", path.display());
            return;
        }
    };
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let new = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &text[..a], &text[b + end.len()..])
        }
        _ => format!("{}\n\n## {heading}\n\n{section}\n", text.trim_end()),
    };
    match std::fs::write(&path, new) {
        Ok(()) => println!("written to docs/benchmarks.md ({name})"),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
