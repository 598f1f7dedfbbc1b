//! OAuth 2.0 client credentials, sent the way the authorization server expects (RFC 6749
//! §2.3.1), for the introspection and token endpoints.

use serde::Deserialize;

/// How the gateway authenticates to the authorization server.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// A client id and secret and how to send them.
pub struct Credentials {
    /// The client id.
    pub id: String,
    /// The client secret.
    pub secret: String,
    /// How they are sent.
    pub method: ClientAuth,
}

impl Credentials {
    /// A form POST of `form` to `url`, authenticated as this client.
    pub fn post_form<'a>(
        &'a self,
        client: &reqwest::Client,
        url: &str,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> reqwest::RequestBuilder {
        let mut request = client.post(url).header("accept", "application/json");
        match self.method {
            ClientAuth::Basic => {
                request = request.basic_auth(encode(&self.id), Some(encode(&self.secret)));
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.id));
                form.push(("client_secret", &self.secret));
            }
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// RFC 6749 §2.3.1: the id and secret are form-encoded before basic auth.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
