//! What a client asks `/token` for: the OAuth2 `POST` form (`parse_token_form`) and the
//! `GET` query (`parse_token_query`), both `application/x-www-form-urlencoded`.
//!
//! Checks, besides "no panic":
//! - a parsed form re-serializes (grant, service, `access_type`, scopes as their scope
//!   strings) to a form that parses to the same grant, service, offline flag and scope
//!   resources; `offline` only ever comes with the password grant;
//! - a query gives the header grant, and its scopes are `Scope::parse_all` of its
//!   `scope` values;
//! - nothing over `MAX_FORM_LEN` bytes is accepted.
#![no_main]

use berth_auth::Scope;
use berth_auth::token_request::{
    MAX_FORM_LEN, TokenGrant, TokenRequest, TokenRequestError, parse_token_form, parse_token_query,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_token_form(data) {
        Ok(request) => {
            assert!(data.len() <= MAX_FORM_LEN);
            assert!(!matches!(request.grant, TokenGrant::Header));
            if request.offline {
                assert!(matches!(request.grant, TokenGrant::Password { .. }));
            }
            let form = serialize(&request);
            if form.len() > MAX_FORM_LEN {
                return; // percent-encoding can triple a value
            }
            let again = parse_token_form(form.as_bytes())
                .unwrap_or_else(|e| panic!("{form:?} does not re-parse: {e}"));
            assert_eq!(again.grant, request.grant);
            assert_eq!(again.service, request.service);
            assert_eq!(again.offline, request.offline);
            let resources = |r: &TokenRequest| {
                r.scopes
                    .iter()
                    .map(|s| s.resource.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(resources(&again), resources(&request));
        }
        Err(TokenRequestError::TooLarge) => assert!(data.len() > MAX_FORM_LEN),
        Err(_) => {}
    }

    if let Ok(query) = std::str::from_utf8(data) {
        match parse_token_query(query) {
            Ok(request) => {
                assert_eq!(request.grant, TokenGrant::Header);
                let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                let scopes = Scope::parse_all(
                    pairs
                        .iter()
                        .filter(|(k, _)| k == "scope")
                        .map(|(_, v)| v.as_str()),
                );
                assert_eq!(request.scopes, scopes);
            }
            Err(e) => assert_eq!(e, TokenRequestError::TooLarge),
        }
    }
});

fn serialize(request: &TokenRequest) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    match &request.grant {
        TokenGrant::Password { username, password } => {
            form.append_pair("grant_type", "password")
                .append_pair("username", username)
                .append_pair("password", password);
        }
        TokenGrant::RefreshToken(token) => {
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", token);
        }
        TokenGrant::Header => unreachable!("a form never gives the header grant"),
    }
    if let Some(service) = &request.service {
        form.append_pair("service", service);
    }
    if request.offline {
        form.append_pair("access_type", "offline");
    }
    for scope in &request.scopes {
        form.append_pair("scope", &scope.to_scope_string());
    }
    form.finish()
}
