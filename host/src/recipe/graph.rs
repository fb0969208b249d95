//! A plan drawn for people and programs: Mermaid and Graphviz text for the
//! command line, and a JSON form for the web page.

use super::plan::{Endpoint, Plan, PlanEdge};
use serde_json::{json, Value};
use std::fmt::Write;

fn id(e: Endpoint) -> String {
    match e {
        Endpoint::Start => "START".into(),
        Endpoint::End => "END".into(),
        Endpoint::Node(i) => format!("n{i}"),
    }
}

/// Text safe inside a quoted label in both formats.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "'")
        .replace('\n', " ")
}

fn edge_label(edge: &PlanEdge) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(c) = &edge.condition {
        parts.push(label(c));
    }
    if edge.back {
        parts.push(format!("loop, max {}", edge.max_iterations));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let uses = |e: Endpoint| plan.edges.iter().any(|x| x.from == e || x.to == e);
    if uses(Endpoint::Start) || !plan.entries.is_empty() {
        out.push_str("    START([START])\n");
    }
    if uses(Endpoint::End) {
        out.push_str("    END([END])\n");
    }
    for (i, node) in plan.recipe.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "    n{i}[\"{}<br/><i>{}</i>\"]",
            label(&node.id),
            node.kind.type_name()
        );
    }
    // Entry nodes reached implicitly (no START edge) are drawn from START.
    for entry in implicit_entries(plan) {
        let _ = writeln!(out, "    START --> n{entry}");
    }
    for edge in &plan.edges {
        let arrow = if edge.back { "-.->" } else { "-->" };
        let (a, b) = (id(edge.from), id(edge.to));
        match edge_label(edge) {
            Some(l) => {
                let _ = writeln!(out, "    {a} {arrow}|\"{l}\"| {b}");
            }
            None => {
                let _ = writeln!(out, "    {a} {arrow} {b}");
            }
        }
    }
    out
}

pub fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n    rankdir=TB;\n",
        label(&plan.recipe.name)
    );
    out.push_str("    START [shape=circle];\n");
    if plan.edges.iter().any(|e| e.to == Endpoint::End) {
        out.push_str("    END [shape=doublecircle];\n");
    }
    for (i, node) in plan.recipe.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "    n{i} [shape=box, label=\"{}\\n({})\"];",
            label(&node.id),
            node.kind.type_name()
        );
    }
    for entry in implicit_entries(plan) {
        let _ = writeln!(out, "    START -> n{entry};");
    }
    for edge in &plan.edges {
        let mut attrs = Vec::new();
        if let Some(l) = edge_label(edge) {
            attrs.push(format!("label=\"{l}\""));
        }
        if edge.back {
            attrs.push("style=dashed".to_string());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(out, "    {} -> {}{attrs};", id(edge.from), id(edge.to));
    }
    out.push_str("}\n");
    out
}

/// Entry nodes with no explicit `START` edge: drawn from `START` all the
/// same.
fn implicit_entries(plan: &Plan) -> impl Iterator<Item = usize> + '_ {
    plan.entries.iter().copied().filter(|&entry| {
        !plan.nodes[entry]
            .incoming
            .iter()
            .any(|&e| plan.edges[e].from == Endpoint::Start)
    })
}

fn endpoint_name(plan: &Plan, e: Endpoint) -> String {
    match e {
        Endpoint::Start => "START".into(),
        Endpoint::End => "END".into(),
        Endpoint::Node(i) => plan.recipe.nodes[i].id.clone(),
    }
}

/// The graph as data: `{"nodes": [{"id", "type", "loop"}], "edges":
/// [{"from", "to", "condition", "back", "max_iterations"}]}`, with the
/// implicit `START` edges into entry nodes made explicit. Node ids are the
/// recipe's, so events (which name nodes by id) map onto it directly.
pub fn plan_json(plan: &Plan) -> Value {
    let nodes: Vec<Value> = plan
        .recipe
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            json!({
                "id": node.id,
                "type": node.kind.type_name(),
                "loop": plan.nodes[i].in_loop,
            })
        })
        .collect();
    let mut edges = Vec::new();
    for entry in implicit_entries(plan) {
        edges.push(json!({
            "from": "START",
            "to": plan.recipe.nodes[entry].id,
            "condition": null,
            "back": false,
        }));
    }
    for edge in &plan.edges {
        let mut e = json!({
            "from": endpoint_name(plan, edge.from),
            "to": endpoint_name(plan, edge.to),
            "condition": edge.condition,
            "back": edge.back,
        });
        if edge.back {
            e["max_iterations"] = json!(edge.max_iterations);
        }
        edges.push(e);
    }
    json!({"nodes": nodes, "edges": edges})
}
