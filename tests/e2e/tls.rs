//! TLS: certificates chosen by SNI (exact and wildcard), HTTP/2 by ALPN, h2c, and mTLS.

use std::net::SocketAddr;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::harness::*;

struct Pki {
    ca_pem: String,
}

/// Writes a CA, server certificates for `a.example.com` and `*.b.example.com` (each valid for
/// its own names only), and a client certificate, into `dir`.
fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let leaf = |names: &[&str], file: &str| {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &ca).expect("sign");
        write_file(dir, &format!("{file}.pem"), &cert.pem());
        write_file(dir, &format!("{file}.key"), &key.serialize_pem());
    };
    leaf(&["a.example.com"], "a");
    leaf(&["*.b.example.com"], "b");
    leaf(&["client.example.com"], "client");
    write_file(dir, "ca.pem", &ca.pem());
    Pki { ca_pem: ca.pem() }
}

fn tls_client(
    pki: &Pki,
    names: &[&str],
    addr: SocketAddr,
    identity: Option<reqwest::Identity>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .tls_built_in_root_certs(false);
    for n in names {
        b = b.resolve(n, addr);
    }
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_alpn_gives_h2() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let port = free_port();
    let d = dir.path().display();
    let _m = Meridian::start(&format!(
        r#"
listeners:
  - name: tls
    address: "127.0.0.1:{port}"
    tls:
      certificates:
        - {{ cert: {d}/a.pem, key: {d}/a.key, server_names: [a.example.com] }}
        - {{ cert: {d}/b.pem, key: {d}/b.key, server_names: ["*.b.example.com"] }}
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up = up.addr
    ));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let c = tls_client(&pki, &["a.example.com", "x.b.example.com"], addr, None);
    for host in ["a.example.com", "x.b.example.com"] {
        let r = c
            .get(format!("https://{host}:{port}/hello"))
            .send()
            .await
            .expect("TLS request");
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "{host}");
    }
    let seen = up.last().expect("seen");
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(String::as_str),
        Some("https")
    );
    assert_eq!(
        seen.headers.get("x-forwarded-host").map(String::as_str),
        Some("x.b.example.com")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_requires_a_client_certificate() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let port = free_port();
    let d = dir.path().display();
    let _m = Meridian::start(&format!(
        r#"
listeners:
  - name: mtls
    address: "127.0.0.1:{port}"
    tls: {{ cert: {d}/a.pem, key: {d}/a.key, client_auth: {{ ca: {d}/ca.pem }} }}
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up = up.addr
    ));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let anonymous = tls_client(&pki, &["a.example.com"], addr, None);
    assert!(anonymous
        .get(format!("https://a.example.com:{port}/"))
        .send()
        .await
        .is_err());
    assert_eq!(up.hits(), 0);
    let pem = std::fs::read_to_string(dir.path().join("client.pem")).expect("pem")
        + &std::fs::read_to_string(dir.path().join("client.key")).expect("key");
    let id = reqwest::Identity::from_pem(pem.as_bytes()).expect("identity");
    let authed = tls_client(&pki, &["a.example.com"], addr, Some(id));
    let r = authed
        .get(format!("https://a.example.com:{port}/"))
        .send()
        .await
        .expect("mTLS request");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _m = Meridian::start(&format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}", h2c: true }} ]
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up = up.addr
    ));
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = c
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    // HTTP/1.1 still works on the same listener
    let r = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("h1 request");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

/// Starts an HTTPS upstream (HTTP/1.1 and HTTP/2 by ALPN) with the certificate `name` from
/// `dir`; answers 200 with the HTTP version it was spoken to in.
async fn tls_upstream(dir: &Path, name: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio_rustls::rustls;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<_> = rustls_pemfile_certs(&dir.join(format!("{name}.pem")));
    let key_pem = std::fs::read(dir.join(format!("{name}.key"))).expect("key");
    let key = rustls::pki_types::PrivateKeyDer::try_from(
        rcgen::KeyPair::from_pem(std::str::from_utf8(&key_pem).expect("utf8"))
            .expect("key pem")
            .serialize_der(),
    )
    .expect("key der");
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"tls")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

fn rustls_pemfile_certs(
    path: &Path,
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_file_iter(path)
        .expect("pem")
        .map(|c| c.expect("cert"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_is_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_pki(dir.path());
    let (origin, task) = tls_upstream(dir.path(), "a").await;
    let d = dir.path().display();
    let config = |tls: &str| {
        format!(
            r#"
upstreams:
  secure: {{ targets: ["{origin}"], tls: {tls}, retries: {{ attempts: 0 }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: secure }}
"#
        )
    };
    let cases = [
        // trusted CA, right name: verified
        (format!("{{ sni: a.example.com, ca: {d}/ca.pem }}"), 200),
        // the system roots do not know the test CA
        ("{ sni: a.example.com }".to_string(), 502),
        // trusted CA, wrong name
        (format!("{{ sni: wrong.example.com, ca: {d}/ca.pem }}"), 502),
        // verification off
        ("{ sni: a.example.com, verify: false }".to_string(), 200),
    ];
    for (tls, want) in cases {
        let port = free_port();
        let _m = Meridian::start(&with_listener(port, &config(&tls)));
        let r = client()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), want, "tls: {tls}");
        if want == 200 {
            assert_eq!(r.text().await.expect("body"), "tls");
        }
    }
    task.abort();
}
