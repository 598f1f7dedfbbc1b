//! A tiny identity provider for the auth tests, a real HTTP server on 127.0.0.1: a JWKS
//! (keys can be added while it runs), an RFC 7662 introspection endpoint, and an OpenID
//! provider (discovery, authorize with PKCE S256, token, logout). It counts hits per path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::Digest;
use tokio::net::TcpListener;

/// Test RSA key 1 (PKCS#8).
pub const RSA1: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQC/cXIwbpL7SnR5
uFJWGpIF6DviJeP3ilJ88DgHOxlgrTVRzjBnoXRpqfLJ6HDZlqy26icCXQ5kc7WC
N7uhnwK11BdNWbnCKx8er3xwFjv0O4L9BpLnk9mZtEVoQDimm+SBGRd0cMsbu1iR
COAfuKA0R+ZwTOuXT4NeaTHSmxCWwemymVSXOJ4Lryo7JNmr+131A0OhZDpiYnhE
KFBv7DOWdruOsYBniUiOd43FUVgeVE1/bB6uG0FvI6KmVVVg105oH7INabS2tBuG
s/cvad1KAfWKZdVIGFHtLrwURXX1mTFCBrkUzB1GT5G3/Qba/7gdfaOePsm7NFLk
stYniegpAgMBAAECggEAJddckSa2Lm5F7i5pNgRcA0dnmNjRAiPpELGh/YnoxwON
w80MI9vV6THy4AauUdA29RP9IHo451G42dO+5qBJ9puE/KDk9zSzWssov3YhpTHj
PzT+skA3Far8wjHZkNNFPGBzkqxd9W4XgFmfBZ4mqpbgvadytQ6+QpnsA3trsMSt
DpS5alqfUYqawH2hmHcsjlkGyPgyzWRIRvr0gPXSDOikMDWuOvIZrlnHp2ArUS9w
4thxSymTlKwpJlEJS0CNhxt98qkuySEHI2IhWa9mjiHUTGiwaHX1IaRLMAsuY8ll
Myhiqk4y0hAJVCahwrqydRa5XuA//KWGdbj1zs8bRQKBgQD50gRcPQ3DP0tXPAEH
4+2SFfQjroQZLQblKNw9jM0BdPYyNefQrCK4dYA1Rb8Q7aOMoZWAA5aJmZvESun+
kC26U0m+qrd/W38AhjssFvXczO10bu60X77iZyr80lXdAo2M50+gn3zBBYpmoTpV
T3ijxN6teN772mTUwNZ5HOJpjQKBgQDELcGbdwstjsx3oXnZ2i4YwR+IziIz+vwF
0aozJmygo7qa1EHu/0LhXn598ut+fd7Fu3D40U27Gs5bkZPykoOwfuq/vWaEQlsM
QuGV+W/XnE0ZRNPAQ6WXT+Dmg0QqKP6hDFK9C8eKIocKCJPFUIeLjc0ro6y/7GQG
ki7UPWO8DQKBgQCMotxtiLlctx8UxuTVqkyttsov5Cjde2msTCpgRAmMzmlirtIH
uT/6k7tPQipjv0QZAUYGQP7YC6+S+5FrC4OSpxyWx8hxW/LNOsPI+EwEtyDeMS0U
QepVzjp3BXns52kEb5t2ExLKHvJhAFa0e/6wQz4QbkEpizLESqLyn34eaQKBgQCr
8/9TqZCeqiAGa/9GOLtW71AYtbW9Ii1tXE128CMe2uRhedMhDZUtvYnaE+bexK1T
W+y165/adLCUCpJHeKz9MwHIdtc47oCnyqe4sR6bOmFJ2M5SI/ktG9LhugUxfyVR
PF/5XC3WolUDMmlz9hYY+H3x1lFBGI7EQ7XQSs70sQKBgQDBLTXNwP/o+UgwEDCs
x7Thx65AWvP1agiAt+kK2B+3etpDnccGXlcZ8gcBtFpcqSd524FNOEDI9W2/MI3X
XVbs3dVQbLvSy4/oUM9epY/3EgPQogGS90obLI2D8PXvhBBdrwouVv6hNlKND4P/
lJ71K6OOlhBudpQ1j74ToJ+Rag==
-----END PRIVATE KEY-----
";

/// Test RSA key 2 (PKCS#8).
pub const RSA2: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC/tzRH/bnK0KfS
C5kLVZjBlDc7lrMsrF9yuBz6H0E11lNW3G1SzuYrZ1YJ+42S9kaPVS1xk0yza/6Y
pETJYVeUlrrB+BwKOtF8uiq1CYxMgOWPtvAugo7/O/Tl4/i2NthYpSFjw/81iiLJ
N1FPPOwcauvuM+phXexqq4ID+nPyfkeILWVf1tbVQv7H8x4Vlqih4BM+YDuXTeCa
rw6yVWDcs/nTiBPC8qXLjRwCcHrMcI9wlGTaMiOfk6cr/X0tGToQhfmdVFKDvt6h
i0IYzU/1+Kri2CF9C5OcZ/UM4pkKuvx0Z8EHCELFFUQO6QtcQhlxOOq9Y0+OVfoh
qdO/VR3FAgMBAAECggEABoCs09Pa/wSwj2HV93ehUdBq61ItoCAaMIwv7Nqkm43D
XYeK+ikYvNzt9UTv5w3NL6sKMXLAeROfDTCTwWxvkKXDvBl2UJXMN0m0hFfRmZlo
WQ6WP70ItdktA/68RY0RwADT2mwt2IZw02XeZh7RIPKgeKRHOLVyT0s1uY8tRkGH
RMh7qvhNrPHaba41ycD+hSOsA3oXVVH1UQXiI5veCP8qfV8/5Q2g/NyrXM/wksYz
uLrpI4qUSwBEFecwHkoUz6vm/yScRBQr1MbiAn0bN1qJj3kweLmhM7ky7KOEHjlN
Dc2d6yFlwbN7yJJoplGklWc+bU7yS3q/YNXztZs2mQKBgQDqkic6OTDwUKxpHfMF
dK+4US/dJ0tREjbjdgl2bk/MgnukBe6qNpEIQwAJCB1bpX6W8/+gbSqksAq18vZy
4+uPA9YITpcZy95YNkILsnqjehcipzo0Fb8sjSECan+Ska7xuR5ZyTmivwSQsoyg
vfOWVoUFNK8daye/CHMLsUYnrQKBgQDROs5sAKz1SLHimleu2Fzfl7X49h67Kg4c
B7iymjjkyln07aY7EJveKJq8ikqrk1um1YXW9e+GBopmkatL15ggePizD0VQ9IkF
rsKw8B8KKLPVcy8lDO5xwQmyHYBPM2scm3LUOqxyRF3c9TVYiCL3WZ6ITkrsRPoJ
R6ldnW1xeQKBgGZpexDziUdSoYOfXMwD/vglEhWnIz35CtfSYB1B2js6uMqLAIF2
I2oM/oXy8gZiQducGf4ry1NtvK9lrW3Jzr14+khUL6pGlQPEZJ+AxAR9uH4brtCw
se+8ii3o21vdmRjWLscakLxaU57tJXLEnAYGLjtwngflEcxY3wm60xtdAoGAG78T
rsjsJt8MEAPtytcQgepJjIl/C80I7/iqKq0/DEA1a8C0QbLzKKPz2Trxqg0xo08/
n4Ef0YM+iVmaAMXHe87vFDfbNmAnZ6SEVxiQ1TUOnCjZQK2VVWqHEaLN6DLmanXG
5ZQeWEzusaWm/GWZVXoCBwty7iA7lE13jV2aLOkCgYBAjx2cO/f4gAhD/38aZjsn
QCg2aiSeHFRgeK9ugdkgmGYmpU2Bmw46rFpXTBa5L3PIUoOYPGyrwJVQR0Izcymc
28G5SQrLKdKwqSXSOpmgsYPq7I8YeJZ0ddj59GGCe9rIB3f9vewLyaWiZ+4/q3zT
xzx+/qFEbyBu87mJ8VDfFA==
-----END PRIVATE KEY-----
";

/// The public half of [`RSA1`].
pub const RSA1_PUBLIC: &str = "
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv3FyMG6S+0p0ebhSVhqS
Beg74iXj94pSfPA4BzsZYK01Uc4wZ6F0aanyyehw2ZastuonAl0OZHO1gje7oZ8C
tdQXTVm5wisfHq98cBY79DuC/QaS55PZmbRFaEA4ppvkgRkXdHDLG7tYkQjgH7ig
NEfmcEzrl0+DXmkx0psQlsHpsplUlzieC68qOyTZq/td9QNDoWQ6YmJ4RChQb+wz
lna7jrGAZ4lIjneNxVFYHlRNf2werhtBbyOiplVVYNdOaB+yDWm0trQbhrP3L2nd
SgH1imXVSBhR7S68FEV19ZkxQga5FMwdRk+Rt/0G2v+4HX2jnj7JuzRS5LLWJ4no
KQIDAQAB
-----END PUBLIC KEY-----
";

/// Test EC P-256 key (PKCS#8).
pub const EC1: &str = "
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQguvmrYgvCsVmICoN2
zpfz0I83MZTHPssvELKTjsQu24KhRANCAAQIXkV8xU5RCxpcTWTGyNPtjoQKfE+K
MaoDnxyC9P2KjSBaP7OYW0alch9c2zXAGQ5wb6zXUZAZaG0F0JhyEyhd
-----END PRIVATE KEY-----
";

/// The client the provider knows (introspection and OIDC).
pub const CLIENT_ID: &str = "meridian";
/// Its secret.
pub const CLIENT_SECRET: &str = "s3cret-for-tests";
/// The subject the provider logs in.
pub const USER: &str = "alice";

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A signing key: PEM, algorithm, kid.
#[derive(Clone, Copy)]
pub struct SigningKey {
    /// Private key PEM.
    pub pem: &'static str,
    /// Algorithm.
    pub alg: Algorithm,
    /// Key id.
    pub kid: &'static str,
}

/// RSA1 as RS256, kid `k1`.
pub const K1: SigningKey = SigningKey {
    pem: RSA1,
    alg: Algorithm::RS256,
    kid: "k1",
};
/// RSA2 as RS256, kid `k2`.
pub const K2: SigningKey = SigningKey {
    pem: RSA2,
    alg: Algorithm::RS256,
    kid: "k2",
};
/// EC1 as ES256, kid `e1`.
pub const E1: SigningKey = SigningKey {
    pem: EC1,
    alg: Algorithm::ES256,
    kid: "e1",
};

impl SigningKey {
    fn encoding(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => {
                EncodingKey::from_ec_pem(self.pem.trim().as_bytes()).expect("ec key")
            }
            _ => EncodingKey::from_rsa_pem(self.pem.trim().as_bytes()).expect("rsa key"),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding(), self.alg).expect("jwk");
        jwk.common.key_id = Some(self.kid.to_string());
        serde_json::to_value(jwk).expect("jwk json")
    }

    /// A token with `header` (its alg and kid set from this key) and `claims`.
    pub fn sign_with(&self, mut header: Header, claims: &serde_json::Value) -> String {
        header.alg = self.alg;
        header.kid = Some(self.kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding()).expect("sign")
    }

    /// A token with `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_with(Header::new(self.alg), claims)
    }
}

/// base64url without padding.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// An authorization code the provider issued.
struct Grant {
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

/// The provider's state, shared with the test.
#[derive(Default)]
pub struct IdpState {
    /// The JWKS keys served.
    pub keys: Mutex<Vec<serde_json::Value>>,
    /// Introspection answers by token (others are `{"active": false}`).
    pub introspection: Mutex<BTreeMap<String, serde_json::Value>>,
    hits: Mutex<BTreeMap<String, usize>>,
    grants: Mutex<BTreeMap<String, Grant>>,
}

/// A running provider.
pub struct Idp {
    issuer: String,
    /// Its state.
    pub state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    /// Starts a provider serving `keys` in its JWKS, over plain HTTP.
    pub async fn start(keys: &[SigningKey]) -> Idp {
        Idp::serve(keys, None).await
    }

    /// Starts a provider over HTTPS with a certificate for 127.0.0.1 from a new CA; returns
    /// it with the CA certificate (PEM).
    pub async fn start_tls(keys: &[SigningKey]) -> (Idp, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        use tokio_rustls::rustls;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("sign");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (Idp::serve(keys, Some(acceptor)).await, ca.pem())
    }

    async fn serve(keys: &[SigningKey], tls: Option<tokio_rustls::TlsAcceptor>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(IdpState::default());
        *state.keys.lock().expect("lock") = keys.iter().map(SigningKey::jwk).collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = format!("{scheme}://{addr}");
        let st = state.clone();
        let base = issuer.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, base, tls) = (st.clone(), base.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), base.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            builder.serve_connection(TokioIo::new(stream), svc).await
                        }
                        None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    };
                });
            }
        });
        Idp {
            issuer,
            state,
            task,
        }
    }

    /// Its base URL (the OIDC issuer).
    pub fn url(&self) -> String {
        self.issuer.clone()
    }

    /// Requests served at `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Adds a key to the JWKS.
    pub fn add_key(&self, key: SigningKey) {
        self.state.keys.lock().expect("lock").push(key.jwk());
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn json(v: serde_json::Value) -> Response<Full<Bytes>> {
    reply(200, "application/json", v.to_string())
}

fn form(data: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(data).into_owned().collect()
}

/// Whether the request authenticates as the client, by basic auth or in the form.
fn client_ok(auth: Option<&str>, f: &BTreeMap<String, String>) -> bool {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    auth == Some(basic.as_str())
        || (f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET))
}

async fn handle(
    st: Arc<IdpState>,
    issuer: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    *st.hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    let query = form(req.uri().query().unwrap_or_default().as_bytes());
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = match path.as_str() {
        "/jwks" => json(serde_json::json!({ "keys": *st.keys.lock().expect("lock") })),
        "/introspect" => {
            let f = form(&body);
            if !client_ok(auth.as_deref(), &f) {
                reply(401, "text/plain", "client authentication failed".into())
            } else {
                let token = f.get("token").cloned().unwrap_or_default();
                let answer = st.introspection.lock().expect("lock").get(&token).cloned();
                json(answer.unwrap_or(serde_json::json!({ "active": false })))
            }
        }
        "/.well-known/openid-configuration" => json(serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        })),
        "/authorize" => authorize(&st, &query),
        "/token" => token(&st, &issuer, auth.as_deref(), &form(&body)),
        "/logout" => reply(200, "text/plain", "logged out\n".into()),
        _ => reply(404, "text/plain", "not found\n".into()),
    };
    Ok(response)
}

/// Logs in [`USER`] at once and redirects back with a code, if the request is a valid
/// authorization-code request with PKCE S256.
fn authorize(st: &IdpState, q: &BTreeMap<String, String>) -> Response<Full<Bytes>> {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != CLIENT_ID
        || get("code_challenge_method") != "S256"
        || get("code_challenge").is_empty()
        || get("state").is_empty()
        || get("nonce").is_empty()
        || !get("scope").split(' ').any(|s| s == "openid")
    {
        return reply(
            400,
            "text/plain",
            format!("bad authorization request: {q:?}\n"),
        );
    }
    let code = format!("code-{}", st.grants.lock().expect("lock").len());
    st.grants.lock().expect("lock").insert(
        code.clone(),
        Grant {
            redirect_uri: get("redirect_uri"),
            challenge: get("code_challenge"),
            nonce: get("nonce"),
        },
    );
    let location = format!(
        "{}?code={code}&state={}",
        get("redirect_uri"),
        form_urlencoded::byte_serialize(get("state").as_bytes()).collect::<String>()
    );
    Response::builder()
        .status(302)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

/// Exchanges a code (once) for an ID token signed with [`K1`], checking the client, the
/// redirect URI and the PKCE verifier.
fn token(
    st: &IdpState,
    issuer: &str,
    auth: Option<&str>,
    f: &BTreeMap<String, String>,
) -> Response<Full<Bytes>> {
    let bad = |what: &str| {
        reply(
            400,
            "application/json",
            serde_json::json!({ "error": "invalid_grant", "error_description": what }).to_string(),
        )
    };
    if !client_ok(auth, f) {
        return reply(
            401,
            "application/json",
            r#"{"error":"invalid_client"}"#.into(),
        );
    }
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return bad("grant_type");
    }
    let Some(grant) = f
        .get("code")
        .and_then(|c| st.grants.lock().expect("lock").remove(c))
    else {
        return bad("unknown code");
    };
    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
        return bad("redirect_uri");
    }
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if b64(&sha2::Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return bad("code_verifier");
    }
    let id_token = K1.sign(&serde_json::json!({
        "iss": issuer, "aud": CLIENT_ID, "sub": USER, "nonce": grant.nonce,
        "iat": now(), "exp": now() + 300, "email": "alice@example.com",
    }));
    json(serde_json::json!({
        "access_token": "opaque-access", "token_type": "Bearer", "expires_in": 300,
        "id_token": id_token,
    }))
}
