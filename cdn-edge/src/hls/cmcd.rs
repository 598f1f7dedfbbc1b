//! Common Media Client Data (CTA-5004): the `nor` (next object request) hint a player sends
//! in the `CMCD` query parameter or the `CMCD-Request` header.

use percent_encoding::percent_decode_str;

/// Longest CMCD payload inspected; longer payloads are ignored.
pub const MAX_CMCD_LEN: usize = 4096;

/// Most keys inspected in one CMCD payload.
const MAX_KEYS: usize = 64;

/// The `nor` value of a request's CMCD data: the percent-decoded, possibly relative URL of
/// the object the player will request next. Looks in the `CMCD` query parameter first, then
/// in the `CMCD-Request` header. `None` when absent, malformed or oversize.
pub fn next_object_request(query: &str, cmcd_request_header: Option<&str>) -> Option<String> {
    let from_query = query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "CMCD").then(|| percent_decode_str(value).decode_utf8().ok())?
    });
    from_query
        .as_deref()
        .and_then(nor_of)
        .or_else(|| cmcd_request_header.and_then(nor_of))
}

/// The `nor` value of one CMCD key-value list (`bl=21300,nor="..%2Fseg2.m4s",su`).
fn nor_of(list: &str) -> Option<String> {
    if list.len() > MAX_CMCD_LEN {
        return None;
    }
    let value = entries(list)
        .take(MAX_KEYS)
        .find_map(|(k, v)| (k == "nor").then_some(v))??;
    let unquoted = value.strip_prefix('"')?.strip_suffix('"')?;
    let unescaped = unquoted.replace("\\\"", "\"").replace("\\\\", "\\");
    let decoded = percent_decode_str(&unescaped).decode_utf8().ok()?;
    (!decoded.is_empty()).then(|| decoded.into_owned())
}

/// Splits a CMCD list into `(key, value)` pairs, honouring quoted strings; a bare key (a
/// boolean `true`) has no value.
fn entries(list: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let split = c == ',' && !in_quotes;
                if escaped {
                    escaped = false;
                } else if c == '\\' && in_quotes {
                    escaped = true;
                } else if c == '"' {
                    in_quotes = !in_quotes;
                }
                split
            })
            .map_or(rest.len(), |(i, _)| i);
        let item = rest[..end].trim();
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_from_query_and_header() {
        let q = "a=1&CMCD=bl%3D21300%2Cnor%3D%22..%252Fseg2.m4s%22%2Csid%3D%226e2f%22";
        assert_eq!(next_object_request(q, None).as_deref(), Some("../seg2.m4s"));
        let h = r#"bl=21300,nor="seg%203.ts",nrr="12323-48763",su"#;
        assert_eq!(
            next_object_request("", Some(h)).as_deref(),
            Some("seg 3.ts")
        );
        // The query wins over the header.
        assert_eq!(
            next_object_request("CMCD=nor%3D%22q.ts%22", Some(h)).as_deref(),
            Some("q.ts")
        );
    }

    #[test]
    fn malformed_cmcd_is_ignored() {
        assert_eq!(next_object_request("", Some("nor=unquoted")), None);
        assert_eq!(next_object_request("", Some(r#"nor="""#)), None);
        assert_eq!(next_object_request("", Some(r#"nor="open"#)), None);
        assert_eq!(next_object_request("", Some("nor")), None);
        assert_eq!(next_object_request("", Some(",,,")), None);
        assert_eq!(next_object_request("CMCD=%FF", None), None);
        let huge = format!(r#"nor="{}""#, "a".repeat(MAX_CMCD_LEN));
        assert_eq!(next_object_request("", Some(&huge)), None);
        let commas = r#"sid="a,b",nor="x,y.ts""#;
        assert_eq!(
            next_object_request("", Some(commas)).as_deref(),
            Some("x,y.ts")
        );
    }
}
