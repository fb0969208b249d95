//! This process's CPU time and peak memory, for the report (Linux; None
//! elsewhere).

/// User + system CPU seconds of the whole process (all threads) so far.
pub fn cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu(&text)
}

/// Fields 14 and 15 of `/proc/self/stat` (utime, stime), in clock ticks
/// of 1/100 s (USER_HZ is 100 on every Linux that composer runs on).
fn parse_stat_cpu(text: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count after its `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The process's peak resident memory so far, bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    crate::metrics::collector::read_peak_rss()
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_cpu_fields_parse() {
        let line = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        assert_eq!(super::parse_stat_cpu(line), Some(3.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_cpu_time() {
        assert!(super::cpu_secs().is_some());
    }
}
