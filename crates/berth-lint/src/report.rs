//! Findings as text for people, JSON for scripts, and SARIF 2.1.0 for code-scanning
//! services. Pure functions: the caller writes the string where it wants.

use serde_json::{Value, json};

use crate::rules::{Finding, RULES, rule};

/// The tool name SARIF consumers show.
pub const TOOL_NAME: &str = "berth lint";

/// One `FILE:LINE RULE message` line per finding, each followed by an indented
/// suggestion line when there is one, then a summary line.
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        out.push_str(&format!(
            "{}:{} {} {}\n",
            finding.file, finding.line, finding.rule, finding.message
        ));
        if let Some(suggestion) = &finding.suggestion {
            out.push_str(&format!("    suggestion: {suggestion}\n"));
        }
    }
    out.push_str(&summary(findings));
    out.push('\n');
    out
}

/// `no findings`, `1 finding in 1 file`, `5 findings in 2 files`.
pub fn summary(findings: &[Finding]) -> String {
    let mut files: Vec<&str> = findings.iter().map(|f| f.file.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    match findings.len() {
        0 => "no findings".to_string(),
        n => format!(
            "{n} finding{} in {} file{}",
            plural(n),
            files.len(),
            plural(files.len())
        ),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `{"findings": [{"rule", "name", "file", "line", "message", "reference"?, "suggestion"?}]}`.
pub fn json(findings: &[Finding]) -> String {
    let findings: Vec<Value> = findings
        .iter()
        .map(|finding| {
            let mut object = json!({
                "rule": finding.rule,
                "name": rule(finding.rule).map_or("", |rule| rule.name),
                "file": finding.file,
                "line": finding.line,
                "message": finding.message,
            });
            if let Some(reference) = &finding.reference {
                object["reference"] = json!(reference);
            }
            if let Some(suggestion) = &finding.suggestion {
                object["suggestion"] = json!(suggestion);
            }
            object
        })
        .collect();
    pretty(&json!({ "findings": findings }))
}

/// A SARIF 2.1.0 log with one run: every rule in the driver, every finding as an error.
pub fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "name": rule.name,
                "shortDescription": { "text": rule.summary },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|finding| {
            let mut text = finding.message.clone();
            if let Some(suggestion) = &finding.suggestion {
                text.push_str(&format!("\nsuggestion: {suggestion}"));
            }
            let mut result = json!({
                "ruleId": finding.rule,
                "level": "error",
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri_reference(&finding.file) },
                        "region": { "startLine": finding.line.max(1) },
                    }
                }],
            });
            if let Some(index) = RULES.iter().position(|rule| rule.id == finding.rule) {
                result["ruleIndex"] = json!(index);
            }
            if let Some(reference) = &finding.reference {
                result["properties"] = json!({ "reference": reference });
            }
            result
        })
        .collect();
    pretty(&json!({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": TOOL_NAME,
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }],
    }))
}

fn pretty(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings.
    let mut out = serde_json::to_string_pretty(value).unwrap_or_default();
    out.push('\n');
    out
}

/// A relative path as a URI reference: `/` separators, and everything outside RFC 3986's
/// unreserved characters and `/` percent-encoded, so `my dir\Dockerfile` stays valid.
fn uri_reference(path: &str) -> String {
    let mut out = String::new();
    for byte in path.replace('\\', "/").bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &'static str, file: &str, line: u32) -> Finding {
        Finding {
            rule,
            file: file.to_string(),
            line,
            message: format!("{rule} message"),
            reference: None,
            suggestion: None,
        }
    }

    #[test]
    fn text_has_one_line_per_finding_and_a_summary() {
        let mut pinned = finding("BL004", "a/Dockerfile", 3);
        pinned.suggestion = Some("pin it: x@sha256:abc".to_string());
        let out = text(&[
            finding("BL001", "a/Dockerfile", 1),
            pinned,
            finding("BL002", "b", 7),
        ]);
        assert_eq!(
            out,
            "a/Dockerfile:1 BL001 BL001 message\n\
             a/Dockerfile:3 BL004 BL004 message\n    suggestion: pin it: x@sha256:abc\n\
             b:7 BL002 BL002 message\n\
             3 findings in 2 files\n"
        );
        assert_eq!(text(&[]), "no findings\n");
        assert_eq!(summary(&[finding("BL001", "x", 1)]), "1 finding in 1 file");
    }

    #[test]
    fn json_carries_integers_and_optional_fields() {
        let mut with_reference = finding("BL001", "Dockerfile", 2);
        with_reference.reference = Some("docker.io/library/golang:1".to_string());
        let value: Value = serde_json::from_str(&json(&[with_reference])).unwrap();
        let first = &value["findings"][0];
        assert_eq!(first["rule"], "BL001");
        assert_eq!(first["name"], "not-golden");
        assert_eq!(first["line"], 2);
        assert_eq!(first["reference"], "docker.io/library/golang:1");
        assert!(first.get("suggestion").is_none());
    }

    #[test]
    fn sarif_results_point_at_rules_and_lines() {
        let value: Value =
            serde_json::from_str(&sarif(&[finding("BL003", "dir name/Dockerfile", 9)])).unwrap();
        let run = &value["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], TOOL_NAME);
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "BL003");
        let index = usize::try_from(result["ruleIndex"].as_u64().unwrap()).unwrap();
        assert_eq!(run["tool"]["driver"]["rules"][index]["id"], "BL003");
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "dir%20name/Dockerfile");
        assert_eq!(location["region"]["startLine"], 9);
    }
}
