//! A Dockerfile parser that follows BuildKit's: parser directives, escape characters and
//! line continuations, comments, heredocs, global `ARG`s and their substitution into
//! `FROM`, stages, and the three ways a build takes files from elsewhere (`FROM`,
//! `COPY --from`, `RUN --mount=…,from=`). It keeps only what `berth lint` needs.

use std::collections::{BTreeMap, BTreeSet};

use crate::reference::Reference;
use crate::shell::{self, Variables};

/// What a build is given from outside the Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// `--build-arg NAME=VALUE`: overrides the default of an `ARG NAME` declared before
    /// the first `FROM` (an argument no `ARG` declares is ignored, as in Docker).
    pub build_args: BTreeMap<String, String>,
    /// BuildKit's automatic platform arguments (`TARGETARCH`, `BUILDPLATFORM`…), which
    /// `FROM` lines may use without declaring them. They depend on the machine, so none
    /// are assumed: pass the ones the build will have.
    pub platform_args: BTreeMap<String, String>,
}

/// A Dockerfile BuildKit would accept, reduced to its stages and image references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `# syntax=` directive, if any.
    pub syntax: Option<String>,
    /// The escape character: `\` unless `# escape=` said otherwise.
    pub escape: char,
    /// The `ARG`s declared before the first `FROM`, in order.
    pub global_args: Vec<GlobalArg>,
    pub stages: Vec<Stage>,
    /// Every `FROM`, `COPY --from` and `RUN --mount from=`, in file order.
    pub sources: Vec<Source>,
}

impl Dockerfile {
    /// The sources that name an image from a registry (not a stage, not `scratch`).
    pub fn external_images(&self) -> impl Iterator<Item = &Source> {
        self.sources
            .iter()
            .filter(|source| source.target == SourceTarget::Image)
    }
}

/// An `ARG` declared before the first `FROM`: the only ones `FROM` lines can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalArg {
    pub name: String,
    /// The default as written (`None` for a bare `ARG NAME`).
    pub default: Option<String>,
    /// What `FROM` lines see: the build argument, else the expanded default; `None` when
    /// the argument is unset.
    pub value: Option<String>,
    pub line: u32,
}

/// One `FROM` and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 0-based, as `COPY --from=0` counts.
    pub index: usize,
    /// The `AS` name, lower-cased as BuildKit stores it.
    pub name: Option<String>,
    /// The base as written (`${BASE}:1.2`).
    pub from: String,
    /// The base after substitution of the global `ARG`s (`golang:1.2`).
    pub base: String,
    /// What the base is: an image, `scratch`, or an earlier stage.
    pub base_target: SourceTarget,
    /// The `--platform` flag as written.
    pub platform: Option<String>,
    /// The line of the `FROM` instruction.
    pub line: u32,
}

/// Which instruction takes content from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    From,
    CopyFrom,
    RunMountFrom,
}

impl SourceKind {
    /// How the instruction is written, for messages: `FROM`, `COPY --from`…
    pub fn instruction(self) -> &'static str {
        match self {
            SourceKind::From => "FROM",
            SourceKind::CopyFrom => "COPY --from",
            SourceKind::RunMountFrom => "RUN --mount from",
        }
    }
}

/// What a source resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTarget {
    /// An image pulled from a registry.
    Image,
    /// `scratch`: no image at all.
    Scratch,
    /// An earlier stage of this Dockerfile, by index.
    Stage(usize),
    /// `--from`/`from=` that names no usable stage; the text says why.
    UndefinedStage(String),
}

/// One `FROM`, `COPY --from` or `RUN --mount=…,from=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The first line of the instruction.
    pub line: u32,
    /// The stage the instruction belongs to.
    pub stage: usize,
    /// As written in the Dockerfile.
    pub written: String,
    /// After substitution (only `FROM` substitutes; BuildKit refuses variables in `--from`).
    pub value: String,
    pub target: SourceTarget,
}

/// A Dockerfile BuildKit would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based.
    pub line: u32,
    pub message: String,
}

impl ParseError {
    fn new(line: u32, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// Parses `text` without build arguments.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    parse_with_options(text, &ParseOptions::default())
}

/// Parses `text` as a build given `options` would see it.
pub fn parse_with_options(text: &str, options: &ParseOptions) -> Result<Dockerfile, ParseError> {
    let (instructions, directives) = split_instructions(text)?;
    Interpreter::new(options, directives.escape).run(instructions, directives)
}

const KNOWN_INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The instructions whose arguments may open heredocs.
const HEREDOC_INSTRUCTIONS: [&str; 3] = ["add", "copy", "run"];

/// One instruction with its continuation lines joined and its heredoc bodies consumed.
#[derive(Debug)]
struct Instruction {
    line: u32,
    /// As written, in the case written.
    command: String,
    flags: Vec<String>,
    args: String,
}

impl Instruction {
    fn command_lower(&self) -> String {
        self.command.to_ascii_lowercase()
    }
}

/// Parser directives, which only the first lines can hold.
struct Directives {
    done: bool,
    seen: BTreeSet<String>,
    escape: char,
    syntax: Option<String>,
}

impl Directives {
    fn new() -> Directives {
        Directives {
            done: false,
            seen: BTreeSet::new(),
            escape: '\\',
            syntax: None,
        }
    }

    /// Looks at a line (leading white space removed) while directives may still come:
    /// the first line that is not a known directive ends them, even a comment.
    fn observe(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive_key_value(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if !self.seen.insert(key.clone()) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "escape" => match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => {
                    return Err(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    ));
                }
            },
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

/// `#` `key` `=` `value`, as BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive_key_value(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_regex_space);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    let (key, rest) = rest.split_at(key_len);
    let value = rest
        .trim_start_matches(is_regex_space)
        .strip_prefix('=')?
        .trim_matches(is_regex_space);
    (!key.is_empty() && !value.is_empty()).then_some((key, value))
}

/// Go's `\s`.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// BuildKit's `reWhitespace`, which separates an instruction from its arguments.
fn is_separator_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (and the blanks after it): the line continues.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    line.trim_end_matches([' ', '\t']).strip_suffix(escape)
}

/// Physical lines, numbered from 1, without their line endings.
struct Lines<'a> {
    lines: Vec<&'a str>,
    next: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines: Vec<&str> = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .collect();
        // A final newline ends the last line; it does not start an empty one.
        if text.ends_with('\n') || text.is_empty() {
            lines.pop();
        }
        Lines { lines, next: 0 }
    }

    fn next(&mut self) -> Option<(u32, &'a str)> {
        let line = self.lines.get(self.next).copied()?;
        self.next += 1;
        Some((line_number(self.next), line))
    }

    fn count(&self) -> u32 {
        line_number(self.lines.len())
    }
}

fn line_number(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// BuildKit's first pass: logical lines, directives and heredoc bodies.
fn split_instructions(text: &str) -> Result<(Vec<Instruction>, Directives), ParseError> {
    let mut lines = Lines::new(text);
    let mut directives = Directives::new();
    let mut instructions = Vec::new();
    while let Some((number, raw)) = lines.next() {
        let stripped = raw.trim_start();
        directives
            .observe(stripped)
            .map_err(|message| ParseError::new(number, message))?;
        if is_comment(stripped) {
            continue;
        }
        let escape = directives.escape;
        let (mut logical, mut continues) = match strip_continuation(stripped, escape) {
            Some(text) => (text.to_string(), true),
            None => (stripped.to_string(), false),
        };
        if !continues && logical.is_empty() {
            continue;
        }
        // Comment lines and empty lines inside a continuation are dropped.
        while continues {
            let Some((_, raw)) = lines.next() else { break };
            if is_comment(raw) || raw.trim().is_empty() {
                continue;
            }
            match strip_continuation(raw, escape) {
                Some(text) => logical.push_str(text),
                None => {
                    logical.push_str(raw);
                    continues = false;
                }
            }
        }
        let instruction = split_command(&logical, number);
        for heredoc in heredocs_of(&instruction, &logical)? {
            consume_heredoc(&mut lines, &heredoc, number)?;
        }
        instructions.push(instruction);
    }
    if instructions.is_empty() {
        return Err(ParseError::new(
            lines.count().max(1),
            "file with no instructions",
        ));
    }
    Ok((instructions, directives))
}

/// `COMMAND [--flag…] ARGS`.
fn split_command(logical: &str, line: u32) -> Instruction {
    let trimmed = logical.trim();
    let (command, rest) = match trimmed.find(is_separator_space) {
        Some(i) => (
            &trimmed[..i],
            trimmed[i..].trim_start_matches(is_separator_space),
        ),
        None => (trimmed, ""),
    };
    let (flags, args) = extract_flags(rest);
    Instruction {
        line,
        command: command.to_string(),
        flags,
        args: args.trim().to_string(),
    }
}

/// BuildKit's `extractBuilderFlags`: the leading `--name[=value]` words, quotes removed.
fn extract_flags(rest: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        let Some(&(start, _)) = chars.get(i) else {
            return (flags, "");
        };
        if !rest[start..].starts_with("--") {
            return (flags, &rest[start..]);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut had_quotes = false;
        while let Some(&(_, ch)) = chars.get(i) {
            i += 1;
            match quote {
                Some(q) if ch == q => quote = None,
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    had_quotes = true;
                }
                _ if ch == '\\' => {
                    if let Some(&(_, escaped)) = chars.get(i) {
                        word.push(escaped);
                        i += 1;
                    }
                }
                _ => word.push(ch),
            }
        }
        // A lone `--` ends the flags.
        if word == "--" {
            let end = chars.get(i).map_or(rest.len(), |&(pos, _)| pos);
            return (flags, &rest[end..]);
        }
        if had_quotes || !word.is_empty() {
            flags.push(word);
        }
    }
}

/// A heredoc opened on an instruction line.
struct Heredoc {
    name: String,
    /// `<<-`: leading tabs are ignored before the terminator.
    strip_tabs: bool,
}

fn heredocs_of(instruction: &Instruction, logical: &str) -> Result<Vec<Heredoc>, ParseError> {
    let command = instruction.command_lower();
    let (command, args) = if command == "onbuild" {
        let sub = split_command(&instruction.args, instruction.line);
        (sub.command_lower(), sub.args)
    } else {
        (command, instruction.args.clone())
    };
    if !HEREDOC_INSTRUCTIONS.contains(&command.as_str())
        || is_json_array(&args)
        || !logical.contains("<<")
    {
        return Ok(Vec::new());
    }
    let mut heredocs = Vec::new();
    for word in shell::split_raw_words(logical) {
        if let Some(heredoc) = parse_heredoc_word(&word)
            .map_err(|message| ParseError::new(instruction.line, message))?
        {
            heredocs.push(heredoc);
        }
    }
    Ok(heredocs)
}

/// `[fd]<<[-]WORD`, the word unquoted to give the terminator.
fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let name = shell::expand_word(rest, '\\', &Variables::new())?;
    Ok(Some(Heredoc { name, strip_tabs }))
}

fn consume_heredoc(lines: &mut Lines<'_>, heredoc: &Heredoc, line: u32) -> Result<(), ParseError> {
    while let Some((_, body_line)) = lines.next() {
        let candidate = if heredoc.strip_tabs {
            body_line.trim_start_matches('\t')
        } else {
            body_line
        };
        if candidate == heredoc.name {
            return Ok(());
        }
    }
    Err(ParseError::new(
        line,
        format!("unterminated heredoc (no line {:?} ends it)", heredoc.name),
    ))
}

/// The JSON (exec) form: an array of strings.
fn is_json_array(args: &str) -> bool {
    args.starts_with('[') && serde_json::from_str::<Vec<String>>(args).is_ok()
}

/// A `COPY --from` or `RUN --mount from=` waiting for all stages to be known.
struct PendingFrom {
    source: usize,
    allows_index: bool,
}

/// BuildKit's second pass: instructions into stages and sources.
struct Interpreter<'a> {
    options: &'a ParseOptions,
    escape: char,
    global_env: Variables,
    global_args: Vec<GlobalArg>,
    stages: Vec<Stage>,
    sources: Vec<Source>,
    pending: Vec<PendingFrom>,
}

impl<'a> Interpreter<'a> {
    fn new(options: &'a ParseOptions, escape: char) -> Interpreter<'a> {
        Interpreter {
            options,
            escape,
            global_env: options.platform_args.clone(),
            global_args: Vec::new(),
            stages: Vec::new(),
            sources: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn run(
        mut self,
        instructions: Vec<Instruction>,
        directives: Directives,
    ) -> Result<Dockerfile, ParseError> {
        for instruction in &instructions {
            self.instruction(instruction)
                .map_err(|message| ParseError::new(instruction.line, message))?;
        }
        if self.stages.is_empty() {
            return Err(ParseError::new(
                instructions.last().map_or(1, |i| i.line),
                "dockerfile contains no stages to build",
            ));
        }
        for pending in std::mem::take(&mut self.pending) {
            let target =
                self.resolve_from_flag(&self.sources[pending.source], pending.allows_index);
            self.sources[pending.source].target = target;
        }
        Ok(Dockerfile {
            syntax: directives.syntax,
            escape: directives.escape,
            global_args: self.global_args,
            stages: self.stages,
            sources: self.sources,
        })
    }

    fn instruction(&mut self, instruction: &Instruction) -> Result<(), String> {
        let command = instruction.command_lower();
        if !KNOWN_INSTRUCTIONS.contains(&command.as_str()) {
            return Err(format!("unknown instruction: {}", instruction.command));
        }
        match command.as_str() {
            "arg" => self.arg(instruction),
            "from" => self.from(instruction),
            _ if self.stages.is_empty() => Err("no build stage in current context".to_string()),
            "copy" => self.copy(instruction),
            "add" => require_destination(instruction, "ADD"),
            "run" => self.run_mounts(instruction),
            _ => Ok(()),
        }
    }

    fn arg(&mut self, instruction: &Instruction) -> Result<(), String> {
        let words = split_arg_words(&instruction.args, self.escape);
        if words.is_empty() {
            return Err("ARG requires at least one argument".to_string());
        }
        let mut declared = Vec::new();
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((name, default)) => (name.to_string(), Some(default.to_string())),
                None => (word, None),
            };
            if name.is_empty() {
                return Err("ARG names can not be blank".to_string());
            }
            declared.push((name, default));
        }
        // An ARG inside a stage is that stage's; FROM lines never see it.
        if !self.stages.is_empty() {
            return Ok(());
        }
        for (name, default) in declared {
            let value = match (self.options.build_args.get(&name), &default) {
                (Some(build_arg), _) => Some(build_arg.clone()),
                (None, Some(default)) => Some(
                    shell::expand_word(default, self.escape, &self.global_env)
                        .map_err(|e| format!("ARG {name}: {e}"))?,
                ),
                (None, None) => None,
            };
            if let Some(value) = &value {
                self.global_env.insert(name.clone(), value.clone());
            }
            self.global_args.push(GlobalArg {
                name,
                default,
                value,
                line: instruction.line,
            });
        }
        Ok(())
    }

    fn from(&mut self, instruction: &Instruction) -> Result<(), String> {
        let flags = parse_flags(&instruction.flags)?;
        let mut platform = None;
        for (name, value) in flags {
            if name != "platform" {
                return Err(format!("unknown flag: {name}"));
            }
            if platform.is_some() {
                return Err("duplicate flag specified: platform".to_string());
            }
            platform = Some(value.ok_or("missing a value on flag: platform")?);
        }
        let words: Vec<&str> = instruction
            .args
            .split(is_separator_space)
            .filter(|word| !word.is_empty())
            .collect();
        let name = match words.as_slice() {
            [_] => None,
            [_, as_keyword, name] if as_keyword.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                if !is_valid_stage_name(&lower) {
                    return Err(format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ));
                }
                Some(lower)
            }
            _ => return Err("FROM requires either one or three arguments".to_string()),
        };
        let from = words[0].to_string();
        let base = shell::expand_word(&from, self.escape, &self.global_env)?;
        let base_target = self.resolve_base(&base);
        let index = self.stages.len();
        self.sources.push(Source {
            kind: SourceKind::From,
            line: instruction.line,
            stage: index,
            written: from.clone(),
            value: base.clone(),
            target: base_target.clone(),
        });
        self.stages.push(Stage {
            index,
            name,
            from,
            base,
            base_target,
            platform,
            line: instruction.line,
        });
        Ok(())
    }

    /// An earlier stage (matched case-insensitively; see rule BL007), `scratch`, or an image.
    fn resolve_base(&self, base: &str) -> SourceTarget {
        // Stage names are stored lower-cased, so this finds `FROM Builder` too.
        let lower = base.to_lowercase();
        if let Some(stage) = self
            .stages
            .iter()
            .rev()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
        {
            return SourceTarget::Stage(stage.index);
        }
        if base == "scratch" {
            SourceTarget::Scratch
        } else {
            SourceTarget::Image
        }
    }

    fn copy(&mut self, instruction: &Instruction) -> Result<(), String> {
        let mut from = None;
        for (name, value) in parse_flags(&instruction.flags)? {
            if name == "from" {
                if from.is_some() {
                    return Err("duplicate flag specified: from".to_string());
                }
                from = Some(value.ok_or("missing a value on flag: from")?);
            }
        }
        require_destination(instruction, "COPY")?;
        let Some(from) = from.filter(|from| !from.is_empty()) else {
            return Ok(());
        };
        if shell::expand_word(&from, '\\', &Variables::new()).as_deref() != Ok(from.as_str()) {
            return Err("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround".to_string());
        }
        self.push_pending(SourceKind::CopyFrom, instruction.line, from, true);
        Ok(())
    }

    fn run_mounts(&mut self, instruction: &Instruction) -> Result<(), String> {
        for (name, value) in parse_flags(&instruction.flags)? {
            if name != "mount" {
                continue;
            }
            let value = value.ok_or("missing a value on flag: mount")?;
            let mut mount_type = "bind".to_string();
            let mut from = None;
            for field in parse_csv_record(&value)? {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                match key.to_ascii_lowercase().as_str() {
                    "type" => mount_type = value.to_ascii_lowercase(),
                    "from" => {
                        if value
                            .split_once('$')
                            .is_some_and(|(_, after)| !after.is_empty())
                        {
                            return Err("'from' doesn't support variable expansion, define alias stage instead".to_string());
                        }
                        from = Some(value.to_string());
                    }
                    _ => {}
                }
            }
            if mount_type == "secret" && from.is_some() {
                return Err("secret mount should not have a from".to_string());
            }
            // A tmpfs mount ignores `from`; a cache mount without one starts empty.
            if mount_type == "tmpfs" {
                continue;
            }
            if let Some(from) = from.filter(|from| !from.is_empty()) {
                self.push_pending(SourceKind::RunMountFrom, instruction.line, from, false);
            }
        }
        Ok(())
    }

    fn push_pending(&mut self, kind: SourceKind, line: u32, from: String, allows_index: bool) {
        self.pending.push(PendingFrom {
            source: self.sources.len(),
            allows_index,
        });
        self.sources.push(Source {
            kind,
            line,
            stage: self.stages.len() - 1,
            written: from.clone(),
            value: from,
            target: SourceTarget::Image,
        });
    }

    /// BuildKit looks `--from` up among all stages (case-insensitively), then as an index
    /// (COPY only), and otherwise pulls it as an image. A stage not defined before the
    /// instruction fails the build. A plain name that is no stage is reported rather than
    /// pulled: it is far more often a misspelt stage than an untagged image.
    fn resolve_from_flag(&self, source: &Source, allows_index: bool) -> SourceTarget {
        let from = &source.value;
        let what = format!("{}={from}", source.kind.instruction());
        let not_before = |index: usize| {
            if index == source.stage {
                SourceTarget::UndefinedStage(format!(
                    "{what} names the stage it is in (stage {index})"
                ))
            } else {
                SourceTarget::UndefinedStage(format!(
                    "{what} names stage {index}, which is defined after this instruction"
                ))
            }
        };
        let lower = from.to_lowercase();
        if let Some(stage) = self
            .stages
            .iter()
            .rev()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
        {
            return if stage.index < source.stage {
                SourceTarget::Stage(stage.index)
            } else {
                not_before(stage.index)
            };
        }
        if allows_index && let Ok(index) = from.parse::<i64>() {
            let count = self.stages.len();
            return match usize::try_from(index) {
                Ok(index) if index < source.stage => SourceTarget::Stage(index),
                Ok(index) if index < count => not_before(index),
                _ => SourceTarget::UndefinedStage(format!(
                    "{what}: there is no stage {index} (stages count from 0 and this Dockerfile has {count})"
                )),
            };
        }
        if from == "scratch" {
            return SourceTarget::Scratch;
        }
        let looks_like_image = from.contains(['/', ':', '@']);
        match Reference::parse(from) {
            Ok(_) if looks_like_image => SourceTarget::Image,
            Ok(reference) => {
                // `RUN --mount from=` takes stage names only; say so for an index.
                let hint = if from.parse::<u64>().is_ok() {
                    " (from= takes stage names, not indexes)"
                } else {
                    ""
                };
                SourceTarget::UndefinedStage(format!(
                    "{what} names no stage defined in this Dockerfile; BuildKit would pull the image {reference} instead{hint}"
                ))
            }
            Err(error) => SourceTarget::UndefinedStage(format!(
                "{what} names no stage and is not an image reference ({error})"
            )),
        }
    }
}

fn require_destination(instruction: &Instruction, name: &str) -> Result<(), String> {
    let count = if is_json_array(&instruction.args) {
        serde_json::from_str::<Vec<String>>(&instruction.args).map_or(0, |args| args.len())
    } else {
        instruction
            .args
            .split(is_separator_space)
            .filter(|word| !word.is_empty())
            .count()
    };
    if count < 2 {
        return Err(format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    Ok(())
}

/// `--name=value` into (`name`, `Some(value)`), `--name` into (`name`, `None`).
fn parse_flags(flags: &[String]) -> Result<Vec<(String, Option<String>)>, String> {
    flags
        .iter()
        .map(|flag| {
            let Some(flag) = flag.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {flag}"));
            };
            Ok(match flag.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (flag.to_string(), None),
            })
        })
        .collect()
}

/// `^[a-z][a-z0-9-_.]*$`.
fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// BuildKit's `parseWords` for `ARG`: white-space separated, quotes kept (they are
/// removed when the default is expanded), an escape keeping the next character.
fn split_arg_words(args: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = args.chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            if ch == escape && q != '\'' {
                match chars.next() {
                    Some(escaped) => {
                        word.push(ch);
                        word.push(escaped);
                    }
                    None => quote = None,
                }
                continue;
            }
            if ch == q {
                quote = None;
            }
            word.push(ch);
            continue;
        }
        if ch.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
        }
        if ch == escape {
            if chars.peek().is_none() {
                continue;
            }
            word.push(ch);
            word.extend(chars.next());
            continue;
        }
        word.push(ch);
    }
    if in_word {
        words.push(word);
    }
    words
}

/// One record of Go's `encoding/csv`, which `--mount` values are: commas separate
/// fields, a field may be double-quoted, `""` inside quotes is a quote.
fn parse_csv_record(text: &str) -> Result<Vec<String>, String> {
    let failed = |why: &str| format!("failed to parse csv mounts: {why}");
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(failed("extraneous or missing \" in quoted-field")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(ch) => field.push(ch),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err(failed("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(failed("bare \" in non-quoted-field")),
                    Some(ch) => field.push(ch),
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(text: &str) -> Vec<(u32, SourceKind, String)> {
        parse(text)
            .unwrap()
            .external_images()
            .map(|s| (s.line, s.kind, s.value.clone()))
            .collect()
    }

    #[test]
    fn directives_only_count_at_the_top() {
        let file = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a:1\n").unwrap();
        assert_eq!(file.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(file.escape, '`');

        let file = parse("# hello\n# escape=`\nFROM a:1\n").unwrap();
        assert_eq!(file.escape, '\\');

        let file = parse("# unknown=1\n# escape=`\nFROM a:1\n").unwrap();
        assert_eq!(file.escape, '\\');

        let file = parse("\n# escape=`\nFROM a:1\n").unwrap();
        assert_eq!(file.escape, '\\');

        let file = parse("#  ESCAPE = ` \nFROM a:1\n").unwrap();
        assert_eq!(file.escape, '`');
    }

    #[test]
    fn bad_directives_are_errors() {
        let err = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("invalid escape token"), "{err}");
        let err = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.message, "only one escape parser directive can be used");
    }

    #[test]
    fn continuations_join_and_skip_comments_and_blank_lines() {
        let text = "FROM \\\n# a comment\n\n  golang:1.22 \\\n  AS build\nFROM alpine:3\n";
        let file = parse(text).unwrap();
        assert_eq!(file.stages[0].base, "golang:1.22");
        assert_eq!(file.stages[0].name.as_deref(), Some("build"));
        assert_eq!(file.stages[0].line, 1);
        assert_eq!(file.stages[1].line, 6);
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let text = "FROM a:1\nRUN <<EOF cat <<-'TWO'\nFROM evil\nEOF\n\tFROM evil2\n\tTWO\nCOPY <<X /x\nFROM evil3\nX\nFROM b:2\n";
        assert_eq!(
            images(text),
            vec![
                (1, SourceKind::From, "a:1".to_string()),
                (10, SourceKind::From, "b:2".to_string()),
            ]
        );
    }

    #[test]
    fn quoted_heredoc_markers_are_text() {
        let text = "FROM a:1\nRUN echo \"<<EOF\"\nFROM b:2\n";
        assert_eq!(images(text).len(), 2);
    }

    #[test]
    fn unterminated_heredoc_is_an_error_on_its_instruction() {
        let err = parse("FROM a:1\nRUN <<EOF\necho hi\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.starts_with("unterminated heredoc"), "{err}");
    }

    #[test]
    fn global_args_substitute_into_from_with_overrides() {
        let text = "ARG REG=localhost:5000\nARG TAG=\"2.1\" OTHER\nFROM ${REG}/base:${TAG}\n";
        assert_eq!(images(text)[0].2, "localhost:5000/base:2.1");
        let options = ParseOptions {
            build_args: [("TAG".to_string(), "3.0".to_string())].into(),
            ..ParseOptions::default()
        };
        let file = parse_with_options(text, &options).unwrap();
        assert_eq!(file.stages[0].base, "localhost:5000/base:3.0");
        assert_eq!(file.global_args.len(), 3);
        assert_eq!(file.global_args[2].value, None);
    }

    #[test]
    fn stage_args_do_not_reach_from() {
        let text = "FROM a:1\nARG B=x:1\nFROM ${B:-c:2}\n";
        assert_eq!(images(text)[1].2, "c:2");
    }

    #[test]
    fn copy_from_resolves_stages_indexes_and_images() {
        let text = "FROM a:1 AS Build\nFROM b:1\nCOPY --from=BUILD /x /x\nCOPY --from=0 /x /x\nCOPY --from=nginx:1.25 /x /x\nCOPY --from=scratch /x /x\n";
        let file = parse(text).unwrap();
        let targets: Vec<_> = file.sources.iter().map(|s| s.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                SourceTarget::Image,
                SourceTarget::Image,
                SourceTarget::Stage(0),
                SourceTarget::Stage(0),
                SourceTarget::Image,
                SourceTarget::Scratch,
            ]
        );
    }

    #[test]
    fn run_mount_from_is_a_source() {
        let text = "FROM a:1\nRUN --mount=type=cache,target=/c \\\n    --mount=type=bind,from=tools:1,source=/t,target=/t make\n";
        assert_eq!(
            images(text)[1],
            (2, SourceKind::RunMountFrom, "tools:1".to_string())
        );
    }

    #[test]
    fn broken_files_are_errors() {
        for (text, line, message) in [
            ("", 1, "file with no instructions"),
            ("# only a comment\n", 1, "file with no instructions"),
            ("ARG A=1\n", 1, "dockerfile contains no stages to build"),
            ("RUN x\nFROM a\n", 1, "no build stage in current context"),
            ("FROM a\nFORM b\n", 2, "unknown instruction: FORM"),
            (
                "FROM a b\n",
                1,
                "FROM requires either one or three arguments",
            ),
            ("FROM a AS 1x\n", 1, "invalid name for build stage"),
            ("FROM --foo=1 a\n", 1, "unknown flag: foo"),
            (
                "FROM a\nCOPY --from=$X /a /b\n",
                2,
                "variable expansion is not supported",
            ),
            (
                "FROM a\nCOPY x\n",
                2,
                "COPY requires at least two arguments",
            ),
            ("FROM ${A:?needed}\n", 1, "A: needed"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn heredoc_opened_on_a_continuation_line_starts_after_it() {
        let text = "FROM a:1\nRUN \\\n  cat <<EOF\nFROM x:1\nEOF\nFROM b:1\n";
        assert_eq!(images(text)[1], (6, SourceKind::From, "b:1".to_string()));
    }

    #[test]
    fn byte_order_mark_and_unfinished_continuation() {
        let file = parse("\u{feff}# escape=`\nFROM a:1 `\n").unwrap();
        assert_eq!(file.escape, '`');
        assert_eq!(file.stages[0].base, "a:1");
    }

    #[test]
    fn a_stage_named_scratch_shadows_scratch() {
        let file = parse("FROM a:1 AS scratch\nFROM scratch\n").unwrap();
        assert_eq!(file.stages[1].base_target, SourceTarget::Stage(0));
        let file = parse("FROM scratch\n").unwrap();
        assert_eq!(file.stages[0].base_target, SourceTarget::Scratch);
    }

    #[test]
    fn a_secret_mount_cannot_have_from() {
        let err = parse("FROM a\nRUN --mount=type=secret,id=x,from=b true\n").unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (2, "secret mount should not have a from")
        );
        let err = parse("FROM a\nRUN --mount=from=$B true\n").unwrap_err();
        assert!(
            err.message.contains("doesn't support variable expansion"),
            "{err}"
        );
    }

    #[test]
    fn flags_lose_their_quotes() {
        assert_eq!(
            extract_flags("--from='a b' --link src dst"),
            (
                vec!["--from=a b".to_string(), "--link".to_string()],
                "src dst"
            )
        );
        assert_eq!(extract_flags("-- --x"), (vec![], "--x"));
    }

    #[test]
    fn csv_mounts() {
        assert_eq!(
            parse_csv_record("type=bind,\"from=a,b\",target=/x").unwrap(),
            vec!["type=bind", "from=a,b", "target=/x"]
        );
        assert!(parse_csv_record("a\"b").is_err());
    }
}
