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
//! prompt rendered for 100,000 map items is parsed once. The caches are
//! bounded (least recently used out first, by count and by source bytes):
//! a server sees templates from every tenant's recipes.
//!
//! Rendering is bounded too: each render or evaluation may run at most
//! `FUEL` template instructions (minijinja's fuel), so a loop such as
//! `{% for i in range(100000) %}{% for j in range(100000) %}` fails with a
//! clear error instead of running for hours.

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Template instructions one render may run: about a second of work, far
/// above what a prompt over a 100,000-item list needs (a few per item).
pub const FUEL: u64 = 50_000_000;

/// Cached templates (and, separately, expressions): at most this many, and
/// at most `MAX_CACHED_BYTES` of their source.
const MAX_CACHED: usize = 4_096;
const MAX_CACHED_BYTES: usize = 32 << 20;

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
    // Jinja2 raises on division by zero; minijinja's `/` gives infinity,
    // which would reach a prompt as `inf`.
    env.set_formatter(|out, state, value| {
        non_finite(value)?;
        minijinja::escape_formatter(out, state, value)
    });
    env.set_fuel(Some(FUEL));
    // Templates are looked up by their own source text: the environment then
    // compiles each distinct template once and owns it (until `Lru` evicts
    // it).
    env.set_loader(|source: &str| Ok(Some(source.to_string())));
    env
}

/// The environment; renders share it (read), evictions remove templates
/// from it (write).
fn env_lock() -> &'static RwLock<Environment<'static>> {
    static ENV: OnceLock<RwLock<Environment<'static>>> = OnceLock::new();
    ENV.get_or_init(|| RwLock::new(new_environment()))
}

/// Runs `f` with the environment. A poisoned lock (a panic in another
/// render) still holds a usable environment.
fn with_env<R>(f: impl FnOnce(&Environment<'static>) -> R) -> R {
    let guard = env_lock().read().unwrap_or_else(|p| p.into_inner());
    f(&guard)
}

/// Expressions are compiled by an environment of their own, which never
/// holds templates: it can be shared without a lock, and compiled
/// expressions borrow it for good.
fn expression_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(new_environment)
}

/// Which sources a cache holds, by last use; says what to evict.
#[derive(Default)]
struct Lru {
    used: HashMap<String, u64>,
    clock: u64,
    bytes: usize,
}

impl Lru {
    /// Marks `source` used; returns the sources to drop to stay in bounds
    /// (the least recently used quarter, so eviction is rare).
    fn touch(&mut self, source: &str) -> Vec<String> {
        self.clock += 1;
        if let Some(t) = self.used.get_mut(source) {
            *t = self.clock;
            return Vec::new();
        }
        self.used.insert(source.to_string(), self.clock);
        self.bytes += source.len();
        if self.used.len() <= MAX_CACHED && self.bytes <= MAX_CACHED_BYTES {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, String)> = self
            .used
            .iter()
            .filter(|(s, _)| s.as_str() != source)
            .map(|(s, t)| (*t, s.clone()))
            .collect();
        by_age.sort_unstable();
        let mut evicted = Vec::new();
        let target_count = MAX_CACHED * 3 / 4;
        let target_bytes = MAX_CACHED_BYTES * 3 / 4;
        for (_, old) in by_age {
            if self.used.len() <= target_count && self.bytes <= target_bytes {
                break;
            }
            self.used.remove(&old);
            self.bytes -= old.len();
            evicted.push(old);
        }
        evicted
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.used.len()
    }
}

fn template_lru() -> &'static Mutex<Lru> {
    static LRU: OnceLock<Mutex<Lru>> = OnceLock::new();
    LRU.get_or_init(Default::default)
}

/// Notes a use of template `source`, evicting old templates from the
/// environment when the cache is full.
fn touch_template(source: &str) {
    let evicted = template_lru()
        .lock()
        .map(|mut l| l.touch(source))
        .unwrap_or_default();
    if !evicted.is_empty() {
        let mut env = env_lock().write().unwrap_or_else(|p| p.into_inner());
        for old in &evicted {
            env.remove_template(old);
        }
    }
}

type CachedExpression = Arc<minijinja::Expression<'static, 'static>>;

#[derive(Default)]
struct Expressions {
    compiled: HashMap<String, CachedExpression>,
    lru: Lru,
}

fn expression(source: &str) -> Result<CachedExpression, Error> {
    static CACHE: OnceLock<Mutex<Expressions>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(mut c) = cache.lock() {
        if let Some(e) = c.compiled.get(source).cloned() {
            c.lru.touch(source);
            return Ok(e);
        }
    }
    // Compiled without the cache lock: other threads go on meanwhile.
    let compiled = Arc::new(expression_env().compile_expression_owned(source.to_string())?);
    if let Ok(mut c) = cache.lock() {
        for old in c.lru.touch(source) {
            c.compiled.remove(&old);
        }
        c.compiled.insert(source.to_string(), compiled.clone());
    }
    Ok(compiled)
}

/// Syntax check of a template (at load time, no context).
pub fn check_template(source: &str) -> Result<(), String> {
    expression_env()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Syntax check of an expression (conditions).
pub fn check_expression(source: &str) -> Result<(), String> {
    expression_env()
        .compile_expression(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// The message of a minijinja error with its line, without the noisy debug
/// dump.
fn describe(e: &Error) -> String {
    if e.kind() == ErrorKind::OutOfFuel {
        return format!(
            "the template did too much work (more than {FUEL} steps, e.g. a loop over a huge range) and was stopped{}",
            e.line().map(|l| format!(" (template line {l})")).unwrap_or_default()
        );
    }
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
    touch_template(source);
    with_env(|env| {
        let template = env.get_template(source).map_err(|e| plain(&e))?;
        template.render(ctx).map_err(|e| {
            if e.kind() == ErrorKind::UndefinedError {
                let mut missing = template
                    .undeclared_variables(true)
                    .into_iter()
                    .filter(|name| is_undefined(name, ctx))
                    .collect::<Vec<_>>();
                missing.sort();
                TemplateError {
                    message: describe(&e),
                    undefined: missing,
                }
            } else {
                plain(&e)
            }
        })
    })
}

/// An infinite or NaN number is an error: in Jinja2 the division that
/// made it raises (`1 / 0`, ZeroDivisionError).
fn non_finite(value: &Value) -> Result<(), Error> {
    match f64::try_from(value.clone()) {
        Ok(x) if value.kind() == minijinja::value::ValueKind::Number && !x.is_finite() => {
            Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("division by zero (the result would be `{x}`)"),
            ))
        }
        _ => Ok(()),
    }
}

/// Evaluates an expression to a value. An undefined result is an error
/// naming the variable (the value would be used, i.e. "printed").
pub fn eval(source: &str, ctx: &Value) -> Result<Value, TemplateError> {
    let expr = expression(source).map_err(|e| plain(&e))?;
    let value = expr.eval(ctx).map_err(|e| plain(&e))?;
    non_finite(&value).map_err(|e| plain(&e))?;
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
    fn division_by_zero_is_an_error_as_in_jinja2() {
        let ctx = context! { n => 0 };
        for source in [
            "{{ 1 / 0 }}",
            "{{ 7 / n }}",
            "{{ 1.5 / 0 }}",
            "x{{ 1 // 0 }}",
        ] {
            assert!(render(source, &ctx).is_err(), "{source}");
        }
        let e = render("{{ 1 / n }}", &ctx).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("division by zero"));
        assert!(eval("1 / n", &ctx).is_err());
        assert_eq!(render("{{ 5 / 2 }}", &ctx).ok().as_deref(), Some("2.5"));
        assert_eq!(render("{{ 'inf' }}", &ctx).ok().as_deref(), Some("inf"));
    }

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
    fn runaway_loops_fail_clearly() {
        let ctx = context! {};
        let e = render("{% for i in range(10**9) %}x{% endfor %}", &ctx)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("range has too many elements")),
            "{e:?}"
        );
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
            &ctx,
        )
        .err()
        .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("did too much work")),
            "{e:?}"
        );
        // A prompt over a big list is ordinary work.
        let items: Vec<u32> = (0..100_000).collect();
        let ok = render(
            "{% for i in items %}{{ i }},{% endfor %}",
            &context! { items },
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn the_cache_keeps_the_recently_used_within_bounds() {
        let mut lru = Lru::default();
        for i in 0..MAX_CACHED {
            assert!(lru.touch(&format!("t{i}")).is_empty());
        }
        // t0 is used again: the oldest is now t1.
        assert!(lru.touch("t0").is_empty());
        let evicted = lru.touch("new");
        assert_eq!(lru.len(), MAX_CACHED * 3 / 4);
        assert_eq!(evicted.first().map(String::as_str), Some("t1"));
        assert!(!evicted.iter().any(|e| e == "t0" || e == "new"));
        // Bytes bound too: one huge source pushes the others out.
        let huge = "x".repeat(MAX_CACHED_BYTES);
        lru.touch(&huge);
        assert_eq!(lru.len(), 1);
        // Rendering keeps working through evictions.
        for i in 0..(MAX_CACHED + 10) {
            let out = render(&format!("{{{{ n }}}}-{i}"), &context! { n => 1 });
            assert_eq!(out.ok(), Some(format!("1-{i}")));
        }
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(check_template("{% if x %}").is_err());
        assert!(check_expression("x ==").is_err());
        assert!(check_expression("x == 'a' and y").is_ok());
    }
}
