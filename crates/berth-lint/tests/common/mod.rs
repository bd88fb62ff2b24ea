//! The corpus: `tests/corpus/NN-name.Dockerfile`, each with `NN-name.expected.json`
//! holding the options it is checked with and what must come out.

// Each test crate that includes this module reads only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_lint::{AllowPattern, CheckOptions, ParseOptions};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// What the case shows; for people.
    pub description: Option<String>,
    pub options: Options,
    /// Set when BuildKit would refuse the file; then there are no findings.
    pub parse_error: Option<ExpectedParseError>,
    #[serde(default)]
    pub findings: Vec<ExpectedFinding>,
    /// When present: exactly the external images, in order.
    pub images: Option<Vec<(u32, String, String)>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub allowed: Vec<String>,
    pub require_digest: bool,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    #[serde(default)]
    pub platform_args: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedParseError {
    pub line: u32,
    /// A substring of the error message.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFinding {
    pub rule: String,
    pub line: u32,
    /// A substring of the finding's message, when given.
    pub message: Option<String>,
}

impl Options {
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            build_args: self.build_args.clone(),
            platform_args: self.platform_args.clone(),
        }
    }

    pub fn check_options(&self) -> CheckOptions {
        CheckOptions {
            allowed: self
                .allowed
                .iter()
                .map(|pattern| AllowPattern::parse(pattern).unwrap())
                .collect(),
            require_digest: self.require_digest,
        }
    }
}

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The Dockerfile's text and its expectations.
pub fn load(name: &str) -> (String, Expected) {
    let dir = corpus_dir();
    let text = std::fs::read_to_string(dir.join(format!("{name}.Dockerfile")))
        .unwrap_or_else(|e| panic!("{name}.Dockerfile: {e}"));
    let expected = std::fs::read_to_string(dir.join(format!("{name}.expected.json")))
        .unwrap_or_else(|e| panic!("{name}.expected.json: {e}"));
    let expected: Expected =
        serde_json::from_str(&expected).unwrap_or_else(|e| panic!("{name}.expected.json: {e}"));
    (text, expected)
}

/// Every case name in the corpus directory (file name without `.Dockerfile`).
pub fn corpus_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|file| file.strip_suffix(".Dockerfile").map(str::to_string))
        .collect();
    names.sort();
    names
}
