//! Who the users are, how they sign in (bearer tokens) and which scopes they belong to. Loaded from
//! a fixture file; a built-in demo fixture makes a no-flag start work.
//!
//! Invariant: a validated directory has unique user ids and tokens, and every scope member is a
//! known user, so lookups never have to handle dangling ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::ids::{Scope, ScopeId, UserId};
use crate::signing::Secret;

/// A user of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: UserId,
    pub name: String,
    #[serde(with = "token_serde")]
    pub token: Secret,
}

/// Users and scope memberships: `scopes[scope][scope_id]` lists the member user ids.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub users: Vec<User>,
    #[serde(default)]
    pub scopes: BTreeMap<Scope, BTreeMap<ScopeId, Vec<UserId>>>,
}

impl Directory {
    /// Four demo users (tokens `alice-token`, ...) in a chat room, a trip, a support desk and a
    /// delivery.
    pub fn demo() -> Directory {
        let user = |id: &str, name: &str| User {
            id: UserId::parse(id).expect("demo id"),
            name: name.to_owned(),
            token: Secret::new(format!("{id}-token")),
        };
        let ids = |list: &[&str]| -> Vec<UserId> {
            list.iter()
                .map(|u| UserId::parse(u).expect("demo id"))
                .collect()
        };
        let scope = |s: &str| Scope::parse(s).expect("demo scope");
        let sid = |s: &str| ScopeId::parse(s).expect("demo scope id");
        let mut scopes = BTreeMap::new();
        scopes.insert(
            scope("room"),
            BTreeMap::from([(sid("chat-room-42"), ids(&["alice", "bob", "carol"]))]),
        );
        scopes.insert(
            scope("trip"),
            BTreeMap::from([(sid("trip-7"), ids(&["alice", "dave"]))]),
        );
        scopes.insert(
            scope("support"),
            BTreeMap::from([(sid("ticket-1"), ids(&["carol", "dave"]))]),
        );
        scopes.insert(
            scope("delivery"),
            BTreeMap::from([(sid("order-9"), ids(&["bob", "dave"]))]),
        );
        Directory {
            users: vec![
                user("alice", "Alice"),
                user("bob", "Bob"),
                user("carol", "Carol"),
                user("dave", "Dave"),
            ],
            scopes,
        }
    }

    /// Checks uniqueness and that every member is a known user.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        for (i, u) in self.users.iter().enumerate() {
            if u.token.expose().len() < 8 {
                return Err(format!("user {}: token must be at least 8 characters", u.id).into());
            }
            if self.users[..i]
                .iter()
                .any(|o| o.id == u.id || o.token == u.token)
            {
                return Err(format!("user {} or its token appears twice", u.id).into());
            }
        }
        for (scope, ids) in &self.scopes {
            for (scope_id, members) in ids {
                if let Some(m) = members.iter().find(|m| self.user(m).is_none()) {
                    return Err(format!("scope {scope}.{scope_id} lists unknown user {m}").into());
                }
            }
        }
        Ok(())
    }

    pub fn user(&self, id: &UserId) -> Option<&User> {
        self.users.iter().find(|u| &u.id == id)
    }

    /// The user a bearer token belongs to. Compares against every token in constant time per
    /// token and without stopping early, so timing says nothing about which token is close.
    pub fn user_by_token(&self, token: &str) -> Option<&User> {
        let mut found = None;
        for u in &self.users {
            let same: bool = u.token.expose().as_bytes().ct_eq(token.as_bytes()).into();
            if same {
                found = Some(u);
            }
        }
        found
    }

    /// Members of one scope instance; empty when it does not exist.
    pub fn members(&self, scope: &Scope, scope_id: &ScopeId) -> &[UserId] {
        self.scopes
            .get(scope)
            .and_then(|s| s.get(scope_id))
            .map_or(&[], Vec::as_slice)
    }

    pub fn is_member(&self, user: &UserId, scope: &Scope, scope_id: &ScopeId) -> bool {
        self.members(scope, scope_id).contains(user)
    }
}

mod token_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::signing::Secret;

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid_and_tokens_resolve() {
        let d = Directory::demo();
        d.validate().unwrap();
        assert_eq!(d.user_by_token("bob-token").unwrap().id.as_str(), "bob");
        assert!(d.user_by_token("bob-token ").is_none());
        assert!(d.user_by_token("").is_none());
        let room = (
            Scope::parse("room").unwrap(),
            ScopeId::parse("chat-room-42").unwrap(),
        );
        assert!(d.is_member(&UserId::parse("carol").unwrap(), &room.0, &room.1));
        assert!(!d.is_member(&UserId::parse("dave").unwrap(), &room.0, &room.1));
    }

    #[test]
    fn validation_catches_unknown_members_and_duplicates() {
        let mut d = Directory::demo();
        d.scopes
            .get_mut(&Scope::parse("room").unwrap())
            .unwrap()
            .insert(
                ScopeId::parse("x").unwrap(),
                vec![UserId::parse("mallory").unwrap()],
            );
        assert!(d.validate().unwrap_err().0.contains("mallory"));
        let mut d = Directory::demo();
        d.users[1].token = d.users[0].token.clone();
        assert!(d.validate().is_err());
    }
}
