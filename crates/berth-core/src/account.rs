//! The vocabulary of accounts and access: account names, organization roles, the three
//! access-token scopes, the actions a registry request needs (`pull`, `push`, `delete`,
//! as in Docker's token scopes), and the facts access to a repository depends on (which
//! the metadata store reports and `berth-auth` judges).

use std::fmt;
use std::str::FromStr;

use crate::name::is_component;

/// Longest user or organization name.
pub const MAX_ACCOUNT_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error(
        "invalid account name {0:?}: use 1-64 lowercase letters and digits, joined by '.', '_' or '-'"
    )]
    InvalidName(String),
    #[error("unknown role {0:?}: use read, write or admin")]
    InvalidRole(String),
    #[error("unknown token scope {0:?}: use read, read-write or read-write-delete")]
    InvalidScope(String),
}

/// A user or organization name: the namespace it owns is the first component of its
/// repositories' names, so it follows the repository component grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountName(String);

impl AccountName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountName {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() <= MAX_ACCOUNT_NAME_LEN && is_component(s) {
            Ok(AccountName(s.to_owned()))
        } else {
            Err(AccountError::InvalidName(s.to_owned()))
        }
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A set of registry actions on one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ALL: Actions = Actions(7);

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// Parses one action of a token scope; `*` means all. Unknown actions are `None`
    /// (they are never granted, and never an error).
    pub fn parse_action(action: &str) -> Option<Actions> {
        match action {
            "pull" => Some(Actions::PULL),
            "push" => Some(Actions::PUSH),
            "delete" => Some(Actions::DELETE),
            "*" => Some(Actions::ALL),
            _ => None,
        }
    }

    /// The action names, in the order Docker writes them.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Actions::PULL, "pull"),
            (Actions::PUSH, "push"),
            (Actions::DELETE, "delete"),
        ]
        .into_iter()
        .filter(|(a, _)| self.contains(*a))
        .map(|(_, name)| name)
        .collect()
    }
}

/// A member's role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Pull every repository of the organization, private ones included.
    Read,
    /// Also push, tag and delete.
    Write,
    /// Also manage members and visibility.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// What the role allows on the organization's repositories.
    pub fn actions(self) -> Actions {
        match self {
            Role::Read => Actions::PULL,
            Role::Write | Role::Admin => Actions::ALL,
        }
    }
}

impl FromStr for Role {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(AccountError::InvalidRole(s.to_owned())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an access token may do, at most: it never adds rights its user lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenScope {
    Read,
    ReadWrite,
    ReadWriteDelete,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::ReadWrite => "read-write",
            TokenScope::ReadWriteDelete => "read-write-delete",
        }
    }

    /// The registry actions this scope lets through.
    pub fn actions(self) -> Actions {
        match self {
            TokenScope::Read => Actions::PULL,
            TokenScope::ReadWrite => Actions::PULL.union(Actions::PUSH),
            TokenScope::ReadWriteDelete => Actions::ALL,
        }
    }
}

impl FromStr for TokenScope {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(TokenScope::Read),
            "read-write" => Ok(TokenScope::ReadWrite),
            "read-write-delete" => Ok(TokenScope::ReadWriteDelete),
            _ => Err(AccountError::InvalidScope(s.to_owned())),
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a user stands towards a repository's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    None,
    /// The namespace is the user's own.
    Owner,
    Member(Role),
}

/// The facts access to one repository depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepositoryFacts {
    pub exists: bool,
    pub public: bool,
    pub relation: Relation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_follow_the_component_grammar() {
        for ok in ["alice", "diamol", "my-org", "a.b", "x1"] {
            assert!(ok.parse::<AccountName>().is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "-a", "a/b", "a:b", &"a".repeat(65)] {
            assert!(bad.parse::<AccountName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_and_roles_map_to_actions() {
        assert_eq!(TokenScope::Read.actions(), Actions::PULL);
        assert!(!TokenScope::ReadWrite.actions().contains(Actions::DELETE));
        assert!(TokenScope::ReadWriteDelete.actions().contains(Actions::ALL));
        assert_eq!(Role::Read.actions(), Actions::PULL);
        assert!(Role::Write.actions().contains(Actions::DELETE));
        for s in ["read", "read-write", "read-write-delete"] {
            assert_eq!(s.parse::<TokenScope>().unwrap().as_str(), s);
        }
        assert!("write".parse::<TokenScope>().is_err());
        assert_eq!(Actions::ALL.names(), ["pull", "push", "delete"]);
        assert_eq!(Actions::parse_action("*"), Some(Actions::ALL));
        assert_eq!(Actions::parse_action("admin"), None);
    }
}
