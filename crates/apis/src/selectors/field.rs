//! Field selectors, as upstream's `k8s.io/apimachinery/pkg/fields`, and the table of
//! which fields each built-in resource can be selected by.
//!
//! Syntax: comma separated `field=value`, `field==value` or `field!=value` terms, all of
//! which must hold. In values, `\`, `,` and `=` are escaped with a backslash. Upstream
//! stores objects' selectable fields as strings, so a missing field compares as `""`.
//!
//! Each resource accepts only its own field labels (upstream's field label conversion
//! functions); anything else is a 400 `field label not supported: <name>`.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Why a field selector was rejected; messages are upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term without a recognised operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=` (or nothing).
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// An unescaped `,` or `=` inside a value; upstream prints the code point.
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
    /// The resource has no such selectable field (a 400 BadRequest).
    #[error("field label not supported: {0}")]
    UnsupportedLabel(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One `field op value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    /// The unescaped value.
    pub value: String,
}

impl FieldRequirement {
    pub fn matches(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// A parsed field selector; empty matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the `?fieldSelector=` string form.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        // Upstream sorts the raw terms, which fixes the canonical order.
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw)) = split_term(term) else {
                return Err(FieldSelectorError::InvalidTerm {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            let value = unescape_value(raw)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator: op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// A selector requiring `field=value` for each pair.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut requirements: Vec<FieldRequirement> = pairs
            .into_iter()
            .map(|(f, v)| FieldRequirement {
                field: f.to_string(),
                operator: FieldOperator::Equals,
                value: v.to_string(),
            })
            .collect();
        requirements.sort_by_key(|r| r.to_string());
        FieldSelector { requirements }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether every term holds; `get` returns a field's value (`None` reads as `""`).
    pub fn matches<F>(&self, get: F) -> bool
    where
        F: Fn(&str) -> Option<String>,
    {
        self.requirements
            .iter()
            .all(|r| r.matches(get(&r.field).as_deref().unwrap_or("")))
    }

    /// Matches an object of a built-in (or custom) resource using [`field_value`].
    pub fn matches_object(&self, group: &str, resource: &str, obj: &Value) -> bool {
        self.matches(|f| field_value(group, resource, obj, f))
    }

    /// The value a field must equal, if the selector pins one.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Checks every field is selectable on the resource and rewrites legacy aliases
    /// (pods' `spec.host` → `spec.nodeName`), like upstream's field label conversion.
    pub fn convert_for(
        &self,
        group: &str,
        resource: &str,
    ) -> Result<FieldSelector, FieldSelectorError> {
        let supported = supported_fields(group, resource);
        let mut requirements = Vec::with_capacity(self.requirements.len());
        for r in &self.requirements {
            if !supported.contains(&r.field.as_str()) {
                return Err(FieldSelectorError::UnsupportedLabel(r.field.clone()));
            }
            let field = match (group, resource, r.field.as_str()) {
                ("", "pods", "spec.host") => "spec.nodeName".to_string(),
                _ => r.field.clone(),
            };
            requirements.push(FieldRequirement { field, ..r.clone() });
        }
        Ok(FieldSelector { requirements })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Splits on commas not preceded by a backslash (escapes are kept for unescaping).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The first operator occurrence splits the term; `!=` and `==` win over `=`.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

/// Escapes `\`, `,` and `=` in a value.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`]; rejects unknown escapes and bare `,`/`=`.
pub fn unescape_value(s: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscapeSequence(format!("\\{c}")));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];

/// Field labels a resource can be selected by (upstream's field label conversion
/// functions). Resources without their own list, custom resources included, accept
/// `metadata.name` and `metadata.namespace`.
pub fn supported_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
            "spec.host",
        ],
        ("", "events") => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "metadata.name",
            "metadata.namespace",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "nodes") => &["metadata.name", "spec.unschedulable"],
        ("", "namespaces") => &["metadata.name", "status.phase"],
        ("", "secrets") => &["metadata.name", "metadata.namespace", "type"],
        ("", "services") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ],
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("batch", "jobs") => &["metadata.name", "metadata.namespace", "status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => {
            &["metadata.name", "metadata.namespace", "spec.signerName"]
        }
        _ => META,
    }
}

fn str_at(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn bool_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

fn int_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

/// An event's field, from either the core/v1 or the events.k8s.io/v1 shape.
fn event_field(obj: &Value, core: &str, events: &str) -> String {
    let v = str_at(obj, core);
    if v.is_empty() {
        str_at(obj, events)
    } else {
        v
    }
}

/// The value of a selectable field of an object, as upstream's `ToSelectableFields`
/// renders it (booleans `true`/`false`, counts as decimal, absent strings `""`).
/// `None` when the resource does not support the field.
pub fn field_value(group: &str, resource: &str, obj: &Value, field: &str) -> Option<String> {
    if !supported_fields(group, resource).contains(&field) {
        return None;
    }
    let v = match (group, resource, field) {
        (_, _, "metadata.name") => str_at(obj, "/metadata/name"),
        (_, _, "metadata.namespace") => str_at(obj, "/metadata/namespace"),
        ("", "pods", "spec.host") => str_at(obj, "/spec/nodeName"),
        ("", "pods", "spec.hostNetwork") => bool_at(obj, "/spec/hostNetwork"),
        ("", "pods", "status.podIP") => {
            let first = str_at(obj, "/status/podIPs/0/ip");
            if first.is_empty() {
                str_at(obj, "/status/podIP")
            } else {
                first
            }
        }
        ("", "events", "source") => {
            let component = str_at(obj, "/source/component");
            if component.is_empty() {
                str_at(obj, "/reportingComponent")
            } else {
                component
            }
        }
        ("", "events", f) if f.starts_with("involvedObject.") => {
            let sub = &f["involvedObject.".len()..];
            event_field(
                obj,
                &format!("/involvedObject/{sub}"),
                &format!("/regarding/{sub}"),
            )
        }
        ("", "events", "reportingComponent")
        | ("events.k8s.io", "events", "reportingController") => {
            event_field(obj, "/reportingComponent", "/reportingController")
        }
        ("events.k8s.io", "events", f) if f.starts_with("regarding.") => {
            let sub = &f["regarding.".len()..];
            event_field(
                obj,
                &format!("/regarding/{sub}"),
                &format!("/involvedObject/{sub}"),
            )
        }
        ("", "nodes", "spec.unschedulable") => bool_at(obj, "/spec/unschedulable"),
        (_, _, "status.replicas") => int_at(obj, "/status/replicas"),
        ("batch", "jobs", "status.successful") => int_at(obj, "/status/succeeded"),
        // Every other supported field is a plain string at its own dotted path.
        (_, _, f) => str_at(obj, &format!("/{}", f.replace('.', "/"))),
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_prints_canonically() {
        let cases = [
            ("", ""),
            ("metadata.name=foo", "metadata.name=foo"),
            ("metadata.name==foo", "metadata.name=foo"),
            ("status.phase!=Running", "status.phase!=Running"),
            ("b=1,a=2", "a=2,b=1"),
            ("a=x\\,y\\=z\\\\", "a=x\\,y\\=z\\\\"),
            ("a=", "a="),
            ("a=b,", "a=b"),
        ];
        for (input, want) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), want, "{input:?}");
        }
        let sel = FieldSelector::parse("a=x\\,y").expect("escaped");
        assert_eq!(sel.requirements()[0].value, "x,y");
        assert!(FieldSelector::parse("").expect("empty").is_empty());
    }

    #[test]
    fn rejects_bad_input_with_upstream_messages() {
        let cases = [
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).expect_err(input).to_string(),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn checks_support_per_resource() {
        let sel = FieldSelector::parse("spec.host=n1").expect("sel");
        let conv = sel.convert_for("", "pods").expect("pods support spec.host");
        assert_eq!(conv.to_string(), "spec.nodeName=n1");
        let err = FieldSelector::parse("spec.nodeName=n1")
            .expect("sel")
            .convert_for("apps", "deployments");
        assert_eq!(
            err.expect_err("unsupported").to_string(),
            "field label not supported: spec.nodeName"
        );
        assert!(FieldSelector::parse("metadata.namespace=x")
            .expect("s")
            .convert_for("", "nodes")
            .is_err());
        assert!(FieldSelector::parse("metadata.name=x")
            .expect("s")
            .convert_for("example.com", "widgets")
            .is_ok());
    }

    #[test]
    fn extracts_values_like_upstream() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}
        });
        let cases = [
            ("spec.nodeName", Some("n1")),
            ("spec.hostNetwork", Some("false")),
            ("status.podIP", Some("10.0.0.1")),
            ("spec.schedulerName", Some("")),
            ("metadata.namespace", Some("default")),
            ("spec.containers", None),
        ];
        for (f, want) in cases {
            assert_eq!(field_value("", "pods", &pod, f).as_deref(), want, "{f}");
        }
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").expect("sel");
        assert!(sel.matches_object("", "pods", &pod));
        assert!(!FieldSelector::parse("spec.nodeName=")
            .expect("sel")
            .matches_object("", "pods", &pod));

        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}, "type": "Normal"});
        assert_eq!(
            field_value("", "events", &ev, "involvedObject.kind").as_deref(),
            Some("Pod")
        );
        assert_eq!(
            field_value("", "events", &ev, "source").as_deref(),
            Some("kubelet")
        );
        assert_eq!(
            field_value("events.k8s.io", "events", &ev, "regarding.name").as_deref(),
            Some("p")
        );
        let rs = json!({"status": {"replicas": 3}});
        assert_eq!(
            field_value("apps", "replicasets", &rs, "status.replicas").as_deref(),
            Some("3")
        );
        let job = json!({"status": {}});
        assert_eq!(
            field_value("batch", "jobs", &job, "status.successful").as_deref(),
            Some("0")
        );
        let node = json!({"spec": {"unschedulable": true}});
        assert_eq!(
            field_value("", "nodes", &node, "spec.unschedulable").as_deref(),
            Some("true")
        );
        let secret = json!({"type": "kubernetes.io/tls"});
        assert!(FieldSelector::parse("type=kubernetes.io/tls")
            .expect("s")
            .matches_object("", "secrets", &secret));
    }
}
