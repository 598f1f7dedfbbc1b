//! TLS termination for listeners: certificates chosen by SNI (exact or `*.` wildcard names)
//! and optional client-certificate verification (mTLS), on rustls.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::config::{ClientAuth, ListenerTls};

/// Builds pingora TLS settings (with ALPN, SNI resolver and optional mTLS) for a listener.
pub fn listener_settings(tls: &ListenerTls) -> Result<TlsSettings, String> {
    pingora::tls::install_default_crypto_provider();
    let resolver = SniResolver::load(tls)?;
    // The paths are unused: a certificate resolver takes their place.
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| format!("TLS settings: {e}"))?;
    settings.set_cert_resolver(Arc::new(resolver));
    if tls.http2 {
        settings.enable_h2();
    }
    if let Some(auth) = &tls.client_auth {
        settings.set_client_cert_verifier(client_verifier(auth)?);
    }
    Ok(settings)
}

fn client_verifier(
    auth: &ClientAuth,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&auth.ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: invalid CA certificate: {e}", auth.ca.display()))?;
    }
    let builder = WebPkiClientVerifier::builder(Arc::new(roots));
    let builder = if auth.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| format!("{}: client verifier: {e}", auth.ca.display()))
}

/// Chooses a certificate by the client's SNI: exact name first, then the longest matching
/// wildcard, then the default (the first certificate).
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(".example.com", key)`, longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Loads every certificate of a listener.
    pub fn load(tls: &ListenerTls) -> Result<Self, String> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        let mut default = None;
        for c in &tls.certificates {
            let certs = read_certs(&c.cert)?;
            let key = read_key(&c.key)?;
            let signing = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| format!("{}: unusable private key: {e}", c.key.display()))?;
            let ck = Arc::new(CertifiedKey::new(certs, signing));
            default.get_or_insert_with(|| ck.clone());
            for name in &c.server_names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix('*') {
                    Some(suffix) => wildcard.push((suffix.to_string(), ck.clone())),
                    None => {
                        exact.insert(name, ck.clone());
                    }
                }
            }
        }
        wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let default = default.ok_or("a TLS listener needs at least one certificate")?;
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for an SNI name (or the default when `None` or unmatched).
    pub fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, k)| k.clone())
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Loads a PEM bundle of CA certificates for verifying upstreams. Every certificate is checked
/// by webpki before pingora parses it, so a bad file is an error, never a panic.
pub fn load_ca(path: &Path) -> Result<Arc<pingora::protocols::tls::CaType>, String> {
    let certs = read_certs(path)?;
    let mut check = RootCertStore::empty();
    for cert in &certs {
        check
            .add(cert.clone())
            .map_err(|e| format!("{}: invalid CA certificate: {e}", path.display()))?;
    }
    let wrapped: Vec<WrappedX509> = certs
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
        .collect();
    Ok(Arc::from(wrapped))
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(file)).collect();
    let certs = certs.map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}
