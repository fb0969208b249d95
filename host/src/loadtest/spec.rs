//! What a load test runs: how many users, for how long, with which inputs.

use super::LoadError;
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;

/// When the test stops starting runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many runs in total (over all users).
    Iterations(u64),
    /// After this long; runs in flight then are let finish and counted.
    Duration(Duration),
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Runs in flight at once (one loop each).
    pub users: usize,
    pub stop: Stop,
    /// User `k` of `n` starts after `ramp_up * k / n`.
    pub ramp_up: Duration,
    pub inputs: InputSets,
}

impl LoadSpec {
    /// When user `k` starts.
    pub fn start_delay(&self, k: usize) -> Duration {
        if self.users == 0 {
            return Duration::ZERO;
        }
        self.ramp_up.mul_f64(k as f64 / self.users as f64)
    }
}

/// The inputs of each run: the same base for all, and, when given, one
/// set per line of an inputs file over it, taken in turn (run `i` takes
/// line `i mod lines`).
#[derive(Debug, Clone, Default)]
pub struct InputSets {
    pub base: Map<String, Value>,
    pub lines: Vec<Map<String, Value>>,
}

impl InputSets {
    /// The inputs of the `i`-th run (0-based).
    pub fn for_run(&self, i: u64) -> Map<String, Value> {
        let mut inputs = self.base.clone();
        if !self.lines.is_empty() {
            let line = &self.lines[(i % self.lines.len() as u64) as usize];
            inputs.extend(line.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        inputs
    }

    /// One JSON object per non-blank line.
    pub fn parse_lines(text: &str, path: &Path) -> Result<Vec<Map<String, Value>>, LoadError> {
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(m)) => lines.push(m),
                Ok(_) => {
                    return Err(LoadError::Inputs {
                        path: path.to_path_buf(),
                        message: format!("line {} is not a JSON object", n + 1),
                    })
                }
                Err(e) => {
                    return Err(LoadError::Inputs {
                        path: path.to_path_buf(),
                        message: format!("line {}: {e}", n + 1),
                    })
                }
            }
        }
        if lines.is_empty() {
            return Err(LoadError::Inputs {
                path: path.to_path_buf(),
                message: "no input set in it (one JSON object per line)".into(),
            });
        }
        Ok(lines)
    }

    pub fn read_lines(path: &Path) -> Result<Vec<Map<String, Value>>, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Inputs {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse_lines(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_cycled_over_the_base() {
        let lines = InputSets::parse_lines(
            "{\"topic\": \"a\"}\n\n{\"topic\": \"b\", \"n\": 2}\n",
            Path::new("x.jsonl"),
        )
        .unwrap();
        let mut base = Map::new();
        base.insert("topic".into(), json!("base"));
        base.insert("tone".into(), json!("dry"));
        let sets = InputSets { base, lines };
        assert_eq!(sets.for_run(0)["topic"], "a");
        assert_eq!(sets.for_run(1)["topic"], "b");
        assert_eq!(sets.for_run(2)["topic"], "a");
        assert_eq!(sets.for_run(3)["tone"], "dry");
    }

    #[test]
    fn bad_lines_name_their_number() {
        let e = InputSets::parse_lines("{}\n[1]\n", Path::new("x.jsonl")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(InputSets::parse_lines("\n", Path::new("x.jsonl")).is_err());
    }

    #[test]
    fn ramp_up_spreads_the_starts() {
        let spec = LoadSpec {
            users: 4,
            stop: Stop::Iterations(4),
            ramp_up: Duration::from_secs(4),
            inputs: InputSets::default(),
        };
        assert_eq!(spec.start_delay(0), Duration::ZERO);
        assert_eq!(spec.start_delay(2), Duration::from_secs(2));
    }
}
