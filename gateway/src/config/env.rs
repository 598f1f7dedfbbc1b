//! `${NAME}` and `${NAME:-default}` substitution in scalar values.
//!
//! `$${` writes a literal `${`. Names are `[A-Za-z_][A-Za-z0-9_]*`. Defaults are taken
//! literally (no nested substitution).

/// Longest variable name accepted.
const MAX_NAME_LEN: usize = 128;

/// Replaces every `${...}` in `text` with the value `lookup` gives for its name, or with its
/// default. Errors name the unset variable or describe the malformed reference.
pub(crate) fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${` is an escaped, literal `${`.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let body_and_rest = &rest[start + 2..];
        let Some(end) = body_and_rest.find('}') else {
            return Err(format!(
                "unterminated \"${{\" in \"{text}\"; expected ${{NAME}} or ${{NAME:-default}}"
            ));
        };
        let body = &body_and_rest[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_valid_name(name) {
            return Err(format!(
                "\"${{{body}}}\" is not a valid variable reference; expected ${{NAME}} or \
                 ${{NAME:-default}} with NAME made of letters, digits and _"
            ));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set and \"${{{name}}}\" has no default \
                     (write ${{{name}:-default}} to give one)"
                ))
            }
        }
        rest = &body_and_rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= MAX_NAME_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("api.local".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let cases = [
            ("plain", "plain"),
            ("${HOST}", "api.local"),
            ("http://${HOST}:${PORT:-80}/x", "http://api.local:80/x"),
            ("${EMPTY:-fallback}", ""),
            ("${UNSET:-}", ""),
            ("${UNSET:-a:b}", "a:b"),
            ("cost $5", "cost $5"),
            ("$${HOST}", "${HOST}"),
        ];
        for (text, want) in cases {
            assert_eq!(substitute(text, &env).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_unset_and_malformed_references() {
        let cases = [
            ("${UNSET}", "UNSET is not set"),
            ("a ${HOST", "unterminated"),
            ("${}", "not a valid variable reference"),
            ("${1X}", "not a valid variable reference"),
            ("${A-B}", "not a valid variable reference"),
        ];
        for (text, want) in cases {
            let err = substitute(text, &env).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
