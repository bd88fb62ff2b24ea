//! Who may do what to a repository. One pure function, so the rules read in one place:
//!
//! - server administrators may do everything;
//! - a user may do everything in their own namespace;
//! - an organization member may do what their role allows in its namespace;
//! - anyone, signed in or not, may pull an existing public repository;
//! - an access token caps all of it at its scope.
//!
//! A repository that does not exist is never public, so to anyone without rights in
//! its namespace a private repository and a missing one look the same.

use berth_core::{Actions, Relation, RepositoryFacts};

/// Who is asking, as established by a password, an access token or a bearer JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` for anonymous requests.
    pub user: Option<String>,
    pub admin: bool,
    /// The most this credential may do (an access token's scope).
    pub ceiling: Actions,
    /// The access token the request came with, if any.
    pub token_id: Option<String>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            user: None,
            admin: false,
            ceiling: Actions::PULL,
            token_id: None,
        }
    }

    /// A user signed in with their password.
    pub fn user(name: &str, admin: bool) -> Principal {
        Principal {
            user: Some(name.to_owned()),
            admin,
            ceiling: Actions::ALL,
            token_id: None,
        }
    }
}

pub fn repository_rights(principal: &Principal, facts: &RepositoryFacts) -> Actions {
    let own = if principal.admin {
        Actions::ALL
    } else if principal.user.is_none() {
        Actions::NONE
    } else {
        match facts.relation {
            Relation::Owner => Actions::ALL,
            Relation::Member(role) => role.actions(),
            Relation::None => Actions::NONE,
        }
    };
    let public = if facts.exists && facts.public {
        Actions::PULL
    } else {
        Actions::NONE
    };
    own.union(public).intersect(principal.ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{Role, TokenScope};

    fn facts(exists: bool, public: bool, relation: Relation) -> RepositoryFacts {
        RepositoryFacts {
            exists,
            public,
            relation,
        }
    }

    #[test]
    fn the_rules_in_a_table() {
        let alice = Principal::user("alice", false);
        let admin = Principal::user("root", true);
        let anon = Principal::anonymous();
        let mut read_token = Principal::user("alice", false);
        read_token.ceiling = TokenScope::Read.actions();
        let mut rw_token = Principal::user("alice", false);
        rw_token.ceiling = TokenScope::ReadWrite.actions();
        let pull_push = Actions::PULL.union(Actions::PUSH);
        let cases = [
            (&alice, facts(true, false, Relation::Owner), Actions::ALL),
            (&alice, facts(false, false, Relation::Owner), Actions::ALL),
            (&alice, facts(true, true, Relation::None), Actions::PULL),
            (&alice, facts(true, false, Relation::None), Actions::NONE),
            (&alice, facts(false, true, Relation::None), Actions::NONE),
            (
                &alice,
                facts(true, false, Relation::Member(Role::Read)),
                Actions::PULL,
            ),
            (
                &alice,
                facts(true, false, Relation::Member(Role::Write)),
                Actions::ALL,
            ),
            (&admin, facts(true, false, Relation::None), Actions::ALL),
            (&anon, facts(true, true, Relation::None), Actions::PULL),
            (&anon, facts(true, false, Relation::None), Actions::NONE),
            (&anon, facts(false, false, Relation::None), Actions::NONE),
            // A relation never helps the anonymous (the store reports none anyway).
            (&anon, facts(true, false, Relation::Owner), Actions::NONE),
            (
                &read_token,
                facts(true, false, Relation::Owner),
                Actions::PULL,
            ),
            (&rw_token, facts(true, false, Relation::Owner), pull_push),
            (&rw_token, facts(true, true, Relation::None), Actions::PULL),
        ];
        for (i, (principal, facts, want)) in cases.iter().enumerate() {
            assert_eq!(repository_rights(principal, facts), *want, "case {i}");
        }
    }
}
