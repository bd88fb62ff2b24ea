//! Rows that both backends read with the same columns, turned into the trait's types in
//! one place.

use berth_core::{Digest, RepoName};

use crate::{
    GoldenImage, MetaError, MirrorPin, PushWarning, RepositoryCard, Result, TagMove, TagMoveReason,
};

/// `repository, tags ('' = every tag), added_by, added_at`.
pub(crate) type GoldenRow = (String, String, String, i64);
/// `id, digest, message, actor, at`.
pub(crate) type WarningRow = (i64, String, String, String, i64);
/// `id, tag, from_digest, to_digest, reason, actor, at`.
pub(crate) type TagMoveRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

/// `repository, reference, pinned_by, pinned_at`.
pub(crate) type PinRow = (String, String, String, i64);
/// `name, digest`: one manifest of one repository.
pub(crate) type ManifestRefRow = (String, String);
/// `name, public, description, pushed_at`.
pub(crate) type CardRow = (String, bool, String, Option<i64>);

fn corrupt(what: String) -> MetaError {
    MetaError(what.into())
}

fn digest(text: &str) -> Result<Digest> {
    text.parse()
        .map_err(|e| corrupt(format!("stored digest {text:?}: {e}")))
}

fn repository(name: &str) -> Result<RepoName> {
    name.parse()
        .map_err(|e| corrupt(format!("stored repository name {name:?}: {e}")))
}

pub(crate) fn pin((repo, reference, pinned_by, pinned_at): PinRow) -> Result<MirrorPin> {
    Ok(MirrorPin {
        repository: repository(&repo)?,
        reference,
        pinned_by,
        pinned_at,
    })
}

pub(crate) fn manifest_ref((name, d): ManifestRefRow) -> Result<(RepoName, Digest)> {
    Ok((repository(&name)?, digest(&d)?))
}

pub(crate) fn card((name, public, description, pushed_at): CardRow) -> Result<RepositoryCard> {
    Ok(RepositoryCard {
        name: repository(&name)?,
        public,
        description,
        pushed_at,
    })
}

pub(crate) fn golden((repository, tags, added_by, added_at): GoldenRow) -> Result<GoldenImage> {
    Ok(GoldenImage {
        repository: repository
            .parse()
            .map_err(|_| corrupt(format!("golden repository {repository:?}")))?,
        tags: Some(tags).filter(|t| !t.is_empty()),
        added_by,
        added_at,
    })
}

pub(crate) fn warning(repository: &RepoName, row: WarningRow) -> Result<PushWarning> {
    let (id, stored, message, actor, at) = row;
    Ok(PushWarning {
        id,
        repository: repository.clone(),
        digest: digest(&stored)?,
        message,
        actor,
        at,
    })
}

pub(crate) fn tag_move(repository: &RepoName, row: TagMoveRow) -> Result<TagMove> {
    let (id, tag, from, to, reason, actor, at) = row;
    Ok(TagMove {
        id,
        repository: repository.clone(),
        tag,
        from: from.as_deref().map(digest).transpose()?,
        to: to.as_deref().map(digest).transpose()?,
        reason: TagMoveReason::parse(&reason)
            .ok_or_else(|| corrupt(format!("tag move reason {reason:?}")))?,
        actor,
        at,
    })
}
