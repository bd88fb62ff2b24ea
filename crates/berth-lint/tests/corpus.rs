//! One named test per corpus Dockerfile (listed below), and a test that fails when a
//! corpus file is not listed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use berth_lint::{SourceKind, check, parse_with_options};

/// Lists the corpus: each entry becomes a `#[test]` of that name.
macro_rules! corpus {
    ($($test:ident => $name:literal,)*) => {
        const CORPUS: &[&str] = &[$($name),*];
        $(
            #[test]
            fn $test() {
                run_case($name);
            }
        )*
    };
}

corpus! {
    c01_golden_single_stage => "01-golden-single-stage",
    c02_not_golden_official_image => "02-not-golden-official-image",
    c03_syntax_directive => "03-syntax-directive",
    c04_escape_backtick => "04-escape-backtick",
    c05_escape_directive_after_comment => "05-escape-directive-after-comment",
    c06_unknown_directive_is_a_comment => "06-unknown-directive-is-a-comment",
    c07_directives_case_and_spacing => "07-directives-case-and-spacing",
    c08_continuations_with_comments => "08-continuations-with-comments",
    c09_heredocs_with_fake_from => "09-heredocs-with-fake-from",
    c10_heredoc_unterminated => "10-heredoc-unterminated",
    c11_instructions_any_case => "11-instructions-any-case",
    c12_global_arg_defaults => "12-global-arg-defaults",
    c13_arg_substitution_operators => "13-arg-substitution-operators",
    c14_build_arg_override => "14-build-arg-override",
    c15_stage_arg_does_not_reach_from => "15-stage-arg-does-not-reach-from",
    c16_unset_arg_invalid_reference => "16-unset-arg-invalid-reference",
    c17_several_args_per_line_quoted => "17-several-args-per-line-quoted",
    c18_multi_stage_golden => "18-multi-stage-golden",
    c19_stage_name_case => "19-stage-name-case",
    c20_copy_from_index => "20-copy-from-index",
    c21_copy_from_image => "21-copy-from-image",
    c22_copy_from_undefined_stage => "22-copy-from-undefined-stage",
    c23_run_mount_from => "23-run-mount-from",
    c24_platform_flag => "24-platform-flag",
    c25_scratch => "25-scratch",
    c26_digest_pinned => "26-digest-pinned",
    c27_require_digest_missing => "27-require-digest-missing",
    c28_missing_tag => "28-missing-tag",
    c29_latest_tag => "29-latest-tag",
    c30_registry_with_port => "30-registry-with-port",
    c31_docker_hub_user_images => "31-docker-hub-user-images",
    c32_docker_hub_official_allowed => "32-docker-hub-official-allowed",
    c33_golden_tag_glob => "33-golden-tag-glob",
    c34_invalid_references => "34-invalid-references",
    c35_json_and_shell_forms => "35-json-and-shell-forms",
    c36_unknown_instruction => "36-unknown-instruction",
    c37_from_wrong_arguments => "37-from-wrong-arguments",
    c38_copy_from_variable => "38-copy-from-variable",
    c39_instruction_before_from => "39-instruction-before-from",
    c40_onbuild_heredoc => "40-onbuild-heredoc",
    c41_realistic_go_service => "41-realistic-go-service",
    c42_realistic_node_app => "42-realistic-node-app",
    c43_crlf_line_endings => "43-crlf-line-endings",
    c44_from_forward_stage_name => "44-from-forward-stage-name",
    c45_duplicate_directive => "45-duplicate-directive",
    c46_empty_allow_list => "46-empty-allow-list",
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::From => "from",
        SourceKind::CopyFrom => "copy-from",
        SourceKind::RunMountFrom => "run-mount-from",
    }
}

fn run_case(name: &str) {
    let (text, expected) = common::load(name);
    let file = format!("{name}.Dockerfile");
    let parsed = parse_with_options(&text, &expected.options.parse_options());

    if let Some(error) = &expected.parse_error {
        assert!(
            expected.findings.is_empty() && expected.images.is_none(),
            "{name}: an expected parse error leaves nothing else to expect"
        );
        let actual = parsed.expect_err("expected a parse error, the file parsed");
        assert_eq!(
            actual.line, error.line,
            "{name}: parse error line ({actual})"
        );
        assert!(
            actual.message.contains(&error.message),
            "{name}: parse error {actual:?} should contain {:?}",
            error.message
        );
        return;
    }
    let dockerfile = parsed.unwrap_or_else(|e| panic!("{name}: unexpected parse error: {e}"));

    if let Some(images) = &expected.images {
        let actual: Vec<(u32, String, String)> = dockerfile
            .external_images()
            .map(|s| (s.line, kind_name(s.kind).to_string(), s.value.clone()))
            .collect();
        assert_eq!(&actual, images, "{name}: external images");
    }

    let findings = check(&file, &dockerfile, &expected.options.check_options());
    let actual: Vec<(&str, u32)> = findings.iter().map(|f| (f.rule, f.line)).collect();
    let wanted: Vec<(&str, u32)> = expected
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.line))
        .collect();
    assert_eq!(
        actual,
        wanted,
        "{name}: findings (rule, line); messages: {:#?}",
        findings.iter().map(|f| &f.message).collect::<Vec<_>>()
    );
    for (finding, wanted) in findings.iter().zip(&expected.findings) {
        assert_eq!(finding.file, file);
        assert!(!finding.message.contains('\n'), "{name}: one-line messages");
        if let Some(substring) = &wanted.message {
            assert!(
                finding.message.contains(substring.as_str()),
                "{name}: line {}: {:?} should contain {substring:?}",
                finding.line,
                finding.message
            );
        }
    }
}

#[test]
fn every_corpus_file_is_named_by_a_test() {
    let mut listed: Vec<&str> = CORPUS.to_vec();
    listed.sort_unstable();
    let on_disk = common::corpus_names();
    assert_eq!(on_disk, listed, "corpus files and the corpus! list differ");
    for entry in std::fs::read_dir(common::corpus_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        let stem = file
            .strip_suffix(".Dockerfile")
            .or_else(|| file.strip_suffix(".expected.json"))
            .unwrap_or_else(|| {
                panic!("{file}: corpus files are NAME.Dockerfile or NAME.expected.json")
            });
        assert!(CORPUS.contains(&stem), "{file} belongs to no listed case");
    }
    assert!(
        CORPUS.len() >= 36,
        "the corpus keeps at least 36 Dockerfiles"
    );
}
