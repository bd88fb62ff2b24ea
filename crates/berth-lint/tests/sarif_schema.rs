//! `report::sarif` output validates against the official SARIF 2.1.0 schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use berth_lint::{Finding, check, parse_with_options, report};
use serde_json::Value;

/// The schema's `language` pattern has a stray `]`: ECMA-262 tolerates it outside Unicode
/// mode, but the schema check this crate runs before compiling rejects it. Berth never
/// writes `language`, so the validator gets the pattern the SARIF TC meant instead; the
/// vendored file stays as published.
const STRAY_BRACKET_PATTERN: &str = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
const INTENDED_PATTERN: &str = "^[a-zA-Z]{2}(-[a-zA-Z]{2})?$";

fn fix_language_patterns(value: &mut Value) -> usize {
    match value {
        Value::Object(object) => {
            let mut fixed = 0;
            if object.get("pattern").and_then(Value::as_str) == Some(STRAY_BRACKET_PATTERN) {
                object.insert("pattern".to_string(), Value::from(INTENDED_PATTERN));
                fixed += 1;
            }
            fixed
                + object
                    .values_mut()
                    .map(fix_language_patterns)
                    .sum::<usize>()
        }
        Value::Array(items) => items.iter_mut().map(fix_language_patterns).sum(),
        _ => 0,
    }
}

fn validator() -> jsonschema::Validator {
    let mut schema: Value = serde_json::from_str(include_str!("sarif-schema-2.1.0.json")).unwrap();
    assert_eq!(
        fix_language_patterns(&mut schema),
        2,
        "run.language and toolComponent.language"
    );
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, sarif: &str) {
    let instance: Value = serde_json::from_str(sarif).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF does not validate: {errors:#?}");
}

/// Every finding the corpus produces, parse errors included, in one log.
fn corpus_findings() -> Vec<Finding> {
    let mut findings = Vec::new();
    for name in common::corpus_names() {
        let (text, expected) = common::load(&name);
        let file = format!("tests/corpus/{name}.Dockerfile");
        match parse_with_options(&text, &expected.options.parse_options()) {
            Ok(dockerfile) => {
                findings.extend(check(&file, &dockerfile, &expected.options.check_options()))
            }
            Err(error) => findings.push(Finding::parse_error(&file, &error)),
        }
    }
    findings
}

#[test]
fn corpus_findings_validate() {
    let mut findings = corpus_findings();
    assert!(findings.len() > 30, "the corpus should give many findings");
    assert!(findings.iter().any(|f| f.rule == "BL000"));
    // What the CLI adds: suggestions, and paths with spaces or Windows separators.
    findings[0].suggestion = Some("pin it: localhost:5000/gallery/base:2.1@sha256:…".to_string());
    findings[1].file = "services/my app\\Dockerfile".to_string();
    let sarif = report::sarif(&findings);
    assert_valid(&validator(), &sarif);

    let value: Value = serde_json::from_str(&sarif).unwrap();
    let results = value["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    assert_eq!(
        results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "services/my%20app/Dockerfile"
    );
}

#[test]
fn an_empty_log_validates() {
    assert_valid(&validator(), &report::sarif(&[]));
}

#[test]
fn the_validator_rejects_broken_logs() {
    let validator = validator();
    let mut value: Value = serde_json::from_str(&report::sarif(&corpus_findings())).unwrap();
    value["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        Value::from(0);
    assert!(!validator.is_valid(&value), "startLine 0 must not validate");
    value["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        Value::from(1);
    assert!(validator.is_valid(&value), "the untouched log validates");
    value["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
        Value::from("my dir/Dockerfile");
    assert!(
        !validator.is_valid(&value),
        "a URI with a space must not validate"
    );
    value["version"] = Value::from("2.0.0");
    assert!(
        !validator.is_valid(&value),
        "version 2.0.0 must not validate"
    );
}
