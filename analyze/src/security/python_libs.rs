//! Bandit's call rules about particular libraries: hashes, TLS, keys, YAML, SSH, SNMP,
//! logging, PyTorch, Hugging Face, templates.

use super::python::{Issue, Walk, issue};
use super::python_ast::NodeExt;
use super::python_ast::{Value, arg_value, is_constant, kids, unparen};
use super::python_calls::{BAD_SSL_VERSIONS, Call, http_call};
use crate::finding::Level;
use std::collections::VecDeque;

/// Python's `a or b`.
fn or(a: Value, b: impl FnOnce() -> Value) -> Value {
    if a.truthy() { a } else { b() }
}

/// B324: weak hashes from `hashlib` (unless `usedforsecurity=False`) and weak `crypt` methods.
pub(super) fn hashlib(w: &Walk, call: &Call) -> Option<Issue> {
    const WEAK_HASHES: &[&str] = &["md4", "md5", "sha", "sha1"];
    const WEAK_CRYPT: &[&str] = &["METHOD_CRYPT", "METHOD_MD5", "METHOD_BLOWFISH"];
    let func = call.name();
    let kw = |name: &str| call.kw(name).map(|v| arg_value(w.src, v));
    let arg = |i: usize| call.args.get(i).map(|&a| arg_value(w.src, a));
    if call.has_part("hashlib") {
        // `keywords.get("usedforsecurity", "True") == "True"`.
        let for_security = kw("usedforsecurity").is_none_or(|v| v == Value::Str("True".into()));
        let weak = |name: &str| {
            issue(
                Level::High,
                Level::High,
                format!(
                    "Use of weak {} hash for security. Consider usedforsecurity=False",
                    name.to_uppercase()
                ),
            )
        };
        if WEAK_HASHES.contains(&func) {
            return for_security.then(|| weak(func));
        }
        if func == "new" {
            let name = if call.args.is_empty() {
                kw("name")
            } else {
                arg(0)
            };
            if let Some(Value::Str(name)) = name
                && WEAK_HASHES.contains(&name.to_lowercase().as_str())
                && for_security
            {
                return Some(weak(&name));
            }
        }
        return None;
    }
    if (func == "crypt" || func == "mksalt") && call.has_part("crypt") {
        let name = if func == "crypt" {
            if call.args.len() > 1 {
                arg(1)
            } else {
                kw("salt")
            }
        } else if call.args.is_empty() {
            kw("method")
        } else {
            arg(0)
        };
        if let Some(Value::Str(name)) = name
            && WEAK_CRYPT.contains(&name.as_str())
        {
            return Some(issue(
                Level::Medium,
                Level::High,
                format!(
                    "Use of insecure crypt.{} hash function.",
                    name.to_uppercase()
                ),
            ));
        }
    }
    None
}

/// B501: `requests`/`httpx` with `verify=False`.
pub(super) fn no_cert_validation(w: &Walk, call: &Call) -> Option<Issue> {
    let module = http_call(call)?;
    if call.check(w, "verify", &[Value::Str("False".into())]) != Some(true) {
        return None;
    }
    Some(
        issue(
            Level::High,
            Level::High,
            format!(
                "Call to {module} with verify=False disabling SSL certificate checks, security \
                 issue."
            ),
        )
        .at(call.kw_line("verify")),
    )
}

/// B502: an insecure SSL/TLS protocol version passed to `ssl.wrap_socket`, `SSL.Context`, or
/// any call's `method=`/`ssl_version=`.
pub(super) fn ssl_bad_version(w: &Walk, call: &Call) -> Option<Issue> {
    // `check_call_arg_value(name, BAD_SSL_VERSIONS)`: only a string can equal one.
    let is_bad = |name: &str| {
        call.kw(name).is_some_and(|v| {
            matches!(arg_value(w.src, v), Value::Str(s) if BAD_SSL_VERSIONS.contains(&s.as_str()))
        })
    };
    match call.qual.as_str() {
        "ssl.wrap_socket" => is_bad("ssl_version").then(|| {
            issue(
                Level::High,
                Level::High,
                "ssl.wrap_socket call with insecure SSL/TLS protocol version identified, \
                 security issue.",
            )
            .at(call.kw_line("ssl_version"))
        }),
        "pyOpenSSL.SSL.Context" => is_bad("method").then(|| {
            issue(
                Level::High,
                Level::High,
                "SSL.Context call with insecure SSL/TLS protocol version identified, security \
                 issue.",
            )
            .at(call.kw_line("method"))
        }),
        _ => (is_bad("method") || is_bad("ssl_version")).then(|| {
            issue(
                Level::Medium,
                Level::Medium,
                "Function call with insecure SSL/TLS protocol identified, possible security \
                 issue.",
            )
            .at(call.kw_line("method").or(call.kw_line("ssl_version")))
        }),
    }
}

/// B504: `ssl.wrap_socket` without an `ssl_version=` literal.
pub(super) fn ssl_no_version(w: &Walk, call: &Call) -> Option<Issue> {
    if call.qual != "ssl.wrap_socket" || !call.kw_value(w, "ssl_version").is_absent() {
        return None;
    }
    Some(
        issue(
            Level::Low,
            Level::Medium,
            "ssl.wrap_socket call with no SSL/TLS protocol version specified, the default SSLv23 \
             could be insecure, possible security issue.",
        )
        .at(call.kw_line("ssl_version")),
    )
}

/// Bandit's `_classify_key_size`; `Err` where Python's comparison raises (Bandit then reports
/// nothing).
fn classify_key(key_type: &str, key_size: &Value) -> Result<Option<Issue>, ()> {
    let sizes: [(i128, Level); 2] = match key_type {
        "EC" => [(160, Level::High), (224, Level::Medium)],
        _ => [(1024, Level::High), (2048, Level::Medium)],
    };
    for (size, level) in sizes {
        let below = match key_size {
            Value::Str(_) => return Ok(None),
            Value::Int(i) => *i < size,
            Value::Float(f) => *f < size as f64,
            _ => return Err(()),
        };
        if below {
            return Ok(Some(issue(
                level,
                Level::High,
                format!("{key_type} key sizes below {size} bits are considered breakable. "),
            )));
        }
    }
    Ok(None)
}

fn hashable(v: &Value) -> bool {
    match v {
        Value::List(_) | Value::Set(_) | Value::Dict(_) => false,
        Value::Tuple(items) => items.iter().all(hashable),
        _ => true,
    }
}

/// B505: DSA/RSA keys under 2048 bits, EC curves under 224 bits.
pub(super) fn weak_key(w: &Walk, call: &Call) -> Option<Issue> {
    const EC_CURVES: &[(&str, i128)] = &[
        ("SECT571K1", 571),
        ("SECT571R1", 570),
        ("SECP521R1", 521),
        ("BrainpoolP512R1", 512),
        ("SECT409K1", 409),
        ("SECT409R1", 409),
        ("BrainpoolP384R1", 384),
        ("SECP384R1", 384),
        ("SECT283K1", 283),
        ("SECT283R1", 283),
        ("BrainpoolP256R1", 256),
        ("SECP256K1", 256),
        ("SECP256R1", 256),
        ("SECT233K1", 233),
        ("SECT233R1", 233),
        ("SECP224R1", 224),
        ("SECP192R1", 192),
        ("SECT163K1", 163),
        ("SECT163R2", 163),
    ];
    let q = call.qual.as_str();
    let prefix = "cryptography.hazmat.primitives.asymmetric.";
    let io_type = match q.strip_prefix(prefix) {
        Some("dsa.generate_private_key") => Some(("DSA", 0)),
        Some("rsa.generate_private_key") => Some(("RSA", 1)),
        Some("ec.generate_private_key") => Some(("EC", 0)),
        _ => None,
    };
    let classify = |t: &str, v: Value| classify_key(t, &v);
    let result = match io_type {
        Some(("EC", _)) => {
            let curve = or(call.kw_value(w, "curve"), || {
                if call.args.is_empty() {
                    Value::Int(0)
                } else {
                    call.arg_at(w, 0)
                }
            });
            if !hashable(&curve) {
                return None;
            }
            let size = match &curve {
                Value::Str(s) => EC_CURVES
                    .iter()
                    .find(|(c, _)| c == s)
                    .map_or(224, |&(_, n)| n),
                _ => 224,
            };
            classify("EC", Value::Int(size))
        }
        Some((t, pos)) => {
            let size = or(call.kw_value(w, "key_size"), || {
                or(call.arg_at(w, pos), || Value::Int(2048))
            });
            classify(t, size)
        }
        None => Ok(None),
    };
    match result {
        Err(()) => return None,
        Ok(Some(i)) => return Some(i),
        Ok(None) => {}
    }
    let t = match q {
        "Crypto.PublicKey.DSA.generate" | "Cryptodome.PublicKey.DSA.generate" => "DSA",
        "Crypto.PublicKey.RSA.generate" | "Cryptodome.PublicKey.RSA.generate" => "RSA",
        _ => return None,
    };
    let size = or(call.kw_value(w, "bits"), || {
        or(call.arg_at(w, 0), || Value::Int(2048))
    });
    classify(t, size).ok().flatten()
}

/// B506: `yaml.load` without a safe loader (only when `yaml` itself is imported).
pub(super) fn yaml_load(w: &Walk, call: &Call) -> Option<Issue> {
    if !w.names.imported_exact("yaml") {
        return None;
    }
    if call.name() != "load" || !call.has_part("yaml") {
        return None;
    }
    let safe = |s: &str| Value::Str(s.to_string());
    let loader_safe = call.check(w, "Loader", &[safe("SafeLoader")]) == Some(true)
        || call.check(w, "Loader", &[safe("CSafeLoader")]) == Some(true);
    let second = call.arg_at(w, 1);
    let positional_safe = second == safe("SafeLoader") || second == safe("CSafeLoader");
    (!loader_safe && !positional_safe).then(|| {
        issue(
            Level::Medium,
            Level::High,
            "Use of unsafe yaml load. Allows instantiation of arbitrary objects. Consider \
             yaml.safe_load().",
        )
    })
}

/// B507: paramiko told to trust unknown host keys.
pub(super) fn ssh_no_host_key(w: &Walk, call: &Call) -> Option<Issue> {
    if !w.names.imported_like("paramiko") || call.name() != "set_missing_host_key_policy" {
        return None;
    }
    let policy = unparen(*call.args.first()?);
    let name_of = |n: tree_sitter::Node| match n.kind_name() {
        "attribute" => n.field("attribute").map(|a| w.src.text_of(a)),
        "identifier" => Some(w.src.text_of(n)),
        _ => None,
    };
    let value = match policy.kind_name() {
        "call" => policy.field("function").map(unparen).and_then(name_of),
        _ => name_of(policy),
    };
    matches!(value, Some("AutoAddPolicy" | "WarningPolicy")).then(|| {
        issue(
            Level::High,
            Level::Medium,
            "Paramiko call with policy set to automatically trust the unknown host key.",
        )
        .at(call.kw_line("set_missing_host_key_policy"))
    })
}

/// B508: SNMP v1/v2 community data.
pub(super) fn snmp_version(w: &Walk, call: &Call) -> Option<Issue> {
    if call.qual != "pysnmp.hlapi.CommunityData" {
        return None;
    }
    let v1_or_v2 = call.check(w, "mpModel", &[Value::Int(0)]) == Some(true)
        || call.check(w, "mpModel", &[Value::Int(1)]) == Some(true);
    v1_or_v2.then(|| {
        issue(
            Level::Medium,
            Level::High,
            "The use of SNMPv1 and SNMPv2 is insecure. You should use SNMPv3 if able.",
        )
        .at(call.kw_line("CommunityData"))
    })
}

/// B509: SNMPv3 user data without both keys.
pub(super) fn snmp_crypto(call: &Call) -> Option<Issue> {
    (call.qual == "pysnmp.hlapi.UsmUserData" && call.args.len() < 3).then(|| {
        issue(
            Level::Medium,
            Level::High,
            "You should not use SNMPv3 without encryption. noAuthNoPriv & authNoPriv is insecure",
        )
        .at(call.kw_line("UsmUserData"))
    })
}

/// B601: any `exec_command` call once paramiko is imported.
pub(super) fn paramiko(w: &Walk, call: &Call) -> Option<Issue> {
    (w.names.imported_like("paramiko") && call.name() == "exec_command").then(|| {
        issue(
            Level::Medium,
            Level::Medium,
            "Possible shell injection via Paramiko call, check inputs are properly sanitized.",
        )
    })
}

/// B612: `logging.config.listen` without `verify=`.
pub(super) fn logging_listen(call: &Call) -> Option<Issue> {
    (call.qual == "logging.config.listen" && !call.has_kw("verify")).then(|| {
        issue(
            Level::Medium,
            Level::High,
            "Use of insecure logging.config.listen detected.",
        )
    })
}

/// B614: `torch.load` without `weights_only=True` (only when `torch` itself is imported).
pub(super) fn pytorch_load(w: &Walk, call: &Call) -> Option<Issue> {
    if !w.names.imported_exact("torch")
        || !matches!(
            call.qual.as_str(),
            "torch.load" | "torch.serialization.load"
        )
    {
        return None;
    }
    if call.kw_value(w, "weights_only") == Value::Str("True".into()) {
        return None;
    }
    Some(issue(Level::Medium, Level::High, "Use of unsafe PyTorch load").at(call.kw_line("load")))
}

/// B615: Hugging Face downloads not pinned to a commit.
pub(super) fn huggingface(w: &Walk, call: &Call) -> Option<Issue> {
    let names = &w.names;
    if !["transformers", "datasets", "huggingface_hub"]
        .iter()
        .any(|m| names.imported_like(m))
    {
        return None;
    }
    let func = call.name();
    let module = match func {
        "from_pretrained" => "transformers",
        "load_dataset" => "datasets",
        "hf_hub_download" | "snapshot_download" | "repository_id" => "huggingface_hub",
        _ => return None,
    };
    if !call.has_part(module) {
        return None;
    }
    // A revision given by an expression cannot be judged: Bandit gives it the benefit of the
    // doubt.
    let pinned_by_expression = call
        .keywords
        .iter()
        .any(|&(k, v)| matches!(k, Some("revision" | "commit_id")) && !is_constant(w.src, v));
    if pinned_by_expression {
        return None;
    }
    let revision = or(call.kw_value(w, "revision"), || {
        call.kw_value(w, "commit_id")
    });
    if let Value::Str(r) = &revision {
        let r = r.trim_matches(['"', '\'']);
        if r.chars().count() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    if let Value::Str(first) = call.arg_at(w, 0)
        && ["./", "/", "../"].iter().any(|p| first.starts_with(p))
    {
        return None;
    }
    Some(
        issue(
            Level::Medium,
            Level::High,
            format!("Unsafe Hugging Face Hub download without revision pinning in {func}()"),
        )
        .at(call.kw_line(func)),
    )
}

/// B701: a jinja2 `Environment` without autoescaping: the first `autoescape=` keyword found
/// breadth-first anywhere in the call (as `ast.walk` finds it) decides.
pub(super) fn jinja2(w: &Walk, call: &Call) -> Option<Issue> {
    if call.name() != "Environment" || !call.has_part("jinja2") {
        return None;
    }
    let mut queue = VecDeque::from([call.node]);
    while let Some(n) = queue.pop_front() {
        let is_autoescape = n.kind_name() == "keyword_argument"
            && n.field("name")
                .is_some_and(|k| w.src.text_of(k) == "autoescape");
        if is_autoescape {
            let value = n.field("value").map(unparen);
            let kind = value.map_or("", |v| v.kind_name());
            if kind == "false" {
                return Some(issue(
                    Level::High,
                    Level::High,
                    "Using jinja2 templates with autoescape=False is dangerous and can lead to \
                     XSS. Use autoescape=True or use the select_autoescape function to mitigate \
                     XSS vulnerabilities.",
                ));
            }
            if kind == "true" {
                return None;
            }
            let selects = value.filter(|v| v.kind_name() == "call").is_some_and(|v| {
                let f = v.field("function").map(unparen);
                let name = f.and_then(|f| match f.kind_name() {
                    "identifier" => Some(w.src.text_of(f)),
                    "attribute" => f.field("attribute").map(|a| w.src.text_of(a)),
                    _ => None,
                });
                name == Some("select_autoescape")
            });
            if selects {
                return None;
            }
            return Some(issue(
                Level::High,
                Level::Medium,
                "Using jinja2 templates with autoescape=False is dangerous and can lead to XSS. \
                 Ensure autoescape=True or use the select_autoescape function to mitigate XSS \
                 vulnerabilities.",
            ));
        }
        queue.extend(kids(n));
    }
    Some(issue(
        Level::High,
        Level::High,
        "By default, jinja2 sets autoescape to False. Consider using autoescape=True or use the \
         select_autoescape function to mitigate XSS vulnerabilities.",
    ))
}

/// B702: any mako `Template`.
pub(super) fn mako(call: &Call) -> Option<Issue> {
    (call.name() == "Template" && call.has_part("mako")).then(|| {
        issue(
            Level::Medium,
            Level::High,
            "Mako templates allow HTML/JS rendering by default and are inherently open to XSS \
             attacks. Ensure variables in all templates are properly sanitized via the 'n', 'h' \
             or 'x' flags (depending on context). For example, to HTML escape the variable \
             'data' do ${ data |h }.",
        )
    })
}

/// B704: `Markup` over anything but a constant.
pub(super) fn markupsafe(w: &Walk, call: &Call) -> Option<Issue> {
    if !matches!(call.qual.as_str(), "markupsafe.Markup" | "flask.Markup") {
        return None;
    }
    let &first = call.args.first()?;
    if super::python_calls::constant_arg(w, first) {
        return None;
    }
    Some(issue(
        Level::Medium,
        Level::High,
        format!(
            "Potential XSS with ``{}`` detected. Do not use ``{}`` on untrusted data.",
            call.qual,
            call.name()
        ),
    ))
}
