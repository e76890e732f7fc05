//! Kubernetes label selectors in their string form (`labels.Parse` in
//! `k8s.io/apimachinery/pkg/labels`): comma-separated requirements
//! `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>n`, `k<n`.
//!
//! Keys are checked as qualified names (`[prefix/]name`). Values are not
//! restricted to label-value syntax: series labels served here include raw
//! JupyterHub user names (`user@example.com`), which must stay selectable.
//! The HPA only ever sends selectors that the API server validated.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// One value for `=`/`!=`/`>`/`<`, one or more for `in`/`notin`, none for
    /// the existence operators.
    pub values: Vec<String>,
}

/// A parsed selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {input:?}: {message}")]
pub struct SelectorError {
    pub input: String,
    pub message: String,
}

/// Something that has labels.
pub trait Labels {
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl Labels for [(&str, &str)] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<const N: usize> Labels for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<&str> {
        Labels::get(self.as_slice(), key)
    }
}

/// No labels at all.
pub struct NoLabels;

impl Labels for NoLabels {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl Requirement {
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::In => {
                value.is_some_and(|v| self.values.iter().any(|w| w == v))
            }
            // As in Go: a missing label satisfies `!=` and `notin`.
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.iter().any(|w| w == v))
            }
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

impl Selector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Values a selector pins `key` to (`key=v` or `key in (v)` with a single
    /// value), if any.
    pub fn pinned_value(&self, key: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find_map(|r| match (r.operator, r.values.as_slice()) {
                (Operator::Equals | Operator::In, [only]) if r.key == key => Some(only.as_str()),
                _ => None,
            })
    }

    /// The `metav1.LabelSelector` form, as Go's `ParseToLabelSelector` builds
    /// it: equality into `matchLabels`, the rest into `matchExpressions`;
    /// `None` for the empty selector. Go refuses `>`/`<` here; they are kept
    /// as `Gt`/`Lt` expressions so the echoed selector still says what was
    /// asked.
    pub fn to_label_selector(&self) -> Option<LabelSelector> {
        if self.is_empty() {
            return None;
        }
        let mut out = LabelSelector::default();
        for r in &self.requirements {
            let (operator, values) = match r.operator {
                Operator::Equals => {
                    out.match_labels.insert(r.key.clone(), r.values[0].clone());
                    continue;
                }
                Operator::In => ("In", r.values.clone()),
                Operator::NotIn | Operator::NotEquals => ("NotIn", r.values.clone()),
                Operator::Exists => ("Exists", Vec::new()),
                Operator::DoesNotExist => ("DoesNotExist", Vec::new()),
                Operator::GreaterThan => ("Gt", r.values.clone()),
                Operator::LessThan => ("Lt", r.values.clone()),
            };
            out.match_expressions.push(LabelSelectorRequirement {
                key: r.key.clone(),
                operator,
                values,
            });
        }
        Some(out)
    }
}

/// `metav1.LabelSelector` on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.operator {
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
                Operator::Equals => write!(f, "{}={}", r.key, r.values[0])?,
                Operator::NotEquals => write!(f, "{}!={}", r.key, r.values[0])?,
                Operator::GreaterThan => write!(f, "{}>{}", r.key, r.values[0])?,
                Operator::LessThan => write!(f, "{}<{}", r.key, r.values[0])?,
                Operator::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                Operator::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>') || c.is_whitespace()
}

fn lex(input: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut rest = input;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (token, len) = match c {
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            '>' => (Token::Gt, 1),
            '<' => (Token::Lt, 1),
            '=' if rest.starts_with("==") => (Token::DoubleEq, 2),
            '=' => (Token::Eq, 1),
            '!' if rest.starts_with("!=") => (Token::NotEq, 2),
            '!' => (Token::Not, 1),
            _ => {
                let end = rest.find(is_special).unwrap_or(rest.len());
                (Token::Ident(&rest[..end]), end)
            }
        };
        tokens.push(token);
        rest = &rest[len..];
    }
    Ok(tokens)
}

/// `[prefix/]name`: name ≤ 63 characters of `[A-Za-z0-9._-]` starting and
/// ending alphanumeric; prefix a DNS subdomain (≤ 253, lower case).
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(format!(
            "key {key:?}: name part must be 1-63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        ));
    }
    if let Some(prefix) = prefix {
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !prefix_ok {
            return Err(format!(
                "key {key:?}: prefix must be a lower-case DNS subdomain"
            ));
        }
    }
    Ok(())
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn value(&mut self, after: &str) -> Result<String, String> {
        match self.peek() {
            Some(Token::Ident(v)) => {
                let v = v.to_string();
                self.pos += 1;
                Ok(v)
            }
            // `k=` and `k=,j=x` select an empty value, as in Go.
            None | Some(Token::Comma) => Ok(String::new()),
            Some(other) => Err(format!("expected a value after {after}, found {other:?}")),
        }
    }

    fn set(&mut self, key: &str) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::Open) {
            return Err(format!("expected '(' after the operator for key {key:?}"));
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Ident(v)) => values.push(v.to_string()),
                Some(Token::Close) if values.is_empty() => {
                    return Err(format!("empty value set for key {key:?}"));
                }
                Some(Token::Comma) if values.is_empty() => values.push(String::new()),
                other => {
                    return Err(format!(
                        "expected a value in the set for key {key:?}, found {other:?}"
                    ));
                }
            }
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::Close) => break,
                other => {
                    return Err(format!(
                        "expected ',' or ')' in the set for key {key:?}, found {other:?}"
                    ));
                }
            }
        }
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            let Some(Token::Ident(key)) = self.next() else {
                return Err("expected a key after '!'".to_string());
            };
            validate_key(key)?;
            return Ok(Requirement {
                key: key.to_string(),
                operator: Operator::DoesNotExist,
                values: Vec::new(),
            });
        }
        let key = match self.next() {
            Some(Token::Ident(k)) => k,
            other => return Err(format!("expected a key, found {other:?}")),
        };
        validate_key(key)?;
        let key_s = key.to_string();
        let (operator, values) = match self.peek() {
            None | Some(Token::Comma) => (Operator::Exists, Vec::new()),
            Some(Token::Eq | Token::DoubleEq) => {
                self.pos += 1;
                (Operator::Equals, vec![self.value("'='")?])
            }
            Some(Token::NotEq) => {
                self.pos += 1;
                (Operator::NotEquals, vec![self.value("'!='")?])
            }
            Some(Token::Gt | Token::Lt) => {
                let op = if self.next() == Some(Token::Gt) {
                    Operator::GreaterThan
                } else {
                    Operator::LessThan
                };
                let v = self.value("'>' or '<'")?;
                if v.parse::<i64>().is_err() {
                    return Err(format!(
                        "value {v:?} for key {key:?} must be an integer for '>' and '<'"
                    ));
                }
                (op, vec![v])
            }
            Some(Token::Ident("in")) => {
                self.pos += 1;
                (Operator::In, self.set(key)?)
            }
            Some(Token::Ident("notin")) => {
                self.pos += 1;
                (Operator::NotIn, self.set(key)?)
            }
            Some(other) => return Err(format!("unexpected {other:?} after key {key:?}")),
        };
        Ok(Requirement {
            key: key_s,
            operator,
            values,
        })
    }
}

/// Parses a selector string; whitespace around tokens is ignored.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    let err = |message: String| SelectorError {
        input: input.to_string(),
        message,
    };
    let tokens = lex(input).map_err(err)?;
    let mut parser = Parser { tokens, pos: 0 };
    let mut requirements = Vec::new();
    if parser.peek().is_none() {
        return Ok(Selector::everything());
    }
    loop {
        requirements.push(parser.requirement().map_err(err)?);
        match parser.next() {
            None => break,
            Some(Token::Comma) => {
                if parser.peek().is_none() {
                    return Err(err("trailing ','".to_string()));
                }
            }
            Some(other) => return Err(err(format!("expected ',' or the end, found {other:?}"))),
        }
    }
    Ok(Selector { requirements })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_matches_everything() {
        let s = parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert!(parse("   ").unwrap().is_empty());
        assert_eq!(s.to_label_selector(), None);
    }

    #[test]
    fn equality_and_inequality() {
        let s = parse("component=singleuser-server, app==jupyterhub").unwrap();
        assert!(s.matches(&labels(&[
            ("component", "singleuser-server"),
            ("app", "jupyterhub")
        ])));
        assert!(!s.matches(&labels(&[("component", "singleuser-server")])));
        let s = parse("tier!=frontend").unwrap();
        assert!(s.matches(&labels(&[("tier", "backend")])));
        assert!(s.matches(&labels(&[])), "missing label satisfies !=");
        assert!(!s.matches(&labels(&[("tier", "frontend")])));
    }

    #[test]
    fn set_based() {
        let s = parse("env in (prod, qa),tier notin (frontend)").unwrap();
        assert_eq!(s.requirements[0].values, vec!["prod", "qa"]);
        assert!(s.matches(&labels(&[("env", "qa"), ("tier", "backend")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "frontend")])));
        assert!(
            s.matches(&labels(&[("env", "prod")])),
            "missing label satisfies notin"
        );
    }

    #[test]
    fn existence() {
        let s = parse("hub.jupyter.org/username,!hub.jupyter.org/servername").unwrap();
        assert_eq!(s.requirements[0].operator, Operator::Exists);
        assert_eq!(s.requirements[1].operator, Operator::DoesNotExist);
        assert!(s.matches(&labels(&[("hub.jupyter.org/username", "alice")])));
        assert!(!s.matches(&labels(&[
            ("hub.jupyter.org/username", "alice"),
            ("hub.jupyter.org/servername", "")
        ])));
    }

    #[test]
    fn greater_and_less() {
        let s = parse("gen>3,gen<10").unwrap();
        assert!(s.matches(&labels(&[("gen", "5")])));
        assert!(!s.matches(&labels(&[("gen", "3")])));
        assert!(!s.matches(&labels(&[("gen", "x")])));
        assert!(parse("gen>x").is_err());
    }

    #[test]
    fn raw_user_names_are_values() {
        let s = parse("user=user@example.com").unwrap();
        assert!(s.matches(&[("user", "user@example.com")]));
        assert_eq!(s.pinned_value("user"), Some("user@example.com"));
        assert_eq!(
            parse("user in (bob)").unwrap().pinned_value("user"),
            Some("bob")
        );
        assert_eq!(parse("user in (a,b)").unwrap().pinned_value("user"), None);
        assert_eq!(parse("user!=bob").unwrap().pinned_value("user"), None);
    }

    #[test]
    fn empty_value() {
        let s = parse("a=,b=x").unwrap();
        assert_eq!(s.requirements[0].values, vec![""]);
        assert!(s.matches(&labels(&[("a", ""), ("b", "x")])));
    }

    #[test]
    fn errors_describe_the_problem() {
        for bad in [
            "a in (b",
            "a in ()",
            "a in b",
            "=b",
            "a=b,",
            "a b",
            "!",
            "-a=b",
            "Foo.Bar/a=b",
            "a==(b)",
            "a=b)",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(!err.message.is_empty(), "{bad}");
        }
        let err = parse("a in (b").unwrap_err();
        assert!(err.to_string().contains("a in (b"), "{err}");
    }

    #[test]
    fn label_selector_form() {
        let s = parse("app=x,env in (b,a),tier!=f,k,!gone").unwrap();
        let ls = s.to_label_selector().unwrap();
        let json = serde_json::to_value(&ls).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "matchLabels": {"app": "x"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["a", "b"]},
                    {"key": "tier", "operator": "NotIn", "values": ["f"]},
                    {"key": "k", "operator": "Exists"},
                    {"key": "gone", "operator": "DoesNotExist"}
                ]
            })
        );
        let only_labels = parse("a=b").unwrap().to_label_selector().unwrap();
        assert_eq!(
            serde_json::to_value(&only_labels).unwrap(),
            serde_json::json!({"matchLabels": {"a": "b"}})
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1,m<2",
            "x.example.com/y==z",
            "",
        ] {
            let parsed = parse(text).unwrap();
            assert_eq!(parse(&parsed.to_string()).unwrap(), parsed);
        }
    }
}
