//! `composer cache stats|clear|prune`

use crate::cache::{CacheSettings, ResultCache};
use crate::store::Database;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// Entries, sizes and expired entries by kind.
    Stats,
    /// Remove every cached result.
    Clear,
    /// Remove expired results and unused audio.
    Prune,
}

pub fn run(command: CacheCommand, settings: &CacheSettings) -> ExitCode {
    let cache = match Database::open(&settings.path)
        .map_err(|e| e.to_string())
        .and_then(|db| ResultCache::new(settings, Some(Arc::new(db))))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        CacheCommand::Stats => cache.stats().map(|rows| {
            if rows.is_empty() {
                println!("the cache is empty ({})", settings.path.display());
            }
            let (mut n, mut bytes) = (0, 0);
            for (kind, count, size, expired) in rows {
                println!(
                    "{kind:<22} {count:>8} entries {:>10} bytes {expired:>6} expired",
                    size
                );
                n += count;
                bytes += size;
            }
            println!("{:<22} {n:>8} entries {bytes:>10} bytes", "total");
        }),
        CacheCommand::Clear => match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt
                .block_on(cache.clear())
                .map(|n| println!("removed {n} entries")),
            Err(e) => Err(e.to_string()),
        },
        CacheCommand::Prune => cache
            .prune()
            .map(|n| println!("removed {n} expired entries")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
