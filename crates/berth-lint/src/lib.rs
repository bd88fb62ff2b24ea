//! Dockerfile checks for CI: which images a build starts from, checked against the
//! registry's golden images. No IO: the caller (`berth lint`) reads files, asks the
//! registry for its golden images and resolves digests; this crate parses and judges.
//!
//! ```
//! use berth_lint::{AllowPattern, CheckOptions, check, parse, report};
//!
//! let dockerfile = parse("FROM golang:1.22 AS build\nFROM localhost:5000/gallery/base:2.1\n")?;
//! let options = CheckOptions {
//!     allowed: vec![AllowPattern::parse("localhost:5000/gallery/base:2.*")?],
//!     require_digest: false,
//! };
//! let findings = check("Dockerfile", &dockerfile, &options);
//! assert_eq!(findings.len(), 1);
//! assert_eq!(
//!     report::text(&findings),
//!     "Dockerfile:1 BL001 base image docker.io/library/golang:1.22 is not a golden image\n\
//!      1 finding in 1 file\n"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Parsing
//!
//! [`parse`] follows BuildKit: parser directives (`# syntax=`, `# escape=`, `# check=`)
//! only at the very top; the escape character (`\` or `` ` ``) continues lines, and
//! comment or empty lines inside a continuation are dropped; instructions in any case;
//! heredoc bodies (`<<EOF`, `<<-EOF`, `<<"EOF"`, several per line) are skipped, never
//! read as instructions; `ARG`s before the first `FROM` are substituted into `FROM`
//! lines (`$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}` and the rest of the
//! shell forms BuildKit knows), with build arguments overriding their defaults; an `ARG`
//! inside a stage never reaches a `FROM`. The result lists the stages and every
//! [`Source`]: each `FROM`, `COPY --from` and `RUN --mount=…,from=`, with the line of its
//! instruction and what it resolves to (an image, `scratch`, or an earlier stage).
//! What BuildKit refuses to build is a [`ParseError`] with its line.
//!
//! # Rules
//!
//! Ids and names are stable; CI configurations and SARIF consumers refer to them.
//!
//! | id | name | finding |
//! |----|------|---------|
//! | `BL000` | `parse-error` | The Dockerfile does not parse ([`Finding::parse_error`]). |
//! | `BL001` | `not-golden` | An external image (`FROM`, `COPY --from`, `RUN --mount from=`) matches no [`AllowPattern`]. An empty allow list allows nothing. |
//! | `BL002` | `missing-tag` | An external image has neither tag nor digest (Docker pulls `latest`). Reported even when the repository is golden. |
//! | `BL003` | `latest-tag` | An external image is tagged `latest` and not pinned by a digest. Reported even when the repository is golden. |
//! | `BL004` | `unpinned` | With [`CheckOptions::require_digest`], an external image has no `@sha256:` digest. |
//! | `BL005` | `invalid-reference` | An image reference is invalid after substitution (`FROM ${UNSET}:1` gives `:1`; upper case; a bad digest). |
//! | `BL006` | `undefined-stage` | `COPY --from` / `from=` names no stage defined before it: an index out of range, a stage defined later (BuildKit fails), or a plain name that is no stage (BuildKit would pull it as an untagged image; it is almost always a misspelt stage). |
//! | `BL007` | `stage-name-case` | `FROM Builder` after `AS builder`: BuildKit matches `FROM` stage names exactly and would pull an image `Builder` (moby/buildkit#2003); the classic builder ignored case. |
//!
//! One reference can break several rules: `FROM ubuntu` with no golden `ubuntu` gives
//! BL001 and BL002. Every [`Finding`] carries the normalised reference (BL001–BL004),
//! so the caller can resolve a digest and fill in [`Finding::suggestion`].
//!
//! # Output
//!
//! [`report::text`], [`report::json`] and [`report::sarif`] (SARIF 2.1.0) render findings.

pub mod parser;
pub mod reference;
pub mod report;
pub mod rules;
mod shell;

pub use parser::{
    Dockerfile, GlobalArg, ParseError, ParseOptions, Source, SourceKind, SourceTarget, Stage,
    parse, parse_with_options,
};
pub use reference::{Reference, ReferenceError};
pub use rules::{
    AllowPattern, CheckOptions, Finding, PatternError, RULES, Rule, check, check_text,
};
