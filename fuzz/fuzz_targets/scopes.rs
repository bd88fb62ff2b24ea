//! Docker token-auth scope strings (`repository:NAME:pull,push`, `registry:catalog:*`),
//! as they come in `/token` queries and forms.
//!
//! Checks, besides "no panic":
//! - a parsed scope's `to_scope_string()` (what a challenge or a token response says)
//!   parses back to the same resource, and for a repository to the same actions;
//! - a repository scope names a valid repository (never with a `host:port/` part);
//! - `Scope::parse_all` on the input is `Scope::parse` of each whitespace-separated word.
#![no_main]

use berth_auth::{Resource, Scope};
use berth_core::RepoName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(scope) = Scope::parse(text) {
        check(&scope, text);
    }

    let all = Scope::parse_all(text.split('\n'));
    let one_by_one: Vec<Scope> = text.split_whitespace().filter_map(Scope::parse).collect();
    assert_eq!(all, one_by_one);
    for scope in &all {
        check(scope, text);
    }
});

fn check(scope: &Scope, input: &str) {
    let shown = scope.to_scope_string();
    let again = Scope::parse(&shown).unwrap_or_else(|| {
        panic!("{input:?} gave {scope:?}, shown as {shown:?}, which does not parse")
    });
    assert_eq!(again.resource, scope.resource, "{input:?} → {shown:?}");
    if let Resource::Repository(name) = &scope.resource {
        assert_eq!(again.actions, scope.actions, "{input:?} → {shown:?}");
        assert!(!name.as_str().contains(':'));
        let reparsed: RepoName = name.as_str().parse().expect("a scope's name is valid");
        assert_eq!(&reparsed, name);
    }
}
