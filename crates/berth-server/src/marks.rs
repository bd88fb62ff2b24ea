//! Marks of trust on namespaces: `official` (the `library` namespace by default, where
//! bare names such as `alpine` live) and `verified` publishers. Administrators set them
//! (`berth namespace mark`, `PUT /api/v1/namespaces/NS/mark`); the API and the web site
//! show them next to every repository.

use std::collections::BTreeMap;

use berth_core::name::OFFICIAL_NAMESPACE;
use berth_meta::{MetaError, MetaStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceMark {
    Official,
    Verified,
    None,
}

impl NamespaceMark {
    pub fn parse(word: &str) -> Option<NamespaceMark> {
        match word {
            "official" => Some(NamespaceMark::Official),
            "verified" => Some(NamespaceMark::Verified),
            "none" => Some(NamespaceMark::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceMark::Official => "official",
            NamespaceMark::Verified => "verified",
            NamespaceMark::None => "none",
        }
    }

    /// A namespace's mark when none was set.
    pub fn default_for(namespace: &str) -> NamespaceMark {
        if namespace == OFFICIAL_NAMESPACE {
            NamespaceMark::Official
        } else {
            NamespaceMark::None
        }
    }
}

/// Every namespace's mark, as set (`none` only where it overrides a default); look a
/// namespace up with [`Marks::of`].
pub struct Marks(BTreeMap<String, NamespaceMark>);

impl Marks {
    pub async fn load(meta: &dyn MetaStore) -> Result<Marks, MetaError> {
        let set = meta.namespace_marks().await?;
        Ok(Marks(
            set.into_iter()
                .filter_map(|(ns, mark)| NamespaceMark::parse(&mark).map(|m| (ns, m)))
                .collect(),
        ))
    }

    pub fn of(&self, namespace: &str) -> NamespaceMark {
        self.0
            .get(namespace)
            .copied()
            .unwrap_or_else(|| NamespaceMark::default_for(namespace))
    }

    /// Every namespace whose mark is one of `wanted` (the default official namespace
    /// included unless its mark was taken away).
    pub fn namespaces_marked(&self, wanted: &[NamespaceMark]) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .0
            .keys()
            .map(String::as_str)
            .chain([OFFICIAL_NAMESPACE])
            .filter(|ns| wanted.contains(&self.of(ns)))
            .map(str::to_owned)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }
}

/// Sets a namespace's mark: stored unless it is the namespace's default.
pub async fn set(
    meta: &dyn MetaStore,
    namespace: &str,
    mark: NamespaceMark,
) -> Result<(), MetaError> {
    let stored = (mark != NamespaceMark::default_for(namespace)).then_some(mark.as_str());
    meta.set_namespace_mark(namespace, stored).await
}
