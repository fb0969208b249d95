//! The one Jinja environment: prompts, `.jinja` prompt files, edge
//! conditions, final-output values and template-valued inputs.
//!
//! Semantics, as recipe authors know them from Jinja2:
//! - printing an undefined variable is an error that names it (a typo must
//!   not silently send a half-empty prompt to a paid model); testing one
//!   (`is defined`, `if x`, `x | default(..)`) is fine (semi-strict);
//! - Python-style methods (`.items()`, `.upper()`, `.split()`) work;
//! - a string that is exactly one `{{ expression }}` evaluates to the
//!   expression's value and keeps its type (lists, mappings, numbers).
//!
//! Compiled templates and expressions are cached by their source text, so a
//! prompt rendered for 100,000 map items is parsed once.

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// Cached expressions beyond this count are dropped (recipes are small; a
/// server may see many, and a cache is not a leak).
const MAX_CACHED_EXPRESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub message: String,
    /// Variables the template uses that the context lacks (on undefined errors).
    pub undefined: Vec<String>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.undefined.as_slice() {
            [] => write!(f, "{}", self.message),
            [one] => write!(f, "undefined variable `{one}`"),
            many => write!(
                f,
                "undefined variables {}",
                many.iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_keep_trailing_newline(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    minijinja_contrib::add_to_environment(&mut env);
    // Jinja2's truncate takes positional arguments (`truncate(90)`); the
    // contrib one only keywords. Recipe authors write Jinja2.
    env.add_filter("truncate", truncate);
    // Templates are looked up by their own source text: the environment then
    // compiles each distinct template once and owns it.
    env.set_loader(|source: &str| Ok(Some(source.to_string())));
    env
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(new_environment)
}

type CachedExpression = Arc<minijinja::Expression<'static, 'static>>;

fn expression(source: &str) -> Result<CachedExpression, Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, CachedExpression>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(map) = cache.lock() {
        if let Some(e) = map.get(source) {
            return Ok(e.clone());
        }
    }
    let compiled = Arc::new(env().compile_expression_owned(source.to_string())?);
    if let Ok(mut map) = cache.lock() {
        if map.len() >= MAX_CACHED_EXPRESSIONS {
            map.clear();
        }
        map.insert(source.to_string(), compiled.clone());
    }
    Ok(compiled)
}

/// Syntax check of a template (at load time, no context).
pub fn check_template(source: &str) -> Result<(), String> {
    env()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Syntax check of an expression (conditions).
pub fn check_expression(source: &str) -> Result<(), String> {
    env()
        .compile_expression(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// The message of a minijinja error with its line, without the noisy debug
/// dump.
fn describe(e: &Error) -> String {
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("{detail} (template line {line})"),
        None => detail,
    }
}

/// Renders `source` with `ctx`.
pub fn render(source: &str, ctx: &Value) -> Result<String, TemplateError> {
    let template = env().get_template(source).map_err(|e| plain(&e))?;
    template.render(ctx).map_err(|e| {
        if e.kind() == ErrorKind::UndefinedError {
            let missing = template
                .undeclared_variables(true)
                .into_iter()
                .filter(|name| is_undefined(name, ctx))
                .collect::<Vec<_>>();
            let mut missing = missing;
            missing.sort();
            TemplateError {
                message: describe(&e),
                undefined: missing,
            }
        } else {
            plain(&e)
        }
    })
}

/// Evaluates an expression to a value. An undefined result is an error
/// naming the variable (the value would be used, i.e. "printed").
pub fn eval(source: &str, ctx: &Value) -> Result<Value, TemplateError> {
    let expr = expression(source).map_err(|e| plain(&e))?;
    let value = expr.eval(ctx).map_err(|e| plain(&e))?;
    if value.is_undefined() {
        let mut missing: Vec<String> = expr
            .undeclared_variables(true)
            .into_iter()
            .filter(|name| is_undefined(name, ctx))
            .collect();
        missing.sort();
        if missing.is_empty() {
            missing.push(source.trim().to_string());
        }
        return Err(TemplateError {
            message: "undefined value".into(),
            undefined: missing,
        });
    }
    Ok(value)
}

/// Evaluates a condition; undefined variables count as false (testing them
/// is allowed), but other errors are errors.
pub fn is_true(source: &str, ctx: &Value) -> Result<bool, TemplateError> {
    let expr = expression(source).map_err(|e| plain(&e))?;
    let value = expr.eval(ctx).map_err(|e| plain(&e))?;
    Ok(value.is_true())
}

/// If `s` is exactly one `{{ expression }}`, the expression inside.
pub fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// Whether `s` is a template (holds `{{` or `{%`).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The template rule for values: one expression keeps its type, any other
/// template renders to text.
pub fn resolve_template(s: &str, ctx: &Value) -> Result<Value, TemplateError> {
    match single_expression(s) {
        Some(expr) => eval(expr, ctx),
        None => render(s, ctx).map(Value::from),
    }
}

/// Jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=5)`,
/// with positional or keyword arguments.
fn truncate(
    value: &str,
    args: minijinja::value::Rest<Value>,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, Error> {
    let positional = |i: usize| args.get(i).filter(|v| !v.is_none());
    let length = match kwargs.get::<Option<usize>>("length")? {
        Some(n) => n,
        None => positional(0)
            .map(|v| usize::try_from(v.clone()))
            .transpose()?
            .unwrap_or(255),
    };
    let killwords = match kwargs.get::<Option<bool>>("killwords")? {
        Some(b) => b,
        None => positional(1).is_some_and(Value::is_true),
    };
    let end = match kwargs.get::<Option<String>>("end")? {
        Some(e) => e,
        None => positional(2)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "...".into()),
    };
    let leeway = match kwargs.get::<Option<usize>>("leeway")? {
        Some(n) => n,
        None => positional(3)
            .map(|v| usize::try_from(v.clone()))
            .transpose()?
            .unwrap_or(5),
    };
    if args.len() > 4 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "truncate takes at most 4 arguments",
        ));
    }
    kwargs.assert_all_used()?;
    let chars = value.chars().count();
    if chars <= length + leeway {
        return Ok(value.to_string());
    }
    let keep: String = value
        .chars()
        .take(length.saturating_sub(end.chars().count()))
        .collect();
    let kept = if killwords {
        keep.as_str()
    } else {
        keep.rsplit_once(' ').map(|(head, _)| head).unwrap_or(&keep)
    };
    Ok(format!("{kept}{end}"))
}

fn plain(e: &Error) -> TemplateError {
    TemplateError {
        message: describe(e),
        undefined: Vec::new(),
    }
}

/// Whether a dotted variable (`a.b`) is missing from the context.
fn is_undefined(name: &str, ctx: &Value) -> bool {
    let mut current = ctx.clone();
    for part in name.split('.') {
        match current.get_attr(part) {
            Ok(v) if !v.is_undefined() => current = v,
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn single_expression_keeps_type() {
        let ctx = context! { a => "x", b => "y", items => vec![1, 2] };
        let v = resolve_template("{{ {'A': a, 'B': b} }}", &ctx).unwrap_or_default();
        assert_eq!(
            v.get_attr("A").ok().map(|v| v.to_string()),
            Some("x".into())
        );
        let v = resolve_template("{{ items }}", &ctx).unwrap_or_default();
        assert_eq!(v.len(), Some(2));
        let v = resolve_template("n={{ items | length }}", &ctx).unwrap_or_default();
        assert_eq!(v.as_str(), Some("n=2"));
    }

    #[test]
    fn printing_undefined_names_the_variable() {
        let ctx = context! { topic => "AI" };
        let err = render("About {{ topic }} and {{ tpoic }}", &ctx).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("undefined variable `tpoic`".into())
        );
        // Testing an undefined variable is fine.
        let ok = render(
            "{% if extra %}{{ extra }}{% endif %}{{ x | default('d') }}",
            &ctx,
        );
        assert_eq!(ok.ok().as_deref(), Some("d"));
        assert_eq!(is_true("missing", &ctx).ok(), Some(false));
    }

    #[test]
    fn python_methods_and_filters() {
        let ctx = context! { s => "a b c", d => context!{ k => 1 } };
        let out = render("{{ s.upper() }} {{ s.split() | length }} {{ s | wordcount }} {% for k, v in d.items() %}{{k}}={{v}}{% endfor %}", &ctx);
        assert_eq!(out.ok().as_deref(), Some("A B C 3 3 k=1"));
    }

    #[test]
    fn truncate_takes_jinja2_arguments() {
        let ctx = context! { s => "the quick brown fox jumps over the lazy dog" };
        assert_eq!(
            render("{{ s | truncate(15) }}", &ctx).ok().as_deref(),
            Some("the quick...")
        );
        assert_eq!(
            render("{{ s | truncate(15, true, '~', 0) }}", &ctx)
                .ok()
                .as_deref(),
            Some("the quick brow~")
        );
        assert_eq!(
            render("{{ s | truncate(length=100) }}", &ctx)
                .ok()
                .as_deref(),
            Some("the quick brown fox jumps over the lazy dog")
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(check_template("{% if x %}").is_err());
        assert!(check_expression("x ==").is_err());
        assert!(check_expression("x == 'a' and y").is_ok());
    }
}
