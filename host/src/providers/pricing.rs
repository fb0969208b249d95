//! Cost of a call from its token usage: USD per million input and output
//! tokens, by `provider/model`. Defaults are the providers' published list
//! prices for common models (November 2026 may differ: override them in
//! composer.toml under `[providers.prices]`).

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

fn defaults() -> BTreeMap<&'static str, (f64, f64)> {
    BTreeMap::from([
        ("openai/gpt-4o", (2.50, 10.00)),
        ("openai/gpt-4o-mini", (0.15, 0.60)),
        ("openai/gpt-4.1", (2.00, 8.00)),
        ("openai/gpt-4.1-mini", (0.40, 1.60)),
        ("openai/gpt-4.1-nano", (0.10, 0.40)),
        ("anthropic/claude-3-5-haiku-latest", (0.80, 4.00)),
        ("anthropic/claude-3-5-sonnet-latest", (3.00, 15.00)),
        ("anthropic/claude-sonnet-4-0", (3.00, 15.00)),
        ("anthropic/claude-opus-4-0", (15.00, 75.00)),
        ("google/gemini-1.5-flash", (0.075, 0.30)),
        ("google/gemini-1.5-pro", (1.25, 5.00)),
        ("google/gemini-2.0-flash", (0.10, 0.40)),
        ("google/gemini-2.5-flash", (0.30, 2.50)),
        ("google/gemini-2.5-pro", (1.25, 10.00)),
    ])
}

/// The price table: defaults with configured prices laid over them.
#[derive(Debug, Clone)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    pub fn new(overrides: &BTreeMap<String, Price>) -> PriceTable {
        let mut prices: BTreeMap<String, Price> = defaults()
            .into_iter()
            .map(|(k, (i, o))| {
                (
                    k.to_string(),
                    Price {
                        input_per_million: i,
                        output_per_million: o,
                    },
                )
            })
            .collect();
        prices.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        PriceTable { prices }
    }

    /// USD for this usage, when the model has a price.
    pub fn cost(
        &self,
        provider: &str,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Option<f64> {
        let price = self.prices.get(&format!("{provider}/{model}"))?;
        Some(
            input_tokens as f64 * price.input_per_million / 1e6
                + output_tokens as f64 * price.output_per_million / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_have_a_cost_and_overrides_win() {
        let t = PriceTable::new(&BTreeMap::new());
        let c = t.cost("openai", "gpt-4o-mini", 1_000_000, 1_000_000);
        assert!(c.is_some_and(|c| (c - 0.75).abs() < 1e-9));
        assert_eq!(t.cost("openai", "unknown", 10, 10), None);
        let o = BTreeMap::from([(
            "openai/gpt-4o-mini".to_string(),
            Price {
                input_per_million: 1.0,
                output_per_million: 0.0,
            },
        )]);
        let c = PriceTable::new(&o).cost("openai", "gpt-4o-mini", 2_000_000, 5);
        assert!(c.is_some_and(|c| (c - 2.0).abs() < 1e-9));
    }
}
