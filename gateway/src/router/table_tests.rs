//! The routing table as data: routes, then requests and the route (and captures) they reach.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{RequestView, Router};
use crate::config::model::{
    HeaderRules, IpAccess, PathMatch, Rewrite, Route, RouteMatch, RouteUpstream, ValueMatch,
    ValuePredicate,
};

/// Builds a route named `name` with the given hosts and path; the other fields take defaults.
pub(super) fn route(name: &str, hosts: &[&str], path: PathMatch) -> Route {
    Route {
        name: name.to_owned(),
        matcher: RouteMatch {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path,
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
        },
        upstream: RouteUpstream::Single("pool".to_owned()),
        rewrite: None,
        request_headers: HeaderRules::default(),
        response_headers: HeaderRules::default(),
        retry_non_idempotent: false,
        access: IpAccess::default(),
        max_body: None,
        plugins: Vec::new(),
        circuit_breaker: None,
        cache: None,
    }
}

fn methods(mut r: Route, m: &[&str]) -> Route {
    r.matcher.methods = m.iter().map(|m| m.to_string()).collect();
    r
}

fn header(mut r: Route, name: &str, value: ValuePredicate) -> Route {
    r.matcher.headers.push(ValueMatch {
        name: name.to_owned(),
        value,
    });
    r
}

fn query(mut r: Route, name: &str, value: ValuePredicate) -> Route {
    r.matcher.query.push(ValueMatch {
        name: name.to_owned(),
        value,
    });
    r
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.to_owned())
}
fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.to_owned())
}
fn template(p: &str) -> PathMatch {
    PathMatch::Template(p.to_owned())
}
fn regex(p: &str) -> PathMatch {
    PathMatch::Regex(p.to_owned())
}
fn value(v: &str) -> ValuePredicate {
    ValuePredicate::Exact(v.to_owned())
}
fn value_regex(v: &str) -> ValuePredicate {
    ValuePredicate::Regex(v.to_owned())
}

fn routes() -> Vec<Route> {
    use ValuePredicate::{Absent, Present};
    let api = &["api.example.com"][..];
    vec![
        route("api-health", api, exact("/v1/health")),
        route("api-url", api, template("/v1/urls/{code}")),
        route("api-url-stats", api, template("/v1/urls/stats")),
        route("api-v1", api, prefix("/v1")),
        route("wild-eu", &["*.eu.example.com"], prefix("/")),
        route("wild", &["*.example.com"], prefix("/")),
        route("static", &[], template("/static/{*rest}")),
        route("assets-img", &[], prefix("/assets/img")),
        route("assets", &[], prefix("/assets/")),
        route(
            "posts",
            &[],
            regex(r"/users/(?P<user>\d+)/posts/(?P<post>\d+)"),
        ),
        methods(
            route("submit-post", &[], exact("/submit")),
            &["POST", "PUT"],
        ),
        route("submit", &[], exact("/submit")),
        header(
            route("beta", &[], prefix("/feature")),
            "x-beta",
            value("on"),
        ),
        header(
            route("curl", &[], prefix("/feature")),
            "user-agent",
            value_regex("curl/.*"),
        ),
        header(
            route("anonymous", &[], prefix("/feature")),
            "authorization",
            Absent,
        ),
        route("feature", &[], prefix("/feature")),
        query(
            route("search-q", &[], exact("/search")),
            "q",
            value("hello world"),
        ),
        query(
            route("search-debug", &[], exact("/search")),
            "debug",
            Present,
        ),
        query(
            route("search-page", &[], exact("/search")),
            "page",
            value_regex(r"\d+"),
        ),
        route("search", &[], exact("/search")),
        query(
            route("export-plain", &[], exact("/export")),
            "format",
            Absent,
        ),
        route("export", &[], exact("/export")),
        route("dup-first", &[], template("/dup/{x}")),
        route("dup-second", &[], template("/dup/{y}")),
        methods(
            route("api-item-get", api, template("/v1/items/{id}")),
            &["GET"],
        ),
        methods(
            route("shop-cart-post", &["shop.test"], exact("/cart")),
            &["POST"],
        ),
        route("cart", &[], exact("/cart")),
        route("tenant-dash", &[], template("/{tenant}/dashboard")),
        route("catch-regex", &["catchall.test"], regex("/.*")),
        route("catch-all", &["catchall.test"], prefix("/")),
        route("multi-host", &["a.test", "B.Test"], exact("/m")),
        header(
            header(
                route("two-headers", &[], prefix("/feature")),
                "x-a",
                Present,
            ),
            "x-b",
            Present,
        ),
    ]
}

/// One request and what it should reach.
struct Case {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    query: Option<&'static str>,
    expect: Option<(&'static str, &'static [(&'static str, &'static str)])>,
}

const fn get(host: &'static str, path: &'static str) -> Case {
    Case {
        host,
        method: "GET",
        path,
        headers: &[],
        query: None,
        expect: None,
    }
}

impl Case {
    const fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    const fn headers(mut self, h: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = h;
        self
    }
    const fn query(mut self, q: &'static str) -> Self {
        self.query = Some(q);
        self
    }
    const fn to(
        mut self,
        name: &'static str,
        caps: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.expect = Some((name, caps));
        self
    }
}

const API: &str = "api.example.com";

const CASES: &[Case] = &[
    // Exact host, exact path, and the trailing dot.
    get(API, "/v1/health").to("api-health", &[]),
    get("api.example.com.", "/v1/health").to("api-health", &[]),
    // Templates: more literal segments first; captures.
    get(API, "/v1/urls/abc").to("api-url", &[("code", "abc")]),
    get(API, "/v1/urls/stats").to("api-url-stats", &[]),
    // Prefix after templates; exact host falls through to the wildcard when nothing matches.
    get(API, "/v1/urls/abc/def").to("api-v1", &[]),
    get(API, "/v1").to("api-v1", &[]),
    get(API, "/v2").to("wild", &[]),
    // Method predicate falls through within the host, then to the wildcard.
    get(API, "/v1/items/7").to("api-item-get", &[("id", "7")]),
    get(API, "/v1/items/7").method("DELETE").to("api-v1", &[]),
    // Wildcards: more labels first, one or more labels, never the bare domain.
    get("x.eu.example.com", "/a").to("wild-eu", &[]),
    get("a.b.eu.example.com", "/a").to("wild-eu", &[]),
    get("eu.example.com", "/a").to("wild", &[]),
    get("deep.x.example.com", "/a").to("wild", &[]),
    get("example.com", "/static/app.js").to("static", &[("rest", "app.js")]),
    get("example.com", "/nothing"),
    // Catch-all template captures the rest, possibly empty.
    get("other.org", "/static/css/site.css").to("static", &[("rest", "css/site.css")]),
    get("other.org", "/static").to("static", &[("rest", "")]),
    // Longer prefix first; segment boundaries.
    get("other.org", "/assets/img/logo.png").to("assets-img", &[]),
    get("other.org", "/assets/imgx").to("assets", &[]),
    get("other.org", "/assetsx"),
    // Regex, anchored, named groups.
    get("other.org", "/users/12/posts/34").to("posts", &[("user", "12"), ("post", "34")]),
    get("other.org", "/users/12/posts/34/x"),
    // Methods: the route with the predicate wins when it holds.
    get("other.org", "/submit")
        .method("POST")
        .to("submit-post", &[]),
    get("other.org", "/submit")
        .method("PUT")
        .to("submit-post", &[]),
    get("other.org", "/submit").to("submit", &[]),
    // Headers: more predicates first, then config order; exact, regex, absent.
    get("other.org", "/feature/x")
        .headers(&[("x-a", "1"), ("x-b", "2"), ("x-beta", "on")])
        .to("two-headers", &[]),
    get("other.org", "/feature/x")
        .headers(&[("x-beta", "on")])
        .to("beta", &[]),
    get("other.org", "/feature")
        .headers(&[("x-beta", "off"), ("user-agent", "curl/8.0")])
        .to("curl", &[]),
    get("other.org", "/feature")
        .headers(&[("user-agent", "Mozilla curl/8")])
        .to("anonymous", &[]),
    get("other.org", "/feature")
        .headers(&[("authorization", "Bearer x")])
        .to("feature", &[]),
    get("other.org", "/feature")
        .headers(&[("x-a", "1"), ("authorization", "b")])
        .to("feature", &[]),
    // Query: decoded values, presence, regex; fall back to the plain route.
    get("other.org", "/search")
        .query("q=hello+world")
        .to("search-q", &[]),
    get("other.org", "/search")
        .query("%71=hello%20world")
        .to("search-q", &[]),
    get("other.org", "/search")
        .query("q=hello&debug")
        .to("search-debug", &[]),
    get("other.org", "/search")
        .query("page=12")
        .to("search-page", &[]),
    get("other.org", "/search")
        .query("page=12a")
        .to("search", &[]),
    get("other.org", "/search").to("search", &[]),
    get("other.org", "/export")
        .query("page=1")
        .to("export-plain", &[]),
    get("other.org", "/export")
        .query("format=csv")
        .to("export", &[]),
    // Any value of a repeated header may satisfy the predicate.
    get("other.org", "/feature")
        .headers(&[("x-beta", "off"), ("x-beta", "on")])
        .to("beta", &[]),
    // Config order breaks ties.
    get("other.org", "/dup/1").to("dup-first", &[("x", "1")]),
    // A host-specific route that fails its method falls through to any-host routes.
    get("shop.test", "/cart")
        .method("POST")
        .to("shop-cart-post", &[]),
    get("shop.test", "/cart").to("cart", &[]),
    // Host specificity comes before path kind: a wildcard prefix beats an any-host exact path.
    get("shop.example.com", "/cart").to("wild", &[]),
    // Templates starting with a capture are found without a first-segment key.
    get("other.org", "/acme/dashboard").to("tenant-dash", &[("tenant", "acme")]),
    get("other.org", "/acme/dashboard/"),
    // Prefix beats regex, whatever the config order.
    get("catchall.test", "/anything").to("catch-all", &[]),
    // Several hosts on one route, patterns lower-cased.
    get("a.test", "/m").to("multi-host", &[]),
    get("b.test", "/m").to("multi-host", &[]),
    get("c.test", "/m"),
];

#[test]
fn routing_table() {
    let routes = routes();
    let router = Router::new(&routes).expect("routes compile");
    for case in CASES {
        let mut headers = HeaderMap::new();
        for (name, value) in case.headers {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let req = RequestView {
            host: case.host,
            path: case.path,
            method: case.method,
            headers: &headers,
            query: case.query,
        };
        let got = router.route(&req).map(|m| {
            let caps: Vec<(&str, &str)> = m.captures.iter().collect();
            (routes[m.route].name.as_str(), caps)
        });
        let want = case.expect.map(|(n, c)| (n, c.to_vec()));
        assert_eq!(
            got, want,
            "{} {} {}{:?} {:?}",
            case.method, case.host, case.path, case.query, case.headers
        );
    }
}

#[test]
fn compile_errors_name_the_route() {
    let mut bad_rewrite = route("r", &[], template("/a/{id}"));
    bad_rewrite.rewrite = Some(Rewrite::Path("/b/{other}".to_owned()));
    let mut bad_strip = route("s", &[], exact("/a"));
    bad_strip.rewrite = Some(Rewrite::StripPrefix("/".to_owned()));
    let mut relative = route("relative", &[], template("/a/{id}"));
    relative.rewrite = Some(Rewrite::Path("b/{id}".to_owned()));
    let routes = vec![
        route("ok", &[], exact("/")),
        route("bad-host", &["a.*.com"], exact("/")),
        route("bad-regex", &[], regex("(")),
        bad_rewrite,
        bad_strip,
        header(
            route("bad-header", &[], exact("/")),
            "bad header",
            ValuePredicate::Present,
        ),
        methods(route("bad-method", &[], exact("/")), &["GE T"]),
        query(route("bad-query", &[], exact("/")), "q", value_regex("[")),
        relative,
    ];
    let errors = Router::new(&routes).expect_err("invalid routes");
    let indices: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [1, 2, 3, 4, 5, 6, 7, 8], "{errors:?}");
}

#[test]
fn empty_table_matches_nothing() {
    let router = Router::new(&[]).expect("empty table");
    let headers = HeaderMap::new();
    let req = RequestView {
        host: "a",
        path: "/",
        method: "GET",
        headers: &headers,
        query: None,
    };
    assert_eq!(router.route(&req), None);
}
