//! Reading the `routes:` section (and IP access lists, shared with the top level).

use std::collections::BTreeSet;

use super::breaker::read_breaker;
use super::error::Errors;
use super::fields::{
    boolean, did_you_mean, entries, list, list_of, number, one_or_many, parsed, size, text, Fields,
};
use super::model::{
    HeaderRules, IpAccess, PathMatch, PluginSpec, Position, Rewrite, Route, RouteMatch,
    RouteUpstream, ValueMatch, ValuePredicate,
};
use super::upstreams::valid_name;
use super::validate;
use super::yaml::{Kind, Node};

/// Most routes in one config.
const MAX_ROUTES: usize = 10_000;
/// Largest split weight.
const MAX_SPLIT_WEIGHT: u64 = 10_000;

/// Reads every route in order. Invalid routes are reported and left out.
pub(crate) fn read_routes(
    node: &Node,
    upstreams: &BTreeSet<String>,
    errs: &mut Errors,
) -> Vec<Route> {
    let Some(items) = list(node, "routes", errs) else {
        return Vec::new();
    };
    if items.len() > MAX_ROUTES {
        errs.add(
            node.pos,
            format!(
                "routes: {} routes; at most {MAX_ROUTES} are allowed",
                items.len()
            ),
        );
        return Vec::new();
    }
    let mut routes: Vec<Route> = Vec::with_capacity(items.len());
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some((route, name_pos)) = read_route(item, &path, i, upstreams, errs) else {
            continue;
        };
        if names.contains(&route.name) {
            errs.add(
                name_pos,
                format!("{path}.name: duplicate route name \"{}\"", route.name),
            );
            continue;
        }
        names.push(route.name.clone());
        routes.push(route);
    }
    routes
}

/// Reads one route; also returns where its name is (or the route is, when unnamed).
fn read_route(
    node: &Node,
    path: &str,
    index: usize,
    upstreams: &BTreeSet<String>,
    errs: &mut Errors,
) -> Option<(Route, Position)> {
    let mut f = Fields::open(node, path, errs)?;
    let mut name_pos = f.pos();
    let name = f.get("name", errs, |n, p, e| {
        name_pos = n.pos;
        parsed(n, p, e, |s| valid_name("route", s))
    });
    let matched = f.require("match", errs, read_match);
    let single = f.get("upstream", errs, |n, p, e| upstream_ref(n, p, e, upstreams));
    let split = f.get("split", errs, |n, p, e| read_split(n, p, e, upstreams));
    let target_count = usize::from(f.has("upstream")) + usize::from(f.has("split"));
    let rewrite_node = f.take("rewrite");
    let request_headers = f.get_or(
        "request_headers",
        HeaderRules::default(),
        errs,
        header_rules,
    );
    let response_headers = f.get_or(
        "response_headers",
        HeaderRules::default(),
        errs,
        header_rules,
    );
    let retry_non_idempotent = f.get_or("retry_non_idempotent", false, errs, boolean);
    let access = f.get_or("access", IpAccess::default(), errs, read_access);
    let max_body = f.get("max_body", errs, size);
    let plugins = f.get_or("plugins", Vec::new(), errs, read_plugins);
    let circuit_breaker = f.get("circuit_breaker", errs, |n, p, e| {
        read_breaker(n, p, e, upstreams)
    });
    let cache = f.get("cache", errs, |n, p, e| {
        super::cache::read_route_cache(n, p, e, upstreams)
    });
    let route_pos = f.pos();
    f.finish(errs);

    if target_count != 1 {
        errs.add(
            route_pos,
            format!("{path}: expected exactly one of upstream or split"),
        );
        return None;
    }
    let (matcher, captures) = matched?;
    let rewrite = match rewrite_node {
        Some(n) => Some(read_rewrite(
            n,
            &format!("{path}.rewrite"),
            errs,
            &matcher.path,
            &captures,
        )?),
        None => None,
    };
    let upstream = match (single, split) {
        (Some(name), None) => RouteUpstream::Single(name),
        (None, Some(split)) => RouteUpstream::Split(split),
        _ => return None,
    };
    let route = Route {
        name: name.unwrap_or_else(|| format!("route-{index}")),
        matcher,
        upstream,
        rewrite,
        request_headers,
        response_headers,
        retry_non_idempotent,
        access,
        max_body,
        plugins,
        circuit_breaker,
        cache,
    };
    Some((route, name_pos))
}

/// A reference to a defined upstream.
pub(crate) fn upstream_ref(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    upstreams: &BTreeSet<String>,
) -> Option<String> {
    parsed(node, path, errs, |s| {
        if upstreams.contains(s) {
            return Ok(s.to_owned());
        }
        let known: Vec<&str> = upstreams.iter().map(String::as_str).collect();
        let hint = did_you_mean(s, &known)
            .map(|n| format!("did you mean \"{n}\"? "))
            .unwrap_or_default();
        Err(format!(
            "unknown upstream \"{s}\"; {hint}defined upstreams: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })
}

fn read_split(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    upstreams: &BTreeSet<String>,
) -> Option<Vec<(String, u32)>> {
    let parts = list_of(node, path, errs, |n, p, e| {
        let mut f = Fields::open(n, p, e)?;
        let name = f.require("upstream", e, |n, p, e| upstream_ref(n, p, e, upstreams));
        let weight = f.require("weight", e, |n, p, e| number(n, p, e, 1, MAX_SPLIT_WEIGHT));
        f.finish(e);
        Some((name?, weight?))
    })?;
    if matches!(&node.kind, Kind::Seq(items) if items.is_empty()) {
        errs.add(node.pos, format!("{path}: expected at least one upstream"));
    }
    (!parts.is_empty()).then_some(parts)
}

/// Reads `match:`; also returns the capture names its path predicate defines.
fn read_match(node: &Node, path: &str, errs: &mut Errors) -> Option<(RouteMatch, Vec<String>)> {
    let mut f = Fields::open(node, path, errs)?;
    let hosts = f.get_or("host", Vec::new(), errs, |n, p, e| {
        let items = one_or_many(n);
        let hosts: Vec<String> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_path = if items.len() > 1 || matches!(n.kind, Kind::Seq(_)) {
                    format!("{p}[{i}]")
                } else {
                    p.to_owned()
                };
                parsed(item, &item_path, e, validate::host_pattern)
            })
            .collect();
        Some(hosts)
    });
    let exact = f.get("path", errs, |n, p, e| {
        parsed(n, p, e, |s| {
            if s.contains(['{', '}']) {
                let names = validate::path_template(s)?;
                Ok((PathMatch::Template(s.to_owned()), names))
            } else if s.starts_with('/') {
                Ok((PathMatch::Exact(s.to_owned()), Vec::new()))
            } else {
                Err(format!(
                    "\"{s}\" is not a path; expected one starting with /"
                ))
            }
        })
    });
    let prefix = f.get("path_prefix", errs, |n, p, e| {
        parsed(n, p, e, |s| {
            if s.starts_with('/') {
                Ok((PathMatch::Prefix(s.to_owned()), Vec::new()))
            } else {
                Err(format!(
                    "\"{s}\" is not a path prefix; expected one starting with /"
                ))
            }
        })
    });
    let regex = f.get("path_regex", errs, |n, p, e| {
        parsed(n, p, e, |s| {
            let names = validate::regex(s)?;
            Ok((PathMatch::Regex(s.to_owned()), names))
        })
    });
    let written = ["path", "path_prefix", "path_regex"]
        .iter()
        .filter(|k| f.has(k))
        .count();
    let methods = f.get_or("methods", Vec::new(), errs, |n, p, e| {
        list_of(n, p, e, |n, p, e| parsed(n, p, e, validate::method))
    });
    let headers = f.get_or("headers", Vec::new(), errs, |n, p, e| {
        value_matches(n, p, e, validate::header_name)
    });
    let query = f.get_or("query", Vec::new(), errs, |n, p, e| {
        value_matches(n, p, e, |s| {
            if s.is_empty() {
                Err("empty query parameter name".to_owned())
            } else {
                Ok(s.to_owned())
            }
        })
    });
    let pos = f.pos();
    f.finish(errs);
    if written != 1 {
        errs.add(
            pos,
            format!("{path}: expected exactly one of path, path_prefix or path_regex"),
        );
        return None;
    }
    let (path_match, captures) = exact.or(prefix).or(regex)?;
    let matcher = RouteMatch {
        hosts,
        path: path_match,
        methods,
        headers,
        query,
    };
    Some((matcher, captures))
}

/// Header or query predicates: `name: value`, `present`, `absent` or `~regex`.
fn value_matches(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    check_name: fn(&str) -> Result<String, String>,
) -> Option<Vec<ValueMatch>> {
    let entries = entries(node, path, errs)?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry_path = format!("{path}.{}", entry.key);
        let name = match check_name(&entry.key) {
            Ok(name) => name,
            Err(message) => {
                errs.add(entry.key_pos, format!("{entry_path}: {message}"));
                continue;
            }
        };
        let value = parsed(&entry.value, &entry_path, errs, |s| {
            Ok(match s {
                "present" => ValuePredicate::Present,
                "absent" => ValuePredicate::Absent,
                _ => match s.strip_prefix('~') {
                    Some(re) => {
                        validate::regex(re)?;
                        ValuePredicate::Regex(re.to_owned())
                    }
                    None => ValuePredicate::Exact(s.to_owned()),
                },
            })
        });
        if let Some(value) = value {
            out.push(ValueMatch { name, value });
        }
    }
    Some(out)
}

fn read_rewrite(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    matched: &PathMatch,
    captures: &[String],
) -> Option<Rewrite> {
    if let Kind::Map(_) = node.kind {
        let mut f = Fields::open(node, path, errs)?;
        let strip = f.require("strip_prefix", errs, text);
        f.finish(errs);
        let strip = strip?;
        if !matches!(matched, PathMatch::Prefix(_)) {
            errs.add(
                node.pos,
                format!("{path}: strip_prefix needs a path_prefix route"),
            );
            return None;
        }
        return Some(Rewrite::StripPrefix(strip));
    }
    parsed(node, path, errs, |s| {
        if !s.starts_with('/') {
            return Err(format!(
                "\"{s}\" is not a path; expected one starting with /"
            ));
        }
        for name in validate::rewrite_refs(s)? {
            if !captures.contains(&name) {
                let known = if captures.is_empty() {
                    "the route's path defines no captures".to_owned()
                } else {
                    format!("the route's path defines {}", captures.join(", "))
                };
                return Err(format!("\"{s}\" uses unknown capture {{{name}}}; {known}"));
            }
        }
        Ok(Rewrite::Path(s.to_owned()))
    })
}

fn header_rules(node: &Node, path: &str, errs: &mut Errors) -> Option<HeaderRules> {
    let mut f = Fields::open(node, path, errs)?;
    let add = f.get_or("add", Vec::new(), errs, header_pairs);
    let set = f.get_or("set", Vec::new(), errs, header_pairs);
    let remove = f.get_or("remove", Vec::new(), errs, |n, p, e| {
        list_of(n, p, e, |n, p, e| parsed(n, p, e, validate::header_name))
    });
    f.finish(errs);
    Some(HeaderRules { add, set, remove })
}

fn header_pairs(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<(String, String)>> {
    let entries = entries(node, path, errs)?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry_path = format!("{path}.{}", entry.key);
        let name = validate::header_name(&entry.key)
            .map_err(|message| errs.add(entry.key_pos, format!("{entry_path}: {message}")))
            .ok();
        let value = parsed(&entry.value, &entry_path, errs, validate::header_value);
        if let (Some(name), Some(value)) = (name, value) {
            out.push((name, value));
        }
    }
    Some(out)
}

/// `{ allow: [CIDR...], deny: [CIDR...] }`.
pub(crate) fn read_access(node: &Node, path: &str, errs: &mut Errors) -> Option<IpAccess> {
    let mut f = Fields::open(node, path, errs)?;
    let cidrs = |n: &Node, p: &str, e: &mut Errors| {
        list_of(n, p, e, |n, p, e| parsed(n, p, e, validate::cidr))
    };
    let allow = f.get_or("allow", Vec::new(), errs, cidrs);
    let deny = f.get_or("deny", Vec::new(), errs, cidrs);
    f.finish(errs);
    Some(IpAccess { allow, deny })
}

pub(crate) fn read_plugins(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<PluginSpec>> {
    list_of(node, path, errs, |n, p, e| {
        let entries = match &n.kind {
            Kind::Map(entries) if entries.len() == 1 => entries,
            Kind::Invalid => return None,
            _ => {
                e.add(
                    n.pos,
                    format!(
                        "{p}: expected a single-key mapping like `rate_limit: {{ rate: 100/s }}`, \
                         found {}",
                        n.describe()
                    ),
                );
                return None;
            }
        };
        let entry = &entries[0];
        let name = validate::plugin_name(&entry.key)
            .map_err(|message| e.add(entry.key_pos, format!("{p}: {message}")))
            .ok()?;
        let mut fields = std::collections::HashMap::new();
        let settings = super::yaml::to_json(&entry.value, "", &mut fields);
        Some(PluginSpec {
            name,
            settings,
            at: entry.key_pos,
            fields: std::sync::Arc::new(fields),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    #[test]
    fn plugin_settings_become_json() {
        let mut errs = Errors::new("t.yaml");
        let doc = parse(
            "- rate_limit: { rate: 100/s, burst: 200, ratio: 0.5, on: true, key: '1', x: ~ }\n",
            &|_| None,
            &mut errs,
        )
        .expect("parses");
        let plugins = read_plugins(&doc, "plugins", &mut errs).expect("plugins");
        assert!(errs.is_empty());
        assert_eq!(plugins[0].name, "rate_limit");
        assert_eq!(plugins[0].at, Position { line: 1, column: 3 });
        assert_eq!(
            plugins[0].settings,
            serde_json::json!({"rate": "100/s", "burst": 200, "ratio": 0.5, "on": true,
                               "key": "1", "x": null})
        );
    }

    #[test]
    fn plugin_setting_positions_follow_serde_paths() {
        let mut errs = Errors::new("t.yaml");
        let doc = parse(
            "- rate_limit:\n    limits:\n      - rate: 1/s\n      - rate: x\n",
            &|_| None,
            &mut errs,
        )
        .expect("parses");
        let plugins = read_plugins(&doc, "plugins", &mut errs).expect("plugins");
        let spec = &plugins[0];
        assert_eq!(
            spec.position_of("limits[1].rate"),
            Position { line: 4, column: 9 }
        );
        assert_eq!(
            spec.position_of("limits[1].nope"),
            Position { line: 4, column: 9 }
        );
        assert_eq!(spec.position_of("limits"), Position { line: 2, column: 5 });
        assert_eq!(spec.position_of(""), Position { line: 1, column: 3 });
    }
}
