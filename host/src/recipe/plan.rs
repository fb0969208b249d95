//! The plan: a recipe's graph with entry nodes, edges and loops.
//!
//! Without `edges`, nodes form a chain in list order. Loops are the strongly
//! connected parts of the graph; in each, the edges that lead back to a node
//! already on the walk from the loop's entry are its back edges. The
//! scheduler ignores back edges when deciding whether a node is ready on the
//! first pass, and re-runs the loop body when one is taken.

use super::diagnostic::{Code, Diagnostic};
use super::model::{Recipe, END, START};
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use std::collections::HashMap;
use std::sync::Arc;

/// Loop bound when neither the recipe nor the back edge sets one.
pub const DEFAULT_MAX_ITERATIONS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Start,
    End,
    Node(usize),
}

#[derive(Debug, Clone)]
pub struct PlanEdge {
    pub from: Endpoint,
    pub to: Endpoint,
    pub condition: Option<String>,
    /// Leads back into its loop (re-runs the loop body when taken).
    pub back: bool,
    /// Set on back edges: the bound for the loop it closes.
    pub max_iterations: u32,
    /// `edges[2]`, or `(order)` for edges implied by list order.
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct PlanNode {
    /// Edges into this node, by index into `Plan::edges` (back edges included).
    pub incoming: Vec<usize>,
    pub outgoing: Vec<usize>,
    /// The loop this node belongs to, if any.
    pub in_loop: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Loop {
    /// Node indices, in recipe order.
    pub nodes: Vec<usize>,
    pub back_edges: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub recipe: Arc<Recipe>,
    pub nodes: Vec<PlanNode>,
    pub edges: Vec<PlanEdge>,
    pub loops: Vec<Loop>,
    pub entries: Vec<usize>,
    pub index: HashMap<String, usize>,
}

impl Plan {
    pub fn build(recipe: Arc<Recipe>) -> Result<Plan, Vec<Diagnostic>> {
        let index: HashMap<String, usize> = recipe
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let endpoint = |name: &str| match name {
            START => Some(Endpoint::Start),
            END => Some(Endpoint::End),
            other => index.get(other).map(|&i| Endpoint::Node(i)),
        };
        let mut edges = Vec::new();
        match &recipe.edges {
            Some(list) => {
                for e in list {
                    // The validator has checked the names; skip defensively.
                    let (Some(from), Some(to)) = (endpoint(&e.from), endpoint(&e.to)) else {
                        continue;
                    };
                    edges.push(PlanEdge {
                        from,
                        to,
                        condition: e.condition.clone(),
                        back: false,
                        max_iterations: e
                            .max_iterations
                            .or(recipe.max_iterations)
                            .unwrap_or(DEFAULT_MAX_ITERATIONS),
                        path: e.path.clone(),
                    });
                }
            }
            None => {
                for i in 1..recipe.nodes.len() {
                    edges.push(PlanEdge {
                        from: Endpoint::Node(i - 1),
                        to: Endpoint::Node(i),
                        condition: None,
                        back: false,
                        max_iterations: DEFAULT_MAX_ITERATIONS,
                        path: "(list order)".into(),
                    });
                }
            }
        }
        let mut nodes = vec![PlanNode::default(); recipe.nodes.len()];
        for (e, edge) in edges.iter().enumerate() {
            if let Endpoint::Node(i) = edge.from {
                nodes[i].outgoing.push(e);
            }
            if let Endpoint::Node(i) = edge.to {
                nodes[i].incoming.push(e);
            }
        }

        let mut plan = Plan {
            recipe,
            nodes,
            edges,
            loops: Vec::new(),
            entries: Vec::new(),
            index,
        };
        plan.find_loops();
        plan.entries = (0..plan.nodes.len())
            .filter(|&i| {
                // No incoming edge at all, or started from START with every
                // other way in being a loop's back edge, or (a self-loop)
                // every way in is START or the node's own back edge.
                let incoming: Vec<&PlanEdge> = plan.nodes[i]
                    .incoming
                    .iter()
                    .map(|&e| &plan.edges[e])
                    .collect();
                let own_back = |e: &PlanEdge| e.back && e.from == Endpoint::Node(i);
                incoming.is_empty()
                    || (incoming.iter().any(|e| e.from == Endpoint::Start)
                        && incoming.iter().all(|e| e.back || e.from == Endpoint::Start))
                    || incoming
                        .iter()
                        .all(|e| own_back(e) || e.from == Endpoint::Start)
            })
            .collect();
        plan.check()?;
        Ok(plan)
    }

    fn find_loops(&mut self) {
        let mut graph: DiGraph<usize, usize> = DiGraph::new();
        let ids: Vec<_> = (0..self.nodes.len()).map(|i| graph.add_node(i)).collect();
        for (e, edge) in self.edges.iter().enumerate() {
            if let (Endpoint::Node(a), Endpoint::Node(b)) = (edge.from, edge.to) {
                graph.add_edge(ids[a], ids[b], e);
            }
        }
        let mut components = tarjan_scc(&graph);
        // Recipe order makes loop numbering and back-edge choice predictable.
        for c in components.iter_mut() {
            c.sort_by_key(|n| graph[*n]);
        }
        components.sort_by_key(|c| c.first().map(|n| graph[*n]));
        for component in components {
            let members: Vec<usize> = component.iter().map(|n| graph[*n]).collect();
            let self_loop = members.len() == 1
                && self.nodes[members[0]]
                    .outgoing
                    .iter()
                    .any(|&e| self.edges[e].to == Endpoint::Node(members[0]));
            if members.len() < 2 && !self_loop {
                continue;
            }
            let loop_id = self.loops.len();
            for &m in &members {
                self.nodes[m].in_loop = Some(loop_id);
            }
            // The loop's entry: the first member reached from outside it.
            let header = members
                .iter()
                .copied()
                .find(|&m| {
                    self.nodes[m]
                        .incoming
                        .iter()
                        .any(|&e| match self.edges[e].from {
                            Endpoint::Node(src) => self.nodes[src].in_loop != Some(loop_id),
                            _ => true,
                        })
                })
                .unwrap_or(members[0]);
            let back_edges = self.back_edges_from(header, loop_id);
            for &e in &back_edges {
                self.edges[e].back = true;
            }
            self.loops.push(Loop {
                nodes: members,
                back_edges,
            });
        }
    }

    /// Depth-first walk inside one loop: an edge to a node still on the walk
    /// closes the loop.
    fn back_edges_from(&self, header: usize, loop_id: usize) -> Vec<usize> {
        let mut back = Vec::new();
        let mut on_path = vec![false; self.nodes.len()];
        let mut visited = vec![false; self.nodes.len()];
        // Iterative DFS: (node, next outgoing position).
        let mut stack = vec![(header, 0usize)];
        visited[header] = true;
        on_path[header] = true;
        while let Some((node, pos)) = stack.pop() {
            let outgoing = &self.nodes[node].outgoing;
            if pos >= outgoing.len() {
                on_path[node] = false;
                continue;
            }
            stack.push((node, pos + 1));
            let e = outgoing[pos];
            let Endpoint::Node(next) = self.edges[e].to else {
                continue;
            };
            if self.nodes[next].in_loop != Some(loop_id) {
                continue;
            }
            if on_path[next] {
                back.push(e);
            } else if !visited[next] {
                visited[next] = true;
                on_path[next] = true;
                stack.push((next, 0));
            }
        }
        back.sort_unstable();
        back
    }

    /// Structural problems that only the whole graph shows.
    fn check(&self) -> Result<(), Vec<Diagnostic>> {
        let mut problems = Vec::new();
        // Every node must be reachable from an entry, following forward and
        // back edges alike.
        let mut reached = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = self.entries.clone();
        for &i in &stack {
            reached[i] = true;
        }
        while let Some(n) = stack.pop() {
            for &e in &self.nodes[n].outgoing {
                if let Endpoint::Node(next) = self.edges[e].to {
                    if !reached[next] {
                        reached[next] = true;
                        stack.push(next);
                    }
                }
            }
        }
        for (i, r) in reached.iter().enumerate() {
            if !r {
                let id = &self.recipe.nodes[i].id;
                problems.push(
                    Diagnostic::error(
                        Code::UnreachableNode,
                        format!("node `{id}` can never run: no path leads to it from START or an entry node"),
                    )
                    .at(format!("nodes[{i}]")),
                );
            }
        }
        if self.entries.is_empty() && !self.nodes.is_empty() {
            problems.push(
                Diagnostic::error(
                    Code::UnreachableNode,
                    "the recipe has no entry node: every node waits for another (add an edge from START)",
                )
                .at("edges"),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            if let Some(file) = &self.recipe.file {
                for p in &mut problems {
                    p.file = Some(file.clone());
                }
            }
            Err(problems)
        }
    }

    pub fn node_name(&self, endpoint: Endpoint) -> &str {
        match endpoint {
            Endpoint::Start => START,
            Endpoint::End => END,
            Endpoint::Node(i) => &self.recipe.nodes[i].id,
        }
    }
}
