//! Circuit breakers in the admin API: their state as JSON, and forcing a state.

use pingora::protocols::http::ServerSession;
use plugins::breaker::State;
use serde::Deserialize;
use serde_json::json;

use crate::upstream::breaker::Breaker;

/// Largest request body accepted when forcing a state.
const MAX_BODY: usize = 1024;

/// A breaker's state, rates and window as JSON.
pub(super) fn snapshot(b: &Breaker) -> serde_json::Value {
    serde_json::to_value(b.snapshot()).unwrap_or_default()
}

/// The body of a forcing request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Force {
    state: String,
}

/// The state a `{"state": "..."}` body asks for, or what is wrong with the body.
pub(super) async fn read_state(session: &mut ServerSession) -> Result<State, String> {
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
    }
    parse_state(&body)
}

fn parse_state(body: &[u8]) -> Result<State, String> {
    let force: Force = serde_json::from_slice(body)
        .map_err(|e| format!("expected {{\"state\": \"forced_open\"}}: {e}"))?;
    match force.state.as_str() {
        "forced_open" => Ok(State::ForcedOpen),
        "disabled" => Ok(State::Disabled),
        "closed" => Ok(State::Closed),
        other => Err(format!(
            "unknown state \"{other}\"; expected forced_open, disabled or closed"
        )),
    }
}

/// Forces `state` and answers with the transition and the new snapshot.
pub(super) fn force(b: &Breaker, state: State) -> serde_json::Value {
    let t = b.force(state);
    json!({
        "from": t.map(|t| t.from),
        "to": t.map(|t| t.to),
        "breaker": snapshot(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_from_bodies() {
        assert_eq!(
            parse_state(br#"{"state":"forced_open"}"#),
            Ok(State::ForcedOpen)
        );
        assert_eq!(parse_state(br#"{"state":"disabled"}"#), Ok(State::Disabled));
        assert_eq!(parse_state(br#"{"state":"closed"}"#), Ok(State::Closed));
        assert!(parse_state(br#"{"state":"half_open"}"#).is_err());
        assert!(parse_state(br#"{"state":"closed","x":1}"#).is_err());
        assert!(parse_state(b"closed").is_err());
    }
}
