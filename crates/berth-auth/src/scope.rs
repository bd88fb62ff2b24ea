//! Docker token-auth scopes (distribution `docs/spec/auth/scope.md`):
//! `repository:samalba/my-app:pull,push`, `registry:catalog:*`.
//!
//! Parsing is lenient the way clients need: an unknown resource type or action is
//! simply never granted, and a name that starts with `host:port/` (some clients send
//! the full reference) is taken without its host part.

use berth_core::{Actions, RepoName};

/// What a scope is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    Repository(RepoName),
    /// `registry:catalog:*`: listing repositories.
    Catalog,
}

/// One requested (or granted) scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource: Resource,
    pub actions: Actions,
}

impl Scope {
    /// Parses one scope; `None` for anything berth can never grant.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        // `repository(plugin)` is a repository of another class: same rules.
        let kind = kind.split('(').next().unwrap_or(kind);
        let actions = actions
            .split(',')
            .filter_map(Actions::parse_action)
            .fold(Actions::NONE, Actions::union);
        let resource = match (kind, name) {
            ("registry", "catalog") => Resource::Catalog,
            ("repository", name) => Resource::Repository(strip_host(name).parse().ok()?),
            _ => return None,
        };
        Some(Scope { resource, actions })
    }

    /// Parses every scope in `values`, each of which may hold several separated by
    /// spaces (the OAuth2 POST form) — skipping what cannot be granted.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        values
            .into_iter()
            .flat_map(str::split_whitespace)
            .filter_map(Scope::parse)
            .collect()
    }

    /// The scope string of this scope, as it appears in a challenge.
    pub fn to_scope_string(&self) -> String {
        match &self.resource {
            Resource::Catalog => "registry:catalog:*".to_owned(),
            Resource::Repository(name) => {
                format!("repository:{}:{}", name, self.actions.names().join(","))
            }
        }
    }
}

/// `localhost:5000/alice/app` → `alice/app`. Only a first component with a port is a
/// host: repository components cannot contain `:`, so this never eats a real name.
fn strip_host(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(':') => rest,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, actions: Actions) -> Scope {
        Scope {
            resource: Resource::Repository(name.parse().unwrap()),
            actions,
        }
    }

    #[test]
    fn parses_the_forms_clients_send() {
        let pull_push = Actions::PULL.union(Actions::PUSH);
        assert_eq!(
            Scope::parse("repository:samalba/my-app:pull,push"),
            Some(repo("samalba/my-app", pull_push))
        );
        assert_eq!(
            Scope::parse("repository:localhost:5000/alice/app:pull"),
            Some(repo("alice/app", Actions::PULL))
        );
        assert_eq!(
            Scope::parse("repository(plugin):alice/p:pull"),
            Some(repo("alice/p", Actions::PULL))
        );
        assert_eq!(
            Scope::parse("repository:alice/app:*"),
            Some(repo("alice/app", Actions::ALL))
        );
        assert_eq!(
            Scope::parse("registry:catalog:*"),
            Some(Scope {
                resource: Resource::Catalog,
                actions: Actions::ALL
            })
        );
        // Unknown actions are dropped, not errors.
        assert_eq!(
            Scope::parse("repository:a/b:pull,frobnicate"),
            Some(repo("a/b", Actions::PULL))
        );
        for never in [
            "",
            "repository",
            "repository:a",
            "repository:A/B:pull",
            "x:y:z",
        ] {
            assert_eq!(Scope::parse(never), None, "{never}");
        }
        let all = Scope::parse_all(["repository:a/b:pull repository:c/d:push", "junk"]);
        assert_eq!(all.len(), 2);
        assert_eq!(
            repo("a/b", pull_push).to_scope_string(),
            "repository:a/b:pull,push"
        );
    }
}
