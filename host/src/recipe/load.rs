//! Loading a recipe: read the file, follow its imports, gather definitions,
//! resolve references, then hand the recipe mapping to `validate`.
//!
//! Each file is read once per load; sub-recipes (`recipe_path`) are loaded
//! through the same `Loader`, which tracks the chain of files being loaded so
//! that a recipe that (indirectly) contains itself is refused at load time.

use super::diagnostic::{Code, Diagnostic};
use super::document::{self, join_index, Document, Format, Spans};
use super::model::Recipe;
use super::plan::Plan;
use super::references::Resolver;
use super::validate;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A recipe that loaded, with the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub recipe: Arc<Recipe>,
    pub warnings: Vec<Diagnostic>,
}

/// A recipe that did not load: every problem found (errors and warnings).
#[derive(Debug)]
pub struct LoadFailure {
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadFailure {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in self.errors() {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadFailure {}

/// Loads the recipe in `path`.
pub fn load_file(path: &Path) -> Result<Loaded, LoadFailure> {
    Loader::default().load_recipe_file(path)
}

/// Loads a recipe held in memory (library API, HTTP body). Relative paths in
/// it (imports, prompt files, sub-recipes) start from `base_dir`.
pub fn load_str(text: &str, format: Format, base_dir: &Path) -> Result<Loaded, LoadFailure> {
    let name = match format {
        Format::Json => "<recipe>.json",
        Format::Yaml => "<recipe>.yaml",
    };
    let file = base_dir.join(name);
    let doc = document::parse(text, format, &file).map_err(|d| LoadFailure {
        diagnostics: vec![d],
    })?;
    Loader::default().load_document(doc, &file, false)
}

/// Reads and parses one file, refusing oversized ones before reading them.
pub fn read_document(path: &Path) -> Result<Document, Diagnostic> {
    let io_error = |e: std::io::Error| {
        Diagnostic::error(Code::Io, format!("cannot read `{}`: {e}", path.display())).in_file(path)
    };
    let size = std::fs::metadata(path).map_err(io_error)?.len();
    if size > document::MAX_FILE_BYTES as u64 {
        return Err(document::too_large(
            usize::try_from(size).unwrap_or(usize::MAX),
            path,
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io_error)?;
    document::parse(&text, Format::from_path(path), path)
}

#[derive(Default)]
pub struct Loader {
    /// Recipe files being loaded, outermost first (for recursion checks).
    recipe_chain: Vec<PathBuf>,
    /// Sub-recipes already loaded (with their plans), by canonical path.
    loaded: HashMap<PathBuf, (Arc<Recipe>, Arc<Plan>)>,
}

impl Loader {
    pub fn load_recipe_file(&mut self, path: &Path) -> Result<Loaded, LoadFailure> {
        let doc = read_document(path).map_err(|d| LoadFailure {
            diagnostics: vec![d],
        })?;
        self.load_document(doc, path, true)
    }

    /// Loads a sub-recipe named by `recipe_path` and builds its plan,
    /// reusing earlier loads and refusing a chain that leads back to a
    /// recipe being loaded.
    pub fn load_sub_recipe(
        &mut self,
        path: &Path,
    ) -> Result<(Arc<Recipe>, Arc<Plan>), Vec<Diagnostic>> {
        let canonical = std::fs::canonicalize(path).map_err(|e| {
            vec![Diagnostic::error(
                Code::SubRecipe,
                format!("cannot read sub-recipe `{}`: {e}", path.display()),
            )]
        })?;
        if let Some(start) = self.recipe_chain.iter().position(|p| *p == canonical) {
            let mut chain: Vec<String> = self.recipe_chain[start..]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            chain.push(canonical.display().to_string());
            return Err(vec![Diagnostic::error(
                Code::RecipeCycle,
                format!("recipe_path is recursive: {}", chain.join(" -> ")),
            )]);
        }
        if let Some(loaded) = self.loaded.get(&canonical) {
            return Ok(loaded.clone());
        }
        let loaded = self
            .load_recipe_file(&canonical)
            .map_err(|f| f.diagnostics)?;
        let plan = Arc::new(Plan::build(loaded.recipe.clone())?);
        self.loaded
            .insert(canonical, (loaded.recipe.clone(), plan.clone()));
        Ok((loaded.recipe, plan))
    }

    fn load_document(
        &mut self,
        doc: Document,
        file: &Path,
        on_disk: bool,
    ) -> Result<Loaded, LoadFailure> {
        let canonical = if on_disk {
            std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf())
        } else {
            file.to_path_buf()
        };
        self.recipe_chain.push(canonical.clone());
        let result = self.load_top(doc, file, &canonical);
        self.recipe_chain.pop();
        result
    }

    fn load_top(
        &mut self,
        doc: Document,
        file: &Path,
        canonical: &Path,
    ) -> Result<Loaded, LoadFailure> {
        let mut out: Vec<Diagnostic> = Vec::new();
        let base_dir = canonical
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let Value::Object(top) = doc.value else {
            return Err(LoadFailure {
                diagnostics: vec![Diagnostic::error(
                    Code::NotAMapping,
                    "a recipe file must be a mapping with `recipe:` (or `name:` and `nodes:`) at its top level",
                )
                .in_file(file)
                .at_line(1, 1)],
            });
        };

        // Imports first (later ones override earlier ones), then this file's
        // own definitions, which override all imports.
        let mut origins: HashMap<String, PathBuf> = HashMap::new();
        let mut import_chain = vec![canonical.to_path_buf()];
        let (imported, lazies) = import_all(
            top.get("imports"),
            "imports",
            &base_dir,
            file,
            &doc.spans,
            &mut import_chain,
            &mut origins,
            &mut out,
        );
        let own_definitions = match top.get("definitions") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                out.push(locate(
                    Diagnostic::error(Code::WrongType, "`definitions` must be a mapping")
                        .at("definitions"),
                    file,
                    &doc.spans,
                    "",
                ));
                Map::new()
            }
        };
        for name in own_definitions.keys() {
            origins.insert(name.clone(), file.to_path_buf());
        }

        // The recipe itself: wrapped under `recipe:` or flat at the top.
        let (body, prefix) = match top.get("recipe") {
            Some(Value::Object(recipe)) => (recipe.clone(), "recipe"),
            Some(_) => {
                out.push(locate(
                    Diagnostic::error(Code::WrongType, "`recipe` must be a mapping").at(""),
                    file,
                    &doc.spans,
                    "recipe",
                ));
                return Err(LoadFailure { diagnostics: out });
            }
            None => {
                let mut flat = top.clone();
                flat.remove("imports");
                flat.remove("definitions");
                (flat, "")
            }
        };

        // `recipe_path` is read before references are resolved: a reference
        // in it would turn into a path full of JSON.
        plain_recipe_paths(&body, &mut out);
        let mut resolver = Resolver::with_imports(&own_definitions, imported);
        let mut ref_diags = Vec::new();
        let resolved = resolver.resolve(&Value::Object(body), "", &mut ref_diags);
        // Problems in imported definitions count only where the recipe
        // reaches them (Content Composer resolves what the recipe uses).
        let reached = resolver.reached_from(None);
        for lazy in lazies {
            out.push(lazy.settle(&reached));
        }
        for d in ref_diags {
            let in_definition = d.path.as_deref().and_then(|p| {
                p.strip_prefix("definitions.")
                    .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest).to_string())
            });
            let d = match in_definition.and_then(|name| origins.get(&name)) {
                Some(origin) if origin != file => d.in_file(origin),
                Some(_) => locate(d, file, &doc.spans, ""),
                None => locate(d, file, &doc.spans, prefix),
            };
            out.push(d);
        }

        let Value::Object(recipe_map) = resolved else {
            return Err(LoadFailure { diagnostics: out });
        };
        let validated_from = out.len();
        let recipe = validate::validate(&recipe_map, file, &base_dir, self, &mut out);
        // A problem validation finds inside a value that came from a
        // definition points at the definition, in whichever file it lives.
        let substitutions = resolver.substitutions().to_vec();
        let out: Vec<Diagnostic> = out
            .into_iter()
            .enumerate()
            .map(|(i, d)| match i >= validated_from {
                true => at_definition(d, &substitutions, &origins, file, &doc.spans),
                false => d,
            })
            .map(|d| locate(d, file, &doc.spans, prefix))
            .collect();
        match recipe {
            Some(mut recipe) if !out.iter().any(Diagnostic::is_error) => {
                recipe.positions = super::model::Positions::new(doc.spans, prefix);
                Ok(Loaded {
                    recipe: Arc::new(recipe),
                    warnings: out,
                })
            }
            _ => Err(LoadFailure { diagnostics: out }),
        }
    }
}

/// Points a diagnostic whose recipe path lies inside a whole-string
/// reference's value (`edges: "@flow.edges"`) at that value's source: the
/// definition, in this file or in the imported file it came from.
fn at_definition(
    mut d: Diagnostic,
    substitutions: &[(String, String)],
    origins: &HashMap<String, PathBuf>,
    file: &Path,
    spans: &Spans,
) -> Diagnostic {
    if d.file.is_some() || d.line.is_some() {
        return d;
    }
    let path = d.path.clone().unwrap_or_default();
    let inside =
        |at: &str| path == at || (path.starts_with(at) && path[at.len()..].starts_with(['.', '[']));
    let Some((at, reference)) = substitutions
        .iter()
        .filter(|(at, _)| inside(at))
        .max_by_key(|(at, _)| at.len())
    else {
        return d;
    };
    let rest = &path[at.len()..];
    let head = reference.split('.').next().unwrap_or_default();
    let Some(origin) = origins.get(head) else {
        return d;
    };
    let found = if origin == file {
        let target = format!("definitions.{reference}{rest}");
        spans
            .get(&format!("definitions.{reference}"))
            .and(spans.find(&target))
    } else {
        // Read again only to place this diagnostic (errors are rare).
        let Ok(doc) = read_document(origin) else {
            return d;
        };
        let wrapped = doc.value.get("definitions").is_some_and(Value::is_object);
        let base = if wrapped { "definitions." } else { "" };
        // Under a namespace the reference starts with the namespace.
        let without_head = reference
            .strip_prefix(head)
            .map(|r| r.trim_start_matches('.'))
            .unwrap_or(reference);
        [reference.as_str(), without_head]
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| format!("{base}{r}"))
            .find(|root| doc.spans.get(root).is_some())
            .and_then(|root| doc.spans.find(&format!("{root}{rest}")))
    };
    if let Some((line, column)) = found {
        d.file = Some(origin.clone());
        d.line = Some(line);
        d.column = Some(column);
    }
    d
}

/// Fills in the file and the source position of a diagnostic that has only a
/// recipe-relative path. Diagnostics that already name a file are left as
/// they are (they come from another file: an import or a sub-recipe).
fn locate(mut d: Diagnostic, file: &Path, spans: &Spans, prefix: &str) -> Diagnostic {
    if d.file.is_some() {
        return d;
    }
    d.file = Some(file.to_path_buf());
    if d.line.is_none() {
        let relative = d.path.clone().unwrap_or_default();
        let absolute = match (prefix.is_empty(), relative.is_empty()) {
            (true, _) => relative,
            (false, true) => prefix.to_string(),
            (false, false) if relative.starts_with('[') => format!("{prefix}{relative}"),
            (false, false) => format!("{prefix}.{relative}"),
        };
        if let Some((line, col)) = spans.find(&absolute) {
            d.line = Some(line);
            d.column = Some(col);
        }
    }
    d
}

/// Loads every entry of an `imports:` list and merges their (resolved)
/// definitions in order. `chain` holds the files being imported, for cycles.
#[allow(clippy::too_many_arguments)]
fn import_all(
    imports: Option<&Value>,
    path: &str,
    base_dir: &Path,
    file: &Path,
    spans: &Spans,
    chain: &mut Vec<PathBuf>,
    origins: &mut HashMap<String, PathBuf>,
    out: &mut Vec<Diagnostic>,
) -> (Map<String, Value>, Vec<Lazy>) {
    let mut merged = Map::new();
    let mut lazies = Vec::new();
    let entries = match imports {
        None | Some(Value::Null) => return (merged, lazies),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            out.push(located(
                Diagnostic::error(Code::InvalidImport, "`imports` must be a list").at(path),
                file,
                spans,
            ));
            return (merged, lazies);
        }
    };
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = join_index(path, i);
        let (target, namespace) = match entry {
            Value::String(s) => (s.as_str(), None),
            Value::Object(m) => match (m.get("path"), m.get("namespace")) {
                (Some(Value::String(p)), None | Some(Value::Null)) => (p.as_str(), None),
                (Some(Value::String(p)), Some(Value::String(ns))) if valid_namespace(ns) => {
                    (p.as_str(), Some(ns.clone()))
                }
                (Some(Value::String(_)), Some(ns)) => {
                    out.push(located(
                        Diagnostic::error(
                            Code::InvalidImport,
                            format!("import namespace {ns} must be a name (letters, digits, `_`)"),
                        )
                        .at(entry_path),
                        file,
                        spans,
                    ));
                    continue;
                }
                _ => {
                    out.push(located(
                        Diagnostic::error(
                            Code::InvalidImport,
                            "an import mapping needs a `path` string (and optionally a `namespace`)",
                        )
                        .at(entry_path),
                        file,
                        spans,
                    ));
                    continue;
                }
            },
            _ => {
                out.push(located(
                    Diagnostic::error(
                        Code::InvalidImport,
                        "an import is a path string or a mapping `{path, namespace}`",
                    )
                    .at(entry_path),
                    file,
                    spans,
                ));
                continue;
            }
        };
        let target_path = base_dir.join(target);
        let canonical = match std::fs::canonicalize(&target_path) {
            Ok(found) => found,
            // Content Composer also looks in the importing file's parent
            // folders, up to the project root.
            Err(_) => match find_in_parents(base_dir, target) {
                Some((found, up)) => {
                    let relative = format!("{}{target}", "../".repeat(up));
                    out.push(located(
                        Diagnostic::warning(
                            Code::ImportMissing,
                            format!(
                                "imported file `{target}` is not beside the importing file; using `{}`, found in a parent folder",
                                found.display()
                            ),
                        )
                        .at(entry_path.clone())
                        .with_hint(Some(format!(
                            "write the path relative to the importing file: `{relative}`"
                        ))),
                        file,
                        spans,
                    ));
                    found
                }
                None => {
                    out.push(located(
                        Diagnostic::error(
                            Code::ImportMissing,
                            format!(
                                "imported file `{target}` not found (looked for `{}`, then in the parent folders up to the project root)",
                                target_path.display()
                            ),
                        )
                        .at(entry_path),
                        file,
                        spans,
                    ));
                    continue;
                }
            },
        };
        if let Some(start) = chain.iter().position(|p| *p == canonical) {
            let mut names: Vec<String> = chain[start..]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            names.push(canonical.display().to_string());
            out.push(located(
                Diagnostic::error(
                    Code::ImportCycle,
                    format!("imports form a cycle: {}", names.join(" -> ")),
                )
                .at(entry_path),
                file,
                spans,
            ));
            continue;
        }
        chain.push(canonical.clone());
        let definitions = load_definitions_file(&canonical, chain, out);
        chain.pop();
        let Some((definitions, mut imported_lazies)) = definitions else {
            continue;
        };
        if let Some(ns) = &namespace {
            for lazy in &mut imported_lazies {
                for key in &mut lazy.keys {
                    *key = format!("{ns}.{key}");
                }
            }
        }
        lazies.append(&mut imported_lazies);
        match namespace {
            Some(ns) => {
                origins.insert(ns.clone(), canonical.clone());
                merged.insert(ns, Value::Object(definitions));
            }
            None => {
                for (name, value) in definitions {
                    origins.insert(name.clone(), canonical.clone());
                    merged.insert(name, value);
                }
            }
        }
    }
    (merged, lazies)
}

/// `target` in a parent folder of `dir`, nearest first, up to the project
/// root (the first folder holding `composer.toml` or `.git`) or the
/// filesystem root. Returns the file and how many folders up it was.
fn find_in_parents(dir: &Path, target: &str) -> Option<(PathBuf, usize)> {
    if Path::new(target).is_absolute() {
        return None;
    }
    let start = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if is_project_root(&start) {
        return None;
    }
    for (up, folder) in start.ancestors().enumerate().skip(1) {
        if let Ok(found) = std::fs::canonicalize(folder.join(target)) {
            if found.is_file() {
                return Some((found, up));
            }
        }
        if is_project_root(folder) {
            break;
        }
    }
    None
}

fn is_project_root(folder: &Path) -> bool {
    folder.join("composer.toml").exists() || folder.join(".git").exists()
}

fn valid_namespace(ns: &str) -> bool {
    let mut chars = ns.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads an imported file: its own imports, then its definitions (the
/// `definitions:` mapping if present, else its top-level keys), resolved in
/// the file's own scope so that namespacing does not break its references.
fn load_definitions_file(
    file: &Path,
    chain: &mut Vec<PathBuf>,
    out: &mut Vec<Diagnostic>,
) -> Option<(Map<String, Value>, Vec<Lazy>)> {
    let doc = match read_document(file) {
        Ok(doc) => doc,
        Err(d) => {
            out.push(d);
            return None;
        }
    };
    let top = match doc.value {
        Value::Object(top) => top,
        Value::Null => Map::new(),
        _ => {
            out.push(
                Diagnostic::error(
                    Code::NotAMapping,
                    "an imported file must be a mapping of definitions",
                )
                .in_file(file)
                .at_line(1, 1),
            );
            return None;
        }
    };
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let mut origins = HashMap::new();
    let (imported, mut lazies) = import_all(
        top.get("imports"),
        "imports",
        base_dir,
        file,
        &doc.spans,
        chain,
        &mut origins,
        out,
    );
    let (own, wrapped) = match top.get("definitions") {
        Some(Value::Object(m)) => (m.clone(), true),
        _ => {
            let mut m = top.clone();
            m.remove("imports");
            (m, false)
        }
    };
    let mut resolver = Resolver::with_imports(&own, imported.clone());
    let mut resolved = imported;
    let mut diags = Vec::new();
    for name in own.keys() {
        if let Some(value) = resolver.resolve_definition(name, &mut diags) {
            resolved.insert(name.clone(), value);
        }
    }
    for mut d in diags {
        // The resolver names places `definitions.<name>...`; without a
        // `definitions:` wrapper the file's own paths start at the name.
        let name = d.path.as_deref().and_then(|p| {
            p.strip_prefix("definitions.")
                .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest).to_string())
        });
        if !wrapped {
            if let Some(rest) = d
                .path
                .as_deref()
                .and_then(|p| p.strip_prefix("definitions."))
            {
                d.path = Some(rest.to_string());
            }
        }
        let d = located(d, file, &doc.spans);
        match name {
            Some(name) if matches!(d.code, Code::UnknownReference | Code::ReferenceCycle) => lazies
                .push(Lazy {
                    keys: vec![name],
                    diagnostic: d,
                }),
            _ => out.push(d),
        }
    }
    // A definition of this file that reaches a broken one is broken too.
    let reach: Vec<(String, Vec<String>)> = own
        .keys()
        .map(|name| (name.clone(), resolver.reached_from(Some(name))))
        .collect();
    for lazy in &mut lazies {
        for (name, reached) in &reach {
            if !lazy.keys.contains(name) && lazy.reached_by(reached) {
                lazy.keys.push(name.clone());
            }
        }
    }
    Some((resolved, lazies))
}

/// A reference problem inside an imported definition: an error when the
/// recipe uses the definition (or one built from it), a warning otherwise.
#[derive(Debug)]
struct Lazy {
    /// The definitions it breaks, as the importing file names them
    /// (`models.writer` under a namespace).
    keys: Vec<String>,
    diagnostic: Diagnostic,
}

impl Lazy {
    fn reached_by(&self, references: &[String]) -> bool {
        references
            .iter()
            .any(|r| self.keys.iter().any(|k| overlaps(r, k)))
    }

    /// The diagnostic as an error when `reached` uses it, else as a warning.
    fn settle(self, reached: &[String]) -> Diagnostic {
        if self.reached_by(reached) {
            return self.diagnostic;
        }
        let key = self.keys.first().cloned().unwrap_or_default();
        let mut d = self.diagnostic;
        d.severity = super::diagnostic::Severity::Warning;
        d.message = format!(
            "{} (in the definition `{key}`, which this recipe does not use: ignored)",
            d.message
        );
        d
    }
}

/// Whether two dotted paths name overlapping values (`a.b` and `a.b.c`).
fn overlaps(a: &str, b: &str) -> bool {
    let within = |long: &str, short: &str| {
        long.len() > short.len() && long.starts_with(short) && long[short.len()..].starts_with('.')
    };
    a == b || within(a, b) || within(b, a)
}

/// `recipe_path` must be a plain path: a reference or a template in it is
/// reported here, before references are resolved.
fn plain_recipe_paths(body: &Map<String, Value>, out: &mut Vec<Diagnostic>) {
    let Some(Value::Array(nodes)) = body.get("nodes") else {
        return;
    };
    let mut check = |node: &Value, path: String| {
        let Some(Value::String(p)) = node.get("recipe_path") else {
            return;
        };
        let reference = super::references::has_reference(p);
        let template = p.contains("{{") || p.contains("{%");
        if reference || template {
            let what = if reference {
                "a reference"
            } else {
                "a template"
            };
            out.push(
                Diagnostic::error(
                    Code::SubRecipe,
                    format!(
                        "`recipe_path` must be a plain path, but `{p}` holds {what} (recipe paths are not expanded)"
                    ),
                )
                .at(format!("{path}.recipe_path"))
                .with_hint(Some(
                    "write the sub-recipe's file path, relative to this recipe (e.g. `sub/summary.yaml`)"
                        .into(),
                )),
            );
        }
    };
    for (i, node) in nodes.iter().enumerate() {
        let path = join_index("nodes", i);
        check(node, path.clone());
        if let Some(task) = node.get("task") {
            check(task, format!("{path}.task"));
        }
    }
}

fn located(d: Diagnostic, file: &Path, spans: &Spans) -> Diagnostic {
    locate(d, file, spans, "")
}
