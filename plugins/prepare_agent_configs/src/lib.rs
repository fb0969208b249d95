//! `prepare_agent_configs`: picks the expert agents of a mix-of-agents
//! analysis.
//!
//! Input: `question` (text), `analysis_focus` (text, may be empty or
//! absent), and optional `models` (a list of model mappings, e.g.
//! `{"provider": "openai", "model": "gpt-4o"}`).
//!
//! Five perspectives exist: technical, economic, ethical, user experience
//! and risk. Each is scored by how many of its keywords occur in
//! `analysis_focus` (or in `question` when the focus is empty); those that
//! score are chosen, best first, and the list is topped up to three in the
//! fixed order above. The choice is deterministic: same input, same agents.
//!
//! Output: a list of 3 to 5 mappings `{agent_name, agent_expertise,
//! agent_focus_areas, question}`, plus `model_override` when `models` is
//! given (assigned round-robin in list order).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Deserialize)]
pub struct Input {
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub analysis_focus: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<Value>>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Agent {
    pub agent_name: String,
    pub agent_expertise: String,
    pub agent_focus_areas: Vec<String>,
    pub question: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_override: Option<Map<String, Value>>,
}

struct Perspective {
    name: &'static str,
    expertise: &'static str,
    focus_areas: [&'static str; 3],
    /// Lowercase word prefixes that point to this perspective.
    keywords: &'static [&'static str],
}

const PERSPECTIVES: [Perspective; 5] = [
    Perspective {
        name: "Technical Analyst",
        expertise: "Technology, engineering and implementation feasibility",
        focus_areas: [
            "feasibility",
            "architecture and scalability",
            "implementation challenges",
        ],
        keywords: &[
            "technic",
            "technolog",
            "engineer",
            "architect",
            "implement",
            "performance",
            "scal",
            "software",
            "hardware",
            "code",
            "system",
            "infrastructure",
            "data",
            "algorithm",
            "ai",
        ],
    },
    Perspective {
        name: "Economic Analyst",
        expertise: "Economics, markets and business strategy",
        focus_areas: ["costs and benefits", "market dynamics", "business models"],
        keywords: &[
            "econom", "cost", "market", "business", "financ", "price", "pricing", "revenue",
            "invest", "roi", "budget", "profit", "money", "competit", "growth",
        ],
    },
    Perspective {
        name: "Ethics Specialist",
        expertise: "Ethics, law and social impact",
        focus_areas: [
            "fairness and bias",
            "privacy and consent",
            "societal impact",
        ],
        keywords: &[
            "ethic",
            "moral",
            "fair",
            "bias",
            "privacy",
            "societ",
            "social",
            "legal",
            "law",
            "regulat",
            "rights",
            "consent",
            "equity",
            "responsib",
        ],
    },
    Perspective {
        name: "User Experience Expert",
        expertise: "User needs, usability and adoption",
        focus_areas: [
            "user needs",
            "usability and accessibility",
            "adoption barriers",
        ],
        keywords: &[
            "user",
            "ux",
            "usab",
            "customer",
            "design",
            "accessib",
            "adopt",
            "experience",
            "human",
            "people",
            "interface",
            "onboard",
        ],
    },
    Perspective {
        name: "Risk Assessor",
        expertise: "Risk, security and failure analysis",
        focus_areas: [
            "failure modes",
            "security and safety",
            "mitigation strategies",
        ],
        keywords: &[
            "risk",
            "secur",
            "safe",
            "threat",
            "failure",
            "complian",
            "vulnerab",
            "danger",
            "attack",
            "uncertain",
            "mitigat",
        ],
    },
];

const MIN_AGENTS: usize = 3;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How many words of `text` start with a keyword of `p` ("ai" and "ux"
/// must match whole words: they begin too many unrelated ones).
fn score(p: &Perspective, words: &[String]) -> usize {
    words
        .iter()
        .filter(|w| {
            p.keywords.iter().any(|k| {
                if k.len() <= 3 {
                    w.as_str() == *k
                } else {
                    w.starts_with(k)
                }
            })
        })
        .count()
}

/// The items of a comma/semicolon/newline separated focus that point to `p`.
fn matching_focus_items(p: &Perspective, focus: &str) -> Vec<String> {
    focus
        .split([',', ';', '\n'])
        .map(|s| s.trim().trim_start_matches(['-', '*', ' ']).trim())
        .filter(|s| !s.is_empty() && score(p, &words(s)) > 0)
        .map(str::to_string)
        .collect()
}

pub fn prepare_agent_configs(input: Input) -> Result<Vec<Agent>, String> {
    let question = input.question.unwrap_or_default().trim().to_string();
    let focus = input.analysis_focus.unwrap_or_default();
    let basis = if focus.trim().is_empty() {
        &question
    } else {
        &focus
    };
    let basis_words = words(basis);

    let mut chosen: Vec<(usize, usize)> = PERSPECTIVES
        .iter()
        .enumerate()
        .map(|(i, p)| (i, score(p, &basis_words)))
        .filter(|(_, s)| *s > 0)
        .collect();
    // Highest score first; ties keep the fixed order (the sort is stable).
    chosen.sort_by_key(|&(_, score)| std::cmp::Reverse(score));
    let mut order: Vec<usize> = chosen.into_iter().map(|(i, _)| i).collect();
    for i in 0..PERSPECTIVES.len() {
        if order.len() >= MIN_AGENTS {
            break;
        }
        if !order.contains(&i) {
            order.push(i);
        }
    }

    let models = match input.models {
        Some(models) => models
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m {
                Value::Object(map) => Ok(map),
                _ => Err(format!(
                    "models[{i}] is not a mapping (like {{\"provider\": ..., \"model\": ...}})"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };

    Ok(order
        .into_iter()
        .enumerate()
        .map(|(n, i)| {
            let p = &PERSPECTIVES[i];
            let mut focus_areas = matching_focus_items(p, &focus);
            for area in p.focus_areas {
                if !focus_areas.iter().any(|a| a.eq_ignore_ascii_case(area)) {
                    focus_areas.push(area.to_string());
                }
            }
            Agent {
                agent_name: p.name.to_string(),
                agent_expertise: p.expertise.to_string(),
                agent_focus_areas: focus_areas,
                question: question.clone(),
                model_override: (!models.is_empty()).then(|| models[n % models.len()].clone()),
            }
        })
        .collect())
}

composer_plugin_sdk::export!(
    prepare_agent_configs: "Chooses 3 to 5 expert agents (technical, economic, ethical, user experience, risk) for a question and its analysis focus" (pure)
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(question: &str, focus: &str, models: Option<Value>) -> Vec<Agent> {
        let input: Input = serde_json::from_value(
            json!({"question": question, "analysis_focus": focus, "models": models}),
        )
        .unwrap();
        prepare_agent_configs(input).unwrap()
    }

    fn names(agents: &[Agent]) -> Vec<&str> {
        agents.iter().map(|a| a.agent_name.as_str()).collect()
    }

    #[test]
    fn empty_focus_gives_the_three_defaults() {
        let agents = run("Should we do it?", "", None);
        assert_eq!(
            names(&agents),
            ["Technical Analyst", "Economic Analyst", "Ethics Specialist"]
        );
        assert!(agents
            .iter()
            .all(|a| a.question == "Should we do it?" && a.model_override.is_none()));
        assert_eq!(agents[0].agent_focus_areas.len(), 3);
    }

    #[test]
    fn focus_keywords_choose_and_order_the_agents() {
        let agents = run(
            "Adopt AI tutors?",
            "user adoption, security risks, risk of failure",
            None,
        );
        assert_eq!(
            names(&agents),
            [
                "Risk Assessor",
                "User Experience Expert",
                "Technical Analyst"
            ]
        );
        assert_eq!(
            agents[0].agent_focus_areas[..2],
            ["security risks", "risk of failure"]
        );
        assert_eq!(agents[1].agent_focus_areas[0], "user adoption");
    }

    #[test]
    fn many_focus_areas_give_five_agents() {
        let agents = run(
            "q",
            "technical performance; market costs; ethical bias; usability; safety",
            None,
        );
        assert_eq!(agents.len(), 5);
    }

    #[test]
    fn question_is_used_when_focus_is_empty_and_it_is_deterministic() {
        let a = run("What are the privacy and legal implications?", "", None);
        assert_eq!(a[0].agent_name, "Ethics Specialist");
        assert_eq!(
            a,
            run("What are the privacy and legal implications?", "", None)
        );
    }

    #[test]
    fn models_are_assigned_round_robin() {
        let models =
            json!([{"provider": "openai", "model": "a"}, {"provider": "mock", "model": "b"}]);
        let agents = run("q", "", Some(models));
        let picked: Vec<_> = agents
            .iter()
            .map(|a| a.model_override.as_ref().unwrap()["model"].clone())
            .collect();
        assert_eq!(picked, [json!("a"), json!("b"), json!("a")]);
        let out = serde_json::to_value(&agents[0]).unwrap();
        assert_eq!(out["model_override"]["provider"], "openai");
    }

    #[test]
    fn non_mapping_models_are_an_error() {
        let input: Input =
            serde_json::from_value(json!({"question": "q", "models": ["gpt"]})).unwrap();
        assert!(prepare_agent_configs(input)
            .unwrap_err()
            .contains("models[0]"));
    }

    #[test]
    fn output_has_no_model_override_key_without_models() {
        let out = serde_json::to_value(run("q", "", None)).unwrap();
        assert!(out[0].get("model_override").is_none());
        assert!(out[0]["agent_focus_areas"].is_array());
    }
}
