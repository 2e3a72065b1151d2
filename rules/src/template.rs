//! The Go `text/template` subset used in Prometheus alert labels and annotations.
//!
//! Supported: text and `{{ ... }}` actions with the trim markers `{{- ` and ` -}}`,
//! comments `{{/* ... */}}`, the variables `$` (the data), `$labels`, `$value`,
//! `$externalLabels` and `$externalURL`, declared (`$x := ...`) and assigned (`$x = ...`)
//! variables, fields (`.Labels.job`, `$labels.instance`, `(pipeline).field`), pipelines
//! (`x | f`), calls (`f a b`), string/raw-string/char/number/bool/nil literals,
//! `if`/`else if`/`else`/`end`, `with`/`else with`/`else`/`end`, `range` over a map (sorted
//! keys, with `$k, $v :=`) or an integer, `define`/`template`/`block`, and the functions
//! most rule files use: Prometheus' `humanize`,
//! `humanize1024`, `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `title`,
//! `toUpper`, `toLower`, `match`, `reReplaceAll`, `safeHtml`, `stripPort`, `stripDomain`,
//! `parseDuration`, `externalURL`, `pathPrefix`, `graphLink`, `tableLink`, `toTime` and
//! `toDuration` (both yield the printed form of Go's value), and Go's
//! `printf`, `print`, `println`, `len`, `index`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`,
//! `or`, `not`, `html`, `urlquery`. The remaining Prometheus functions (`query`, `first`,
//! `label`, `value`, `sortByLabel`, `now`, `toTime`, ...) parse, so rule files using them
//! load, but fail when executed.
//!
//! `break` and `continue` work inside `range`. Not supported: the Go builtins `call` and
//! `slice` (they parse, but fail when run).
//!
//! Values print as Go prints them: a float64 like `%v` (`1.234567e+06`, `0.5`, `NaN`,
//! `+Inf`), a map as `map[k:v ...]`. As in Prometheus, a missing label is the empty string.
//! Parse errors (undefined variable or function, unclosed action, unexpected
//! `{{else}}`/`{{end}}`, bad character) and execution errors are reported as Go does,
//! e.g. `template: __alert_X:1: undefined variable "$label"`; [`expand`] turns any error
//! into `<error expanding template: MSG>`, as Prometheus does.
//!
//! Invariants: parsing and rendering never panic; nesting depth is bounded at parse time;
//! rendering is bounded in steps, in `{{template}}` call depth and in output size (the only
//! loop, `range`, iterates over a finite map or a count, and each iteration is a step).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use crate::labels::Labels;

/// The most output one rendering may produce, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The most nodes and commands one rendering may execute.
const MAX_STEPS: usize = 1_000_000;
/// The deepest nesting of blocks and parentheses accepted in one template text.
const MAX_DEPTH: usize = 50;
/// The deepest nesting of node lists and pipelines while rendering, across
/// `{{template}}` calls; keeps the stack small (a few hundred KiB in debug builds).
const MAX_EXEC_NESTING: usize = 64;

/// What a template sees: the alert's labels and value, plus the external labels and URL.
#[derive(Clone, Copy, Debug)]
pub struct TemplateData<'a> {
    /// The alert's labels (`$labels`, `.Labels`).
    pub labels: &'a Labels,
    /// The alert's value (`$value`, `.Value`).
    pub value: f64,
    /// The configured external labels (`$externalLabels`, `.ExternalLabels`).
    pub external_labels: &'a Labels,
    /// The configured external URL (`$externalURL`, `.ExternalURL`).
    pub external_url: &'a str,
}

/// A parsed template, ready to render many times.
#[derive(Clone, Debug)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
    /// Templates defined with `{{define}}` or `{{block}}`.
    defines: BTreeMap<String, Vec<Node>>,
}

impl Template {
    /// Parses `text`. Errors name the problem as Go's parser would.
    pub fn parse(text: &str) -> Result<Template, String> {
        Self::parse_named("template", text)
    }

    /// Parses `text`, naming the template `name` in error messages (Prometheus names alert
    /// templates `__alert_<alertname>`).
    pub fn parse_named(name: &str, text: &str) -> Result<Template, String> {
        let items = lex(text).map_err(|(line, msg)| format!("template: {name}:{line}: {msg}"))?;
        let mut p = Parser {
            items,
            pos: 0,
            vars: PREDEFINED.iter().map(|s| (*s).to_owned()).collect(),
            depth: 0,
            range_depth: 0,
            defines: BTreeMap::new(),
        };
        let (nodes, end) = p.list().map_err(|(line, msg)| format!("template: {name}:{line}: {msg}"))?;
        match end {
            ListEnd::Eof => Ok(Template { name: name.to_owned(), nodes, defines: p.defines }),
            ListEnd::End(line) => Err(format!("template: {name}:{line}: unexpected {{{{end}}}}")),
            ListEnd::Else(line, _) => Err(format!("template: {name}:{line}: unexpected {{{{else}}}}")),
        }
    }

    /// Renders the template against `data`.
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, String> {
        let mut ex = Exec {
            name: &self.name,
            main: &self.nodes,
            defines: &self.defines,
            depth: 0,
            nest: 0,
            last_line: 1,
            flow: None,
            data,
            vars: Vec::new(),
            out: String::new(),
            steps: 0,
            labels: Rc::new(labels_map(data.labels)),
            external_labels: Rc::new(labels_map(data.external_labels)),
        };
        let root = Val::Root(Rc::new(RootData {
            labels: ex.labels.clone(),
            external_labels: ex.external_labels.clone(),
            external_url: data.external_url.to_owned(),
            value: data.value,
        }));
        ex.vars.push(("$".to_owned(), root.clone()));
        ex.vars.push(("$labels".to_owned(), Val::Map(ex.labels.clone())));
        ex.vars.push(("$externalLabels".to_owned(), Val::Map(ex.external_labels.clone())));
        ex.vars.push(("$externalURL".to_owned(), Val::Str(data.external_url.to_owned())));
        ex.vars.push(("$value".to_owned(), Val::Float(data.value)));
        ex.list(&self.nodes, &root).map_err(|(line, msg)| format!("template: {}:{line}: {msg}", self.name))?;
        Ok(ex.out)
    }
}

/// Parses and renders `text`; on any error the result is
/// `<error expanding template: MSG>`, as Prometheus does.
pub fn expand(text: &str, data: &TemplateData<'_>) -> String {
    expand_named("template", text, data)
}

/// Like [`expand`], naming the template `name` in error messages.
pub fn expand_named(name: &str, text: &str, data: &TemplateData<'_>) -> String {
    match Template::parse_named(name, text).and_then(|t| t.render(data)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

const PREDEFINED: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// Functions a template may name. Those not in [`exec_func`] parse but fail when run.
const FUNCS: &[&str] = &[
    // Go text/template builtins.
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    // Prometheus.
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "now",
    "urlQueryEscape",
];

// ---------------------------------------------------------------------------------------
// Lexing: the text is cut into text items and actions; each action into tokens.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Dot,
    Var(String),
    Str(String),
    Num(Number),
    Char(char),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Int(i64),
    Float(f64),
}

/// A token and whether whitespace came before it (fields chain only without space).
#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    spaced: bool,
}

#[derive(Clone, Debug)]
enum Item {
    Text(String),
    Action { line: usize, toks: Vec<Token> },
}

type LexError = (usize, String);

fn lex(src: &str) -> Result<Vec<Item>, LexError> {
    let mut items: Vec<Item> = Vec::new();
    let mut rest = src;
    let mut line = 1usize;
    let mut trim_next = false;
    loop {
        let Some(open) = rest.find("{{") else {
            let mut t = rest;
            if trim_next {
                t = t.trim_start_matches(is_space);
            }
            if !t.is_empty() {
                items.push(Item::Text(t.to_owned()));
            }
            return Ok(items);
        };
        let mut text = &rest[..open];
        let after = &rest[open + 2..];
        let trim_left = after.starts_with('-') && after[1..].starts_with(is_space);
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_owned()));
        }
        line += rest[..open].matches('\n').count();
        let mut body = if trim_left { &after[1..] } else { after };
        let action_line = line;
        // Comments: `{{/* ... */}}`, optionally with trim markers around.
        let trimmed = body.trim_start_matches(is_space);
        if trimmed.starts_with("/*") && (trimmed.len() == body.len() || trim_left) {
            let Some(close) = trimmed.find("*/") else { return Err((line, "unclosed comment".to_owned())) };
            let after_comment = &trimmed[close + 2..];
            line += trimmed[..close].matches('\n').count();
            let (tr, rest2) = if let Some(r) = after_comment.strip_prefix("}}") {
                (false, r)
            } else {
                let t = after_comment.trim_start_matches(is_space);
                match t.strip_prefix("-}}") {
                    Some(r) if t.len() != after_comment.len() => (true, r),
                    _ => return Err((line, "comment ends before closing delimiter".to_owned())),
                }
            };
            trim_next = tr;
            rest = rest2;
            continue;
        }
        let mut toks = Vec::new();
        let mut spaced = true;
        loop {
            // Right delimiter, with or without trim marker.
            if body.starts_with("}}") {
                trim_next = false;
                body = &body[2..];
                break;
            }
            let c = match body.chars().next() {
                Some(c) => c,
                None => return Err((line, "unclosed action".to_owned())),
            };
            if is_space(c) {
                let ws_len = body.len() - body.trim_start_matches(is_space).len();
                let ws = &body[..ws_len];
                let after_ws = &body[ws_len..];
                if let Some(after_delim) = after_ws.strip_prefix("-}}") {
                    line += ws.matches('\n').count();
                    trim_next = true;
                    body = after_delim;
                    break;
                }
                line += ws.matches('\n').count();
                body = after_ws;
                spaced = true;
                continue;
            }
            let (tok, len) = lex_token(body).map_err(|m| (line, m))?;
            toks.push(Token { tok, spaced });
            spaced = false;
            line += body[..len].matches('\n').count();
            body = &body[len..];
        }
        items.push(Item::Action { line: action_line, toks });
        rest = body;
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// One token at the start of `s` (not whitespace, not the delimiter) and its byte length.
fn lex_token(s: &str) -> Result<(Tok, usize), String> {
    let c = s.chars().next().unwrap_or(' ');
    let ident_len = |from: usize| from + s[from..].find(|c: char| !is_ident_char(c)).unwrap_or(s.len() - from);
    match c {
        '|' => Ok((Tok::Pipe, 1)),
        '(' => Ok((Tok::LParen, 1)),
        ')' => Ok((Tok::RParen, 1)),
        ',' => Ok((Tok::Comma, 1)),
        '=' => Ok((Tok::Assign, 1)),
        ':' if s.starts_with(":=") => Ok((Tok::Declare, 2)),
        '$' => {
            let n = ident_len(1);
            Ok((Tok::Var(s[..n].to_owned()), n))
        }
        '.' => {
            let next = s[1..].chars().next();
            if next.is_some_and(|c| c.is_ascii_digit()) {
                return lex_number(s);
            }
            if next.is_some_and(is_ident_char) {
                let n = ident_len(1);
                Ok((Tok::Field(s[1..n].to_owned()), n))
            } else {
                Ok((Tok::Dot, 1))
            }
        }
        '"' => {
            let mut out = String::new();
            let mut chars = s.char_indices().skip(1);
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => return Ok((Tok::Str(out), i + 1)),
                    '\n' => return Err("unterminated quoted string".to_owned()),
                    '\\' => {
                        let Some((_, e)) = chars.next() else { break };
                        match e {
                            'n' => out.push('\n'),
                            't' => out.push('\t'),
                            'r' => out.push('\r'),
                            '\\' => out.push('\\'),
                            '"' => out.push('"'),
                            '\'' => out.push('\''),
                            'a' => out.push('\u{7}'),
                            'b' => out.push('\u{8}'),
                            'f' => out.push('\u{c}'),
                            'v' => out.push('\u{b}'),
                            'x' | 'u' | 'U' => {
                                let n = match e {
                                    'x' => 2,
                                    'u' => 4,
                                    _ => 8,
                                };
                                let mut v = 0u32;
                                for _ in 0..n {
                                    let d = chars.next().and_then(|(_, d)| d.to_digit(16));
                                    v = v * 16 + d.ok_or_else(|| "invalid syntax".to_owned())?;
                                }
                                out.push(char::from_u32(v).ok_or_else(|| "invalid syntax".to_owned())?);
                            }
                            _ => return Err("invalid syntax".to_owned()),
                        }
                    }
                    c => out.push(c),
                }
            }
            Err("unterminated quoted string".to_owned())
        }
        '`' => match s[1..].find('`') {
            Some(i) => Ok((Tok::Str(s[1..1 + i].to_owned()), i + 2)),
            None => Err("unterminated raw quoted string".to_owned()),
        },
        '\'' => {
            let mut it = s.char_indices().skip(1);
            let ch = match it.next() {
                Some((_, '\\')) => match it.next() {
                    Some((_, 'n')) => '\n',
                    Some((_, 't')) => '\t',
                    Some((_, '\\')) => '\\',
                    Some((_, '\'')) => '\'',
                    _ => return Err("invalid syntax in character constant".to_owned()),
                },
                Some((_, c)) => c,
                None => return Err("unterminated character constant".to_owned()),
            };
            match it.next() {
                Some((i, '\'')) => Ok((Tok::Char(ch), i + 1)),
                _ => {
                    let end = s[1..].find(['\'', '}']).map_or(s.len(), |i| i + 2).min(s.len());
                    Err(format!("malformed character constant: {}", &s[..end]))
                }
            }
        }
        '+' | '-' | '0'..='9' => lex_number(s),
        c if is_ident_char(c) => {
            let n = ident_len(0);
            Ok((Tok::Ident(s[..n].to_owned()), n))
        }
        c if c.is_ascii_graphic() => Err(format!("unexpected {:?} in operand", c.to_string())),
        c => Err(format!("unrecognized character in action: U+{:04X} {c:?}", c as u32)),
    }
}

fn lex_number(s: &str) -> Result<(Tok, usize), String> {
    let n = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphanumeric()
                || c == '.'
                || c == '_'
                || ((c == '+' || c == '-') && (i == 0 || matches!(s.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P'))))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let text = &s[..n];
    parse_number(text).map(|v| (Tok::Num(v), n)).ok_or_else(|| format!("bad number syntax: {text:?}"))
}

fn parse_number(text: &str) -> Option<Number> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let body = body.replace('_', "");
    let lower = body.to_ascii_lowercase();
    let radix_int = |digits: &str, radix: u32| i64::from_str_radix(digits, radix).ok();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        radix_int(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        radix_int(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        radix_int(b, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit()) {
        radix_int(&lower[1..], 8)
    } else if !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_digit()) {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Some(Number::Int(if neg { -i } else { i }));
    }
    let first = lower.bytes().next()?;
    if !(first.is_ascii_digit() || first == b'.') || lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    Some(Number::Float(if neg { -f } else { f }))
}

// ---------------------------------------------------------------------------------------
// Parsing.

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(usize, Pipeline),
    If {
        line: usize,
        pipe: Pipeline,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    With {
        line: usize,
        pipe: Pipeline,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Range {
        line: usize,
        pipe: Pipeline,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    /// `{{template "name" pipeline}}`.
    Call {
        line: usize,
        name: String,
        pipe: Option<Pipeline>,
    },
    /// `{{break}}` inside a `range` body.
    Break,
    /// `{{continue}}` inside a `range` body.
    Continue,
}

/// A pending `{{break}}` or `{{continue}}` unwinding to its `range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Break,
    Continue,
}

#[derive(Clone, Debug)]
struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) with the pipeline's result.
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug)]
enum Arg {
    Func(String),
    /// A field chain on dot: `.A.B`.
    Field(Vec<String>),
    Dot,
    /// A variable and a field chain on it: `$labels.instance`.
    Var(String, Vec<String>),
    Const(Val),
    Nil,
    /// A parenthesised pipeline and a field chain on its result.
    Pipe(Box<Pipeline>, Vec<String>),
}

enum ListEnd {
    Eof,
    End(usize),
    /// `{{else}}` (no tokens) or `{{else if ...}}`/`{{else with ...}}` (the tokens after
    /// `else`).
    Else(usize, Vec<Token>),
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
    vars: Vec<String>,
    depth: usize,
    /// How many `range` bodies enclose the current position (for `break`/`continue`).
    range_depth: usize,
    defines: BTreeMap<String, Vec<Node>>,
}

type ParseResult<T> = Result<T, (usize, String)>;

impl Parser {
    /// Parses nodes until EOF, `{{end}}` or `{{else}}`.
    fn list(&mut self) -> ParseResult<(Vec<Node>, ListEnd)> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let item = self.items[self.pos].clone();
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action { line, toks } => {
                    let first = toks.first().map(|t| t.tok.clone());
                    match first {
                        None => return Err((line, "missing value for command".to_owned())),
                        Some(Tok::Ident(kw)) => match kw.as_str() {
                            "end" => {
                                if toks.len() > 1 {
                                    return Err((line, "unexpected token in end".to_owned()));
                                }
                                return Ok((nodes, ListEnd::End(line)));
                            }
                            "else" => return Ok((nodes, ListEnd::Else(line, toks[1..].to_vec()))),
                            "if" | "with" | "range" => nodes.push(self.control(&kw, line, &toks[1..])?),
                            "define" | "block" => nodes.extend(self.define(&kw, line, &toks[1..])?),
                            "template" => {
                                let (name, rest) = template_name(line, "template", &toks[1..])?;
                                let pipe = if rest.is_empty() { None } else { Some(self.pipeline(line, rest, false)?) };
                                nodes.push(Node::Call { line, name, pipe });
                            }
                            "break" | "continue" => {
                                if self.range_depth == 0 {
                                    return Err((line, format!("{{{{{kw}}}}} outside {{{{range}}}}")));
                                }
                                if toks.len() > 1 {
                                    return Err((line, format!("unexpected token in {{{{{kw}}}}}")));
                                }
                                nodes.push(if kw == "break" { Node::Break } else { Node::Continue });
                            }
                            _ => nodes.push(Node::Action(line, self.pipeline(line, &toks, false)?)),
                        },
                        Some(_) => nodes.push(Node::Action(line, self.pipeline(line, &toks, false)?)),
                    }
                }
            }
        }
        Ok((nodes, ListEnd::Eof))
    }

    /// `{{define "name"}}...{{end}}` (top level only) or `{{block "name" pipeline}}...{{end}}`
    /// (a definition plus a call). The body sees only `$`, as in Go.
    fn define(&mut self, kw: &str, line: usize, toks: &[Token]) -> ParseResult<Option<Node>> {
        if kw == "define" && self.depth > 0 {
            return Err((line, "unexpected <define> in command".to_owned()));
        }
        let (name, rest) = template_name(line, kw, toks)?;
        let call = if kw == "block" {
            let pipe = if rest.is_empty() { None } else { Some(self.pipeline(line, rest, false)?) };
            Some(Node::Call { line, name: name.clone(), pipe })
        } else if !rest.is_empty() {
            return Err((line, "unexpected token in define clause".to_owned()));
        } else {
            None
        };
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((line, "template nesting too deep".to_owned()));
        }
        let outer = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let outer_range = std::mem::take(&mut self.range_depth);
        let body = self.list();
        self.vars = outer;
        self.range_depth = outer_range;
        let (body, end) = body?;
        self.depth -= 1;
        match end {
            ListEnd::End(_) => {}
            ListEnd::Eof => return Err((line, "unexpected EOF".to_owned())),
            ListEnd::Else(l, _) => return Err((l, "unexpected {{else}}".to_owned())),
        }
        self.defines.insert(name, body);
        Ok(call)
    }

    fn control(&mut self, kw: &str, line: usize, toks: &[Token]) -> ParseResult<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((line, "template nesting too deep".to_owned()));
        }
        let scope = self.vars.len();
        let pipe = self.pipeline(line, toks, kw == "range")?;
        if pipe.cmds.is_empty() {
            return Err((line, format!("missing value for {kw}")));
        }
        let in_range = usize::from(kw == "range");
        self.range_depth += in_range;
        let then = self.list();
        self.range_depth -= in_range;
        let (then, end) = then?;
        let els = match end {
            ListEnd::Eof => return Err((line, "unexpected EOF".to_owned())),
            ListEnd::End(_) => Vec::new(),
            ListEnd::Else(eline, rest) if rest.is_empty() => {
                // Variables of the `then` branch go out of scope; those of the pipeline stay.
                let (els, end) = self.list()?;
                match end {
                    ListEnd::End(_) => els,
                    ListEnd::Eof => return Err((eline, "unexpected EOF".to_owned())),
                    ListEnd::Else(l, _) => return Err((l, "expected end; found {{else}}".to_owned())),
                }
            }
            ListEnd::Else(eline, rest) => {
                // `{{else if ...}}` / `{{else with ...}}`: a nested block sharing our `end`.
                match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(k)) if (k == "if" || k == "with") && k == kw => {
                        let k = k.clone();
                        vec![self.control(&k, eline, &rest[1..])?]
                    }
                    _ => return Err((eline, "unexpected token in else".to_owned())),
                }
            }
        };
        self.vars.truncate(scope);
        self.depth -= 1;
        Ok(match kw {
            "if" => Node::If { line, pipe, then, els },
            "with" => Node::With { line, pipe, then, els },
            _ => Node::Range { line, pipe, body: then, els },
        })
    }

    fn pipeline(&mut self, line: usize, toks: &[Token], range: bool) -> ParseResult<Pipeline> {
        let mut i = 0;
        let mut decl = Vec::new();
        let mut assign = false;
        // Declarations: `$x :=`, `$x =`, and in range `$k, $v :=`.
        if let Some(Tok::Var(v)) = toks.first().map(|t| &t.tok) {
            match toks.get(1).map(|t| &t.tok) {
                Some(Tok::Declare) => {
                    decl.push(v.clone());
                    i = 2;
                }
                Some(Tok::Assign) => {
                    // Go checks assignments when executing, not when parsing.
                    decl.push(v.clone());
                    assign = true;
                    i = 2;
                }
                Some(Tok::Comma) if range => match (toks.get(2).map(|t| &t.tok), toks.get(3).map(|t| &t.tok)) {
                    (Some(Tok::Var(v2)), Some(Tok::Declare)) => {
                        decl.push(v.clone());
                        decl.push(v2.clone());
                        i = 4;
                    }
                    _ => return Err((line, "range can only initialize variables".to_owned())),
                },
                _ => {}
            }
        }
        let (cmds, used) = self.commands(line, &toks[i..])?;
        if i + used != toks.len() {
            return Err((line, "unexpected \")\" in command".to_owned()));
        }
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipeline { decl, assign, cmds })
    }

    /// Parses `cmd | cmd ...` up to a `)` or the end; returns the tokens used.
    fn commands(&mut self, line: usize, toks: &[Token]) -> ParseResult<(Vec<Vec<Arg>>, usize)> {
        let mut cmds: Vec<Vec<Arg>> = Vec::new();
        let mut cur: Vec<Arg> = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i].tok {
                Tok::RParen => break,
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err((line, "unexpected \"|\" in command".to_owned()));
                    }
                    cmds.push(std::mem::take(&mut cur));
                    i += 1;
                }
                _ => {
                    if !cur.is_empty() && !toks[i].spaced && !matches!(toks[i].tok, Tok::LParen) {
                        return Err((line, format!("unexpected {} in operand", tok_text(&toks[i].tok))));
                    }
                    let (arg, used) = self.operand(line, &toks[i..])?;
                    cur.push(arg);
                    i += used;
                }
            }
        }
        if cur.is_empty() {
            if !cmds.is_empty() {
                return Err((line, "missing command".to_owned()));
            }
        } else {
            cmds.push(cur);
        }
        for (n, c) in cmds.iter().enumerate().skip(1) {
            if !matches!(c.first(), Some(Arg::Func(_))) {
                return Err((line, format!("non executable command in pipeline stage {}", n + 1)));
            }
        }
        Ok((cmds, i))
    }

    fn operand(&mut self, line: usize, toks: &[Token]) -> ParseResult<(Arg, usize)> {
        let mut used = 1;
        let arg = match &toks[0].tok {
            Tok::Ident(name) => match name.as_str() {
                "true" => Arg::Const(Val::Bool(true)),
                "false" => Arg::Const(Val::Bool(false)),
                "nil" => Arg::Nil,
                n if FUNCS.contains(&n) => Arg::Func(n.to_owned()),
                n => return Err((line, format!("function {n:?} not defined"))),
            },
            Tok::Dot => Arg::Dot,
            Tok::Field(f) => {
                let mut chain = vec![f.clone()];
                used += self.chain(toks, &mut chain);
                return Ok((Arg::Field(chain), used));
            }
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return Err((line, format!("undefined variable {v:?}")));
                }
                let mut chain = Vec::new();
                used += self.chain(toks, &mut chain);
                return Ok((Arg::Var(v.clone(), chain), used));
            }
            Tok::Str(s) => Arg::Const(Val::Str(s.clone())),
            Tok::Char(c) => Arg::Const(Val::Int(*c as i64)),
            Tok::Num(Number::Int(i)) => Arg::Const(Val::Int(*i)),
            Tok::Num(Number::Float(f)) => Arg::Const(Val::Float(*f)),
            Tok::LParen => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err((line, "template nesting too deep".to_owned()));
                }
                let (cmds, n) = self.commands(line, &toks[1..])?;
                self.depth -= 1;
                if !matches!(toks.get(1 + n).map(|t| &t.tok), Some(Tok::RParen)) {
                    return Err((line, "unclosed left paren".to_owned()));
                }
                if cmds.is_empty() {
                    return Err((line, "missing value for parenthesized pipeline".to_owned()));
                }
                used = n + 2;
                let mut chain = Vec::new();
                used += self.chain(&toks[used - 1..], &mut chain);
                Arg::Pipe(Box::new(Pipeline { decl: Vec::new(), assign: false, cmds }), chain)
            }
            t => return Err((line, format!("unexpected {} in command", tok_text(t)))),
        };
        Ok((arg, used))
    }

    /// Appends the fields directly following `toks[0]` (no space) to `chain`.
    fn chain(&self, toks: &[Token], chain: &mut Vec<String>) -> usize {
        let mut n = 0;
        while let Some(Token { tok: Tok::Field(f), spaced: false }) = toks.get(1 + n) {
            chain.push(f.clone());
            n += 1;
        }
        n
    }
}

/// The quoted name after `template`, `define` or `block`, and the tokens after it.
fn template_name<'t>(line: usize, kw: &str, toks: &'t [Token]) -> ParseResult<(String, &'t [Token])> {
    match toks.first().map(|t| &t.tok) {
        Some(Tok::Str(name)) => Ok((name.clone(), &toks[1..])),
        _ => Err((line, format!("unexpected token in {kw} clause"))),
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("<{s}>"),
        Tok::Field(s) => format!("<.{s}>"),
        Tok::Dot => "<.>".to_owned(),
        Tok::Var(s) => format!("<{s}>"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Num(Number::Int(i)) => i.to_string(),
        Tok::Num(Number::Float(f)) => go_v(*f),
        Tok::Char(c) => format!("{c:?}"),
        Tok::Pipe => "<|>".to_owned(),
        Tok::LParen => "<(>".to_owned(),
        Tok::RParen => "<)>".to_owned(),
        Tok::Declare => "<:=>".to_owned(),
        Tok::Assign => "<=>".to_owned(),
        Tok::Comma => "<,>".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Values and execution.

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Map(Rc<BTreeMap<String, String>>),
    /// The template data (`.` at the top, `$`).
    Root(Rc<RootData>),
    Nil,
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Bool(_) => "bool",
            Val::Map(_) => "map[string]string",
            Val::Root(_) => "*template.Data",
            Val::Nil => "<nil>",
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Bool(b) => *b,
            Val::Map(m) => !m.is_empty(),
            Val::Root(_) => true,
            Val::Nil => false,
        }
    }

    /// Go's `fmt.Sprint` of the value.
    fn print(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => go_v(*f),
            Val::Bool(b) => b.to_string(),
            Val::Map(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", parts.join(" "))
            }
            // Go prints the data struct's fields in order, space-separated, in braces.
            Val::Root(r) => format!(
                "{{{} {} {} {}}}",
                Val::Map(r.labels.clone()).print(),
                Val::Map(r.external_labels.clone()).print(),
                r.external_url,
                go_v(r.value)
            ),
            Val::Nil => "<nil>".to_owned(),
        }
    }
}

/// The data a template runs against, as Prometheus' template data struct holds it.
#[derive(Debug)]
struct RootData {
    labels: Rc<BTreeMap<String, String>>,
    external_labels: Rc<BTreeMap<String, String>>,
    external_url: String,
    value: f64,
}

type ExecResult<T> = Result<T, (usize, String)>;

struct Exec<'a> {
    name: &'a str,
    main: &'a [Node],
    defines: &'a BTreeMap<String, Vec<Node>>,
    /// Nesting of `{{template}}` calls.
    depth: usize,
    /// Nesting of node lists and pipelines (see [`Exec::enter`]).
    nest: usize,
    /// The line of the last action entered, for errors raised between actions.
    last_line: usize,
    /// Set by `{{break}}`/`{{continue}}`; node lists stop until the enclosing `range`
    /// consumes it.
    flow: Option<Flow>,
    data: &'a TemplateData<'a>,
    vars: Vec<(String, Val)>,
    out: String,
    steps: usize,
    labels: Rc<BTreeMap<String, String>>,
    external_labels: Rc<BTreeMap<String, String>>,
}

impl Exec<'_> {
    fn step(&mut self, line: usize) -> ExecResult<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err((line, format!("executing {:?}: too many steps (limit {MAX_STEPS})", self.name)));
        }
        Ok(())
    }

    fn emit(&mut self, line: usize, s: &str) -> ExecResult<()> {
        if self.out.len() + s.len() > MAX_OUTPUT_BYTES {
            return Err((line, format!("executing {:?}: output exceeds {MAX_OUTPUT_BYTES} bytes", self.name)));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn list(&mut self, nodes: &[Node], dot: &Val) -> ExecResult<()> {
        self.enter(0)?;
        let mut r = Ok(());
        for n in nodes {
            r = self.node(n, dot);
            if r.is_err() || self.flow.is_some() {
                break;
            }
        }
        self.nest -= 1;
        r
    }

    /// Counts one more level of execution nesting (blocks, parentheses, template calls
    /// combined), so that no template can exhaust the stack.
    fn enter(&mut self, line: usize) -> ExecResult<()> {
        let line = if line == 0 { self.last_line } else { line };
        self.last_line = line;
        if self.nest >= MAX_EXEC_NESTING {
            return Err((line, self.exec_err(&format!("nesting deeper than {MAX_EXEC_NESTING} levels"))));
        }
        self.nest += 1;
        Ok(())
    }

    fn node(&mut self, n: &Node, dot: &Val) -> ExecResult<()> {
        match n {
            Node::Text(t) => {
                self.step(0)?;
                self.emit(0, t)
            }
            Node::Action(line, pipe) => {
                let v = self.pipeline(*line, pipe, dot)?;
                if pipe.decl.is_empty() {
                    // Go prints a nil action result as "<no value>" (but `print nil` as "<nil>").
                    let s = if matches!(v, Val::Nil) { "<no value>".to_owned() } else { v.print() };
                    self.emit(*line, &s)?;
                }
                Ok(())
            }
            Node::If { line, pipe, then, els } | Node::With { line, pipe, then, els } => {
                let scope = self.vars.len();
                let v = self.pipeline(*line, pipe, dot)?;
                let is_with = matches!(n, Node::With { .. });
                let r = if v.truthy() {
                    let inner = self.vars.len();
                    let new_dot = if is_with { v } else { dot.clone() };
                    let r = self.list(then, &new_dot);
                    self.vars.truncate(inner);
                    r
                } else {
                    self.list(els, dot)
                };
                self.vars.truncate(scope);
                r
            }
            Node::Break => {
                self.flow = Some(Flow::Break);
                Ok(())
            }
            Node::Continue => {
                self.flow = Some(Flow::Continue);
                Ok(())
            }
            Node::Call { line, name, pipe } => {
                let arg = match pipe {
                    Some(p) => self.pipeline(*line, p, dot)?,
                    None => Val::Nil,
                };
                let nodes: &[Node] = match self.defines.get(name) {
                    Some(n) => n,
                    None if name == self.name => self.main,
                    None => return Err((*line, self.exec_err(&format!("no such template {name:?}")))),
                };
                if self.depth >= MAX_DEPTH {
                    return Err((*line, self.exec_err(&format!("exceeded maximum template depth ({MAX_DEPTH})"))));
                }
                self.depth += 1;
                let outer = std::mem::replace(&mut self.vars, vec![("$".to_owned(), arg.clone())]);
                let r = self.list(nodes, &arg);
                self.vars = outer;
                self.depth -= 1;
                r
            }
            Node::Range { line, pipe, body, els } => {
                let scope = self.vars.len();
                // Evaluate without declaring: range binds its variables per element.
                let plain = Pipeline { decl: Vec::new(), assign: false, cmds: pipe.cmds.clone() };
                let v = self.pipeline(*line, &plain, dot)?;
                let count = match &v {
                    Val::Map(m) => m.len(),
                    Val::Int(n) if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
                    Val::Nil => 0,
                    other => {
                        return Err((*line, self.exec_err(&format!("range can't iterate over {}", other.print()))));
                    }
                };
                if count == 0 {
                    let r = self.list(els, dot);
                    self.vars.truncate(scope);
                    return r;
                }
                // Elements are produced one at a time; each iteration is a step, so a huge
                // count fails on the step limit without allocating.
                let map = if let Val::Map(m) = &v { Some(m.clone()) } else { None };
                let mut entries = map.as_ref().map(|m| m.iter());
                for i in 0..count {
                    self.step(*line)?;
                    let (k, v) = match entries.as_mut() {
                        Some(it) => match it.next() {
                            Some((k, v)) => (Val::Str(k.clone()), Val::Str(v.clone())),
                            None => break,
                        },
                        None => (Val::Int(i as i64), Val::Int(i as i64)),
                    };
                    let inner = self.vars.len();
                    match pipe.decl.as_slice() {
                        [one] => self.vars.push((one.clone(), v.clone())),
                        [a, b] => {
                            self.vars.push((a.clone(), k));
                            self.vars.push((b.clone(), v.clone()));
                        }
                        _ => {}
                    }
                    let r = self.list(body, &v);
                    self.vars.truncate(inner);
                    r?;
                    if self.flow.take() == Some(Flow::Break) {
                        break;
                    }
                }
                self.vars.truncate(scope);
                Ok(())
            }
        }
    }

    fn exec_err(&self, msg: &str) -> String {
        format!("executing {:?}: {msg}", self.name)
    }

    fn pipeline(&mut self, line: usize, p: &Pipeline, dot: &Val) -> ExecResult<Val> {
        self.enter(line)?;
        let r = self.pipeline_inner(line, p, dot);
        self.nest -= 1;
        r
    }

    fn pipeline_inner(&mut self, line: usize, p: &Pipeline, dot: &Val) -> ExecResult<Val> {
        let mut last: Option<Val> = None;
        for cmd in &p.cmds {
            self.step(line)?;
            last = Some(self.command(line, cmd, dot, last)?);
        }
        let v = last.unwrap_or(Val::Nil);
        if p.assign {
            if let Some(name) = p.decl.first() {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return Err((line, self.exec_err(&format!("undefined variable: {name}")))),
                }
            }
        } else if let [name] = p.decl.as_slice() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn command(&mut self, line: usize, cmd: &[Arg], dot: &Val, piped: Option<Val>) -> ExecResult<Val> {
        let Some(first) = cmd.first() else { return Ok(Val::Nil) };
        if let Arg::Func(name) = first {
            // `and`/`or` short-circuit, so they take unevaluated arguments.
            if name == "and" || name == "or" {
                let want = name == "or";
                let n = cmd.len() - 1 + usize::from(piped.is_some());
                if n == 0 {
                    return Err((
                        line,
                        self.exec_err(&format!("wrong number of args for {name}: want at least 1 got 0")),
                    ));
                }
                let mut v = Val::Nil;
                for a in &cmd[1..] {
                    v = self.arg(line, a, dot)?;
                    if v.truthy() == want {
                        return Ok(v);
                    }
                }
                if let Some(p) = piped {
                    v = p;
                }
                return Ok(v);
            }
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.arg(line, a, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return exec_func(name, &args, self.data)
                .map_err(|e| (line, self.exec_err(&format!("error calling {name}: {e}"))));
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err((line, self.exec_err("can't give argument to non-function")));
        }
        if matches!(first, Arg::Nil) {
            return Err((line, self.exec_err("nil is not a command")));
        }
        self.arg(line, first, dot)
    }

    fn arg(&mut self, line: usize, a: &Arg, dot: &Val) -> ExecResult<Val> {
        match a {
            Arg::Func(name) => exec_func(name, &[], self.data)
                .map_err(|e| (line, self.exec_err(&format!("error calling {name}: {e}")))),
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(Val::Nil),
            Arg::Const(v) => Ok(v.clone()),
            Arg::Field(chain) => self.fields(line, dot.clone(), chain),
            Arg::Var(name, chain) => {
                let v = self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let v = v.ok_or_else(|| (line, self.exec_err(&format!("undefined variable: {name}"))))?;
                self.fields(line, v, chain)
            }
            Arg::Pipe(p, chain) => {
                let v = self.pipeline(line, p, dot)?;
                self.fields(line, v, chain)
            }
        }
    }

    fn fields(&self, line: usize, mut v: Val, chain: &[String]) -> ExecResult<Val> {
        for f in chain {
            v = match &v {
                Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
                Val::Root(_) => match f.as_str() {
                    "Labels" => Val::Map(self.labels.clone()),
                    "ExternalLabels" => Val::Map(self.external_labels.clone()),
                    "ExternalURL" => Val::Str(self.data.external_url.to_owned()),
                    "Value" => Val::Float(self.data.value),
                    _ => {
                        return Err((
                            line,
                            self.exec_err(&format!(
                                "can't evaluate field {f} in type struct {{ Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {{}} }}"
                            )),
                        ));
                    }
                },
                Val::Nil => return Err((line, self.exec_err(&format!("nil pointer evaluating interface {{}}.{f}")))),
                other => {
                    return Err((
                        line,
                        self.exec_err(&format!("can't evaluate field {f} in type {}", other.type_name())),
                    ));
                }
            };
        }
        Ok(v)
    }
}

fn want_args(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("wrong number of args for {name}: want {n} got {}", args.len()));
    }
    Ok(())
}

fn to_float(v: &Val) -> Result<f64, String> {
    match v {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => go_parse_float(s).ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn go_parse_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(['+', '-']);
    let lower = t.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    if !special && !lower.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn to_str(name: &str, v: &Val) -> Result<String, String> {
    match v {
        Val::Str(s) => Ok(s.clone()),
        other => Err(format!("wrong type for value; expected string; got {} (in {name})", other.type_name())),
    }
}

fn exec_func(name: &str, args: &[Val], data: &TemplateData<'_>) -> Result<Val, String> {
    let s1 = |i: usize| to_str(name, &args[i]);
    match name {
        "humanize" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(humanize(to_float(&args[0])?)))
        }
        "humanize1024" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(humanize1024(to_float(&args[0])?)))
        }
        "humanizeDuration" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(humanize_duration(to_float(&args[0])?)))
        }
        "humanizePercentage" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(format!("{}%", go_fmt_g(to_float(&args[0])? * 100.0, 4))))
        }
        "humanizeTimestamp" => {
            want_args(name, args, 1)?;
            humanize_timestamp(to_float(&args[0])?).map(Val::Str)
        }
        "toTime" => {
            // Prometheus returns a time.Time; we return its printed form (methods on it are
            // not supported).
            want_args(name, args, 1)?;
            let v = to_float(&args[0])?;
            if !v.is_finite() {
                return Err("value is NaN or Inf".to_owned());
            }
            humanize_timestamp(v).map(Val::Str)
        }
        "toDuration" => {
            want_args(name, args, 1)?;
            let v = to_float(&args[0])?;
            let ns = v * 1e9;
            if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
                return Err(format!("{} cannot be represented as a duration", go_v(v)));
            }
            Ok(Val::Str(go_duration(ns as i64)))
        }
        "toUpper" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(simple_case(&s1(0)?, true)))
        }
        "toLower" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(simple_case(&s1(0)?, false)))
        }
        "title" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(title(&s1(0)?)))
        }
        "safeHtml" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(s1(0)?))
        }
        "match" => {
            want_args(name, args, 2)?;
            let re = regex::Regex::new(&s1(0)?).map_err(|e| e.to_string())?;
            Ok(Val::Bool(re.is_match(&s1(1)?)))
        }
        "reReplaceAll" => {
            want_args(name, args, 3)?;
            let re = regex::Regex::new(&s1(0)?).map_err(|e| e.to_string())?;
            Ok(Val::Str(re.replace_all(&s1(2)?, s1(1)?.as_str()).into_owned()))
        }
        "stripPort" => {
            want_args(name, args, 1)?;
            Ok(Val::Str(strip_port(&s1(0)?)))
        }
        "stripDomain" => {
            want_args(name, args, 1)?;
            let hp = s1(0)?;
            let (host, port) = split_host_port(&hp).unwrap_or((hp.as_str(), None));
            if host.parse::<std::net::IpAddr>().is_ok() {
                return Ok(Val::Str(hp.clone()));
            }
            let short = host.split('.').next().unwrap_or(host);
            Ok(Val::Str(match port {
                Some(p) => format!("{short}:{p}"),
                None => short.to_owned(),
            }))
        }
        "parseDuration" => {
            want_args(name, args, 1)?;
            let ms = crate::rulefile::parse_duration(&s1(0)?)?;
            Ok(Val::Float(ms as f64 / 1000.0))
        }
        "externalURL" => {
            want_args(name, args, 0)?;
            Ok(Val::Str(data.external_url.to_owned()))
        }
        "pathPrefix" => {
            want_args(name, args, 0)?;
            let u = data.external_url;
            let after_scheme = u.find("://").map(|i| &u[i + 3..]).unwrap_or(u);
            Ok(Val::Str(after_scheme.find('/').map(|i| after_scheme[i..].to_owned()).unwrap_or_default()))
        }
        "graphLink" | "tableLink" => {
            want_args(name, args, 1)?;
            let tab = if name == "graphLink" { 0 } else { 1 };
            Ok(Val::Str(format!("/graph?g0.expr={}&g0.tab={tab}", query_escape(&s1(0)?))))
        }
        "urlquery" | "urlQueryEscape" => Ok(Val::Str(query_escape(&go_sprint(args)))),
        "html" => Ok(Val::Str(html_escape(&go_sprint(args)))),
        "js" => Ok(Val::Str(js_escape(&go_sprint(args)))),
        "print" => Ok(Val::Str(go_sprint(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(Val::print).collect();
            Ok(Val::Str(parts.join(" ") + "\n"))
        }
        "printf" => {
            let Some(f) = args.first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".to_owned());
            };
            Ok(Val::Str(go_sprintf(&to_str(name, f)?, &args[1..])))
        }
        "len" => {
            want_args(name, args, 1)?;
            match &args[0] {
                Val::Str(s) => Ok(Val::Int(s.len() as i64)),
                Val::Map(m) => Ok(Val::Int(m.len() as i64)),
                other => Err(format!("len of type {}", other.type_name())),
            }
        }
        "index" => {
            let Some(first) = args.first() else {
                return Err("wrong number of args for index: want at least 1 got 0".to_owned());
            };
            let mut v = first.clone();
            for key in &args[1..] {
                v = match (&v, key) {
                    (Val::Map(m), Val::Str(k)) => Val::Str(m.get(k).cloned().unwrap_or_default()),
                    (Val::Map(_), k) => return Err(format!("value has type {}; should be string", k.type_name())),
                    (Val::Str(s), Val::Int(i)) => match usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i)) {
                        Some(b) => Val::Int(i64::from(*b)),
                        None => return Err(format!("index out of range: {i}")),
                    },
                    (Val::Nil, _) => return Err("index of untyped nil".to_owned()),
                    (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
                };
            }
            Ok(v)
        }
        "not" => {
            want_args(name, args, 1)?;
            Ok(Val::Bool(!args[0].truthy()))
        }
        "eq" => {
            let Some((a, rest)) = args.split_first() else { return Err("missing argument for comparison".to_owned()) };
            if rest.is_empty() {
                return Err("missing argument for comparison".to_owned());
            }
            for b in rest {
                if compare(a, b)? == Some(std::cmp::Ordering::Equal) {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want_args(name, args, 2)?;
            let ord = compare(&args[0], &args[1])?;
            if name != "ne" && matches!(args[0], Val::Bool(_) | Val::Map(_)) {
                return Err("invalid type for comparison".to_owned());
            }
            use std::cmp::Ordering::*;
            Ok(Val::Bool(match name {
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                _ => matches!(ord, Some(Greater | Equal)),
            }))
        }
        other => Err(format!("function {other:?} is not supported")),
    }
}

/// Go template comparison: same basic kind only (ints with ints, floats with floats,
/// strings with strings, bools with bools); `None` when unordered (NaN).
fn compare(a: &Val, b: &Val) -> Result<Option<std::cmp::Ordering>, String> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(Some(x.cmp(y))),
        (Val::Float(x), Val::Float(y)) => Ok(x.partial_cmp(y)),
        (Val::Str(x), Val::Str(y)) => Ok(Some(x.cmp(y))),
        (Val::Bool(x), Val::Bool(y)) => Ok(Some(x.cmp(y))),
        (Val::Map(_), _) | (_, Val::Map(_)) | (Val::Root(_), _) | (_, Val::Root(_)) => {
            Err("non-comparable type".to_owned())
        }
        (Val::Nil, Val::Nil) => Ok(Some(std::cmp::Ordering::Equal)),
        _ => Err("incompatible types for comparison".to_owned()),
    }
}

fn go_sprint(args: &[Val]) -> String {
    // Sprint adds a space between operands when neither is a string.
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.print());
    }
    out
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = rest[end + 1..].strip_prefix(':');
        return Some((&rest[..end], port));
    }
    match s.rfind(':') {
        Some(i) if !s[..i].contains(':') => Some((&s[..i], Some(&s[i + 1..]))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

fn strip_port(s: &str) -> String {
    match split_host_port(s) {
        Some((host, Some(_))) => host.to_owned(),
        _ => s.to_owned(),
    }
}

/// Go's `strings.ToUpper`/`ToLower`: per-character simple case mapping (a character whose
/// mapping is several characters, like `ß`, is kept).
fn simple_case(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            let mut m: Vec<char> = if upper { c.to_uppercase().collect() } else { c.to_lowercase().collect() };
            if m.len() == 1 { m.pop().unwrap_or(c) } else { c }
        })
        .collect()
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word, where words
/// are separated by anything but letters, digits and `_`.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Number formatting as Go's fmt does it.

/// Go's `%v` of a float64: strconv's 'g' format with the shortest round-trip digits, in
/// exponent form when the decimal exponent is < -4 or >= 6 (`123456`, `1.234567e+06`).
/// Also how PromQL annotations print numbers (`crate::promql::functions`).
pub(crate) fn go_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".to_owned() } else { "0".to_owned() };
    }
    // Shortest round-trip digits.
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        return format!("{sign}{first}{frac}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    format!("{sign}{}", place_point(&digits, exp))
}

/// Writes `digits` (d.ddd × 10^exp) in plain decimal notation.
fn place_point(digits: &str, exp: i32) -> String {
    let nd = digits.len() as i32;
    if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= nd {
        format!("{digits}{}", "0".repeat((exp + 1 - nd) as usize))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    }
}

/// Go's `%.<prec>g` (as used by Prometheus' humanize functions with `%.4g`).
fn go_fmt_g(f: f64, prec: usize) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() };
    }
    let p = prec.max(1);
    let e = format!("{:.*e}", p - 1, f);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let m = trim_frac_zeros(mant);
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    trim_frac_zeros(&format!("{f:.decimals$}")).to_owned()
}

fn trim_frac_zeros(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

fn go_fmt_e(f: f64, prec: usize, upper: bool) -> String {
    if !f.is_finite() {
        return go_v(f);
    }
    let e = format!("{:.*e}", prec, f);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}{}{}{:02}", if upper { 'E' } else { 'e' }, if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_fmt_g(v, 4);
    }
    let mut v = v;
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", go_fmt_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", go_fmt_g(v, 4))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_fmt_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_fmt_g(v, 4))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_fmt_g(v, 4);
    }
    if v == 0.0 {
        return "0s".to_owned();
    }
    if v.abs() < 1.0 {
        let mut v = v;
        let mut prefix = "";
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
        return format!("{}{prefix}s", go_fmt_g(v, 4));
    }
    let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
    let total = if v >= 9.2e18 { i64::MAX } else { v as i64 };
    let seconds = total % 60;
    let minutes = (total / 60) % 60;
    let hours = (total / 3600) % 24;
    let days = total / 86_400;
    if days != 0 {
        return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
    }
    if hours != 0 {
        return format!("{sign}{hours}h {minutes}m {seconds}s");
    }
    if minutes != 0 {
        return format!("{sign}{minutes}m {seconds}s");
    }
    format!("{sign}{}s", go_fmt_g(v, 4))
}

/// Go's `time.Duration.String()` of `ns` nanoseconds (`1h2m3.5s`, `1.5s`, `100ms`, `0s`).
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, prec: u32| -> String {
        let p = 10u64.pow(prec);
        let f = format!("{:0width$}", v % p, width = prec as usize);
        let f = f.trim_end_matches('0');
        if f.is_empty() { (v / p).to_string() } else { format!("{}.{f}", v / p) }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let secs = frac(u % 60_000_000_000, 9);
    let minutes = (u / 60_000_000_000) % 60;
    let hours = u / 3_600_000_000_000;
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// Unix seconds → Go's `time.Time.String()` in UTC, to millisecond precision
/// (`2015-06-23 13:19:44.128 +0000 UTC`).
fn humanize_timestamp(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Ok(go_fmt_g(v, 4));
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!("{} cannot be represented as a nanoseconds timestamp since it overflows int64", go_v(v)));
    }
    let ms = (ns as i64) / 1_000_000;
    Ok(format_time_ms(ms))
}

/// Formats a millisecond Unix timestamp as Go's `time.Time.String()` in UTC.
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", sod / 3600, (sod / 60) % 60, sod % 60);
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar. Also
/// used by PromQL's date functions.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---------------------------------------------------------------------------------------
// printf.

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q %x %X %t %c %%`,
/// with flags `-+ 0#`, width and precision. Mismatched or missing operands print as Go
/// does (`%!d(string=x)`, `%!d(MISSING)`, `%!(EXTRA type=value)`).
fn go_sprintf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut argi = 0;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space, mut sharp) = (false, false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<usize> {
            if chars.peek() == Some(&'*') {
                chars.next();
                let v = match args.get(argi) {
                    Some(Val::Int(i)) => usize::try_from(*i).ok().map(|v| v.min(10_000)),
                    _ => None,
                };
                argi += 1;
                return v;
            }
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some((n.unwrap_or(0) * 10 + d as usize).min(10_000));
                chars.next();
            }
            n
        };
        let width = num(&mut chars);
        let prec = if chars.peek() == Some(&'.') {
            chars.next();
            Some(num(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        let bad = || format!("%!{verb}({}={})", arg.type_name(), arg.print());
        // Explicit `+` or ` ` flags for numbers that print without a sign.
        let sign = |s: String| -> String {
            if s.starts_with(['-', '+']) {
                s
            } else if plus {
                format!("+{s}")
            } else if space {
                format!(" {s}")
            } else {
                s
            }
        };
        let body: String = match (verb, arg) {
            ('v', Val::Float(f)) => sign(go_v(*f)),
            ('v', v) | ('s', v @ (Val::Str(_) | Val::Map(_))) => {
                let s = v.print();
                match prec {
                    Some(p) if matches!(v, Val::Str(_)) => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            ('d', Val::Int(i)) => sign(i.to_string()),
            ('f' | 'F', Val::Float(f)) => {
                sign(if f.is_finite() { format!("{:.*}", prec.unwrap_or(6), f) } else { go_v(*f) })
            }
            ('e' | 'E', Val::Float(f)) => sign(go_fmt_e(*f, prec.unwrap_or(6), verb == 'E')),
            ('g' | 'G', Val::Float(f)) => {
                let s = sign(match prec {
                    Some(p) => go_fmt_g(*f, p),
                    None => go_v(*f),
                });
                if verb == 'G' { s.replace('e', "E").replace("Inf", "INF").replace("NaN", "NAN") } else { s }
            }
            ('x' | 'X', Val::Float(f)) => {
                let s = sign(go_hex_float(*f));
                if verb == 'X' { s.to_uppercase() } else { s }
            }
            ('q', Val::Str(s)) => go_quote(s),
            ('x' | 'X', Val::Str(s)) => {
                let mut h = String::new();
                for b in s.bytes() {
                    let _ = if verb == 'x' { write!(h, "{b:02x}") } else { write!(h, "{b:02X}") };
                }
                if sharp { format!("0{verb}{h}") } else { h }
            }
            ('x' | 'X' | 'o', Val::Int(i)) => {
                let abs = i.unsigned_abs();
                let digits = match verb {
                    'x' => format!("{abs:x}"),
                    'X' => format!("{abs:X}"),
                    _ => format!("{abs:o}"),
                };
                let prefix = match (sharp, verb) {
                    (true, 'x') => "0x",
                    (true, 'X') => "0X",
                    (true, _) => "0",
                    _ => "",
                };
                sign(format!("{}{prefix}{digits}", if *i < 0 { "-" } else { "" }))
            }
            ('q', Val::Int(i)) => go_quote_rune(*i),
            ('c', Val::Int(i)) => u32::try_from(*i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}').to_string(),
            ('t', Val::Bool(b)) => b.to_string(),
            _ => bad(),
        };
        let w = width.unwrap_or(0);
        let len = body.chars().count();
        if len >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', w - len));
        } else if zero
            && matches!(arg, Val::Int(_) | Val::Float(_))
            && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'v' | 'x' | 'X')
        {
            let (sgn, digits) = match body.strip_prefix(['-', '+', ' ']) {
                Some(rest) => (&body[..1], rest),
                None => ("", body.as_str()),
            };
            out.push_str(sgn);
            out.extend(std::iter::repeat_n('0', w - len));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', w - len));
            out.push_str(&body);
        }
        if out.len() > MAX_OUTPUT_BYTES {
            break;
        }
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[argi..].iter().map(|a| format!("{}={}", a.type_name(), a.print())).collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// Go's `%x` of a float64: hexadecimal mantissa and binary exponent (`-0x1.ap+01`).
fn go_hex_float(f: f64) -> String {
    if !f.is_finite() {
        return go_v(f);
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0x0p+00");
    }
    let bits = f.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        // Subnormal: normalise so the leading bit is the implicit one.
        exp = -1022;
        while mant & (1u64 << 52) == 0 {
            mant <<= 1;
            exp -= 1;
        }
        mant &= (1u64 << 52) - 1;
    } else {
        exp -= 1023;
    }
    let frac = format!("{mant:013x}");
    let frac = frac.trim_end_matches('0');
    let dot = if frac.is_empty() { String::new() } else { format!(".{frac}") };
    format!("{sign}0x1{dot}p{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `%q` of an integer: a quoted character literal.
fn go_quote_rune(i: i64) -> String {
    let c = u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
    match c {
        '\'' => "'\\''".to_owned(),
        '\\' => "'\\\\'".to_owned(),
        '\n' => "'\\n'".to_owned(),
        '\t' => "'\\t'".to_owned(),
        '\r' => "'\\r'".to_owned(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

/// Go's `strconv.Quote` (close enough for printable text: escapes `"`, `\` and controls).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_with(labels: &Labels, value: f64) -> TemplateData<'_> {
        static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
        TemplateData {
            labels,
            value,
            external_labels: EMPTY.get_or_init(|| Labels::from_pairs(&[("cluster", "eu1")])),
            external_url: "http://warden.example:9464/prefix",
        }
    }

    fn render(text: &str, value: f64) -> String {
        let labels = Labels::from_pairs(&[("instance", "host:9100"), ("job", "node"), ("a", "aa bb CC")]);
        expand(text, &data_with(&labels, value))
    }

    fn check(text: &str, value: f64, want: &str) {
        assert_eq!(render(text, value), want, "template {text:?} value {value}");
    }

    #[test]
    fn variables_and_fields() {
        check("{{ $labels.instance }} of {{ $labels.job }}", 0.0, "host:9100 of node");
        check("{{ .Labels.job }}/{{ $externalLabels.cluster }}/{{ .ExternalLabels.cluster }}", 0.0, "node/eu1/eu1");
        check(
            "{{ $externalURL }}|{{ .ExternalURL }}",
            0.0,
            "http://warden.example:9464/prefix|http://warden.example:9464/prefix",
        );
        check("[{{ $labels.missing }}]", 0.0, "[]");
        check("{{ $value }} {{ .Value }}", 2.5, "2.5 2.5");
        check("{{ $.Labels.job }}", 0.0, "node");
        check("{{ $labels }}", 0.0, "map[a:aa bb CC instance:host:9100 job:node]");
    }

    #[test]
    fn value_prints_like_go() {
        check("{{ $value }}", 1234567.0, "1.234567e+06");
        check("{{ $value }}", 123456.0, "123456");
        check("{{ $value }}", 100000000000000000000.0, "1e+20");
        check("{{ $value }}", 1e21, "1e+21");
        check("{{ $value }}", 0.0001, "0.0001");
        check("{{ $value }}", 0.00001, "1e-05");
        check("{{ $value }}", f64::NAN, "NaN");
        check("{{ $value }}", f64::INFINITY, "+Inf");
        check("{{ $value }}", -3.0, "-3");
        check("{{ 42 }} {{ 1.50 }} {{ true }} {{ \"s\" }} {{ 'a' }}", 0.0, "42 1.5 true s 97");
    }

    #[test]
    fn humanize_functions() {
        check("{{ humanize 1234567 }}", 0.0, "1.235M");
        check("{{ humanize $value }}", 1234567.0, "1.235M");
        check("{{ $value | humanize }}", 0.001234, "1.234m");
        check("{{ humanize 0 }}", 0.0, "0");
        check("{{ humanize 999 }}", 0.0, "999");
        check("{{ humanize 1000 }}", 0.0, "1k");
        check("{{ humanize \"2048\" }}", 0.0, "2.048k");
        check("{{ humanize1024 1048576 }}", 0.0, "1Mi");
        check("{{ humanize1024 1024 }}", 0.0, "1ki");
        check("{{ humanize1024 512 }}", 0.0, "512");
        check("{{ humanizeDuration 90 }}", 0.0, "1m 30s");
        check("{{ humanizeDuration 899.99 }}", 0.0, "14m 59s");
        check("{{ humanizeDuration 3600 }}", 0.0, "1h 0m 0s");
        check("{{ humanizeDuration 93784 }}", 0.0, "1d 2h 3m 4s");
        check("{{ humanizeDuration 1.5 }}", 0.0, "1.5s");
        check("{{ humanizeDuration 0.1 }}", 0.0, "100ms");
        check("{{ humanizeDuration 0.000001 }}", 0.0, "1us");
        check("{{ humanizeDuration 0 }}", 0.0, "0s");
        check("{{ humanizeDuration -90 }}", 0.0, "-1m 30s");
        check("{{ humanizePercentage 0.1234 }}", 0.0, "12.34%");
        check("{{ humanizePercentage 0.1234567 }}", 0.0, "12.35%");
        check("{{ humanizePercentage $value }}", 1.0, "100%");
        check("{{ humanizeTimestamp 1435065584.128 }}", 0.0, "2015-06-23 13:19:44.128 +0000 UTC");
        check("{{ $value | humanizeTimestamp }}", 1435065584.0, "2015-06-23 13:19:44 +0000 UTC");
        check("{{ humanizeTimestamp 0 }}", 0.0, "1970-01-01 00:00:00 +0000 UTC");
        check("{{ humanize $value }}", f64::INFINITY, "+Inf");
        check("{{ toTime 1435065584.128 }}", 0.0, "2015-06-23 13:19:44.128 +0000 UTC");
        check("{{ toDuration 90 }}|{{ toDuration 1.5 }}|{{ toDuration 0.1 }}", 0.0, "1m30s|1.5s|100ms");
        check("{{ toDuration 3600 }}|{{ toDuration 0 }}|{{ toDuration -0.0000015 }}", 0.0, "1h0m0s|0s|-1.5µs");
    }

    #[test]
    fn string_functions() {
        check("{{ $labels.a | title }}", 0.0, "Aa Bb CC");
        check("{{ $labels.a | toUpper }}", 0.0, "AA BB CC");
        check("{{ $labels.a | toLower }}", 0.0, "aa bb cc");
        check("{{ reReplaceAll \"host:(.*)\" \"my.domain:$1\" $labels.instance }}", 0.0, "my.domain:9100");
        check("{{ match \"h.st\" $labels.instance }}", 0.0, "true");
        check("{{ if match \"^x\" $labels.instance }}y{{ else }}n{{ end }}", 0.0, "n");
        check("{{ stripPort $labels.instance }}", 0.0, "host");
        check("{{ stripDomain \"a.b.c:80\" }}", 0.0, "a:80");
        check("{{ index $labels \"job\" }}{{ len $labels }}", 0.0, "node3");
        check("{{ graphLink \"up == 0\" }}", 0.0, "/graph?g0.expr=up+%3D%3D+0&g0.tab=0");
        check("{{ pathPrefix }}", 0.0, "/prefix");
        check("{{ parseDuration \"1m30s\" }}", 0.0, "90");
        check("{{ print 1 2 \"a\" \"b\" }}", 0.0, "1 2ab");
        check("{{ html \"<a&b>\" }}", 0.0, "&lt;a&amp;b&gt;");
    }

    #[test]
    fn printf_verbs() {
        check("{{ printf \"%.2f\" $value }}", 1.23456, "1.23");
        check("{{ printf \"%.0f%%\" $value }}", 99.5, "100%");
        check("{{ printf \"%s=%d\" \"a\" 5 }}", 0.0, "a=5");
        check("{{ printf \"%v|%g|%e\" $value $value $value }}", 1234567.0, "1.234567e+06|1.234567e+06|1.234567e+06");
        check("{{ printf \"%q\" \"a\\\"b\" }}", 0.0, "\"a\\\"b\"");
        check("{{ printf \"%x %X\" 255 \"hi\" }}", 0.0, "ff 6869");
        check("{{ printf \"%5d|%-5d|%05d\" 42 42 42 }}", 0.0, "   42|42   |00042");
        check("{{ printf \"%d\" $value }}", 1.5, "%!d(float64=1.5)");
        check("{{ printf \"%d %d\" 1 }}", 0.0, "1 %!d(MISSING)");
        check("{{ printf \"%d\" 1 2 }}", 0.0, "1%!(EXTRA int=2)");
        check("{{ printf \"%.3g\" 1234.5 }}", 0.0, "1.23e+03");
        check("{{ $value | printf \"%.1f\" }}", 2.25, "2.2");
    }

    #[test]
    fn control_flow() {
        check("{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}", 90.0, "high");
        check("{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}", 60.0, "mid");
        check("{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}", 10.0, "low");
        check("{{ if eq $labels.job \"node\" \"x\" }}yes{{ end }}", 0.0, "yes");
        check("{{ if and $labels.job (not $labels.nope) }}ok{{ end }}", 0.0, "ok");
        check("{{ or $labels.nope \"default\" }}", 0.0, "default");
        check("{{ with $labels.job }}job={{ . }}{{ else }}none{{ end }}", 0.0, "job=node");
        check("{{ with $labels.nope }}x{{ else }}none{{ end }}", 0.0, "none");
        check(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0,
            "a=aa bb CC;instance=host:9100;job=node;",
        );
        check("{{ range $externalLabels }}{{ . }}{{ end }}", 0.0, "eu1");
        check("{{ range $i := 3 }}{{ $i }}{{ end }}", 0.0, "012");
        check(
            "{{ range $i := 5 }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if eq $i 3 }}{{ break }}{{ end }}{{ $i }}{{ end }}.",
            0.0,
            "02.",
        );
        check("{{ range $k, $v := $labels }}{{ range 2 }}{{ break }}x{{ end }}{{ $k }}{{ end }}", 0.0, "ainstancejob");
        assert!(Template::parse("{{ break }}").unwrap_err().contains("{{break}} outside {{range}}"));
        assert!(Template::parse("{{ range 2 }}{{ else }}{{ continue }}{{ end }}").is_err());
        assert!(Template::parse("{{ range 2 }}{{ define \"x\" }}{{ break }}{{ end }}{{ end }}").is_err());
        assert!(render("{{ range 1000000000000 }}{{ end }}", 0.0).contains("too many steps"));
        check("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", 0.0, "2");
        check("{{ $v := printf \"%.1f\" $value }}v={{ $v }}", 1.26, "v=1.3");
        check("{{/* a comment */}}x", 0.0, "x");
        check("a  {{- /* c */ -}}  b", 0.0, "ab");
        check("a \n {{- $labels.job -}} \n b", 0.0, "anodeb");
        check("{{ ($labels).job }}", 0.0, "node");
        check("{{ (printf \"%s\" \"x\") | toUpper }}", 0.0, "X");
    }

    #[test]
    fn define_template_block() {
        check("{{ define \"j\" }}[{{ . }}]{{ end }}a{{ template \"j\" $labels.job }}b", 0.0, "a[node]b");
        check("{{ template \"j\" }}{{ define \"j\" }}x{{ . }}{{ end }}", 0.0, "x<no value>");
        check("{{ block \"b\" $labels.job }}<{{ . }}>{{ end }}", 0.0, "<node>");
        check("{{ define \"v\" }}{{ $ }}{{ end }}{{ template \"v\" 2 }}", 0.0, "2");
        assert!(render("{{ template \"nope\" }}", 0.0).contains("no such template \"nope\""));
        // Recursion is bounded.
        let e = expand_named(
            "t",
            "{{ define \"r\" }}{{ template \"r\" }}{{ end }}{{ template \"r\" }}",
            &data_with(&Labels::empty(), 0.0),
        );
        assert!(e.contains("exceeded maximum template depth"), "{e}");
        let e = expand_named("t", "x{{ template \"t\" }}", &data_with(&Labels::empty(), 0.0));
        assert!(e.contains("exceeded maximum template depth"), "{e}");
    }

    #[test]
    fn errors_expand_to_message() {
        let e = render("{{ $label.foo }}", 0.0);
        assert_eq!(e, "<error expanding template: template: template:1: undefined variable \"$label\">");
        let e = Template::parse_named("__alert_X", "line\n{{ $nope }}").unwrap_err();
        assert_eq!(e, "template: __alert_X:2: undefined variable \"$nope\"");
        assert!(Template::parse("{{ nofunc 1 }}").unwrap_err().contains("function \"nofunc\" not defined"));
        assert!(Template::parse("{{ $labels.q * 100 }}").unwrap_err().contains("unexpected \"*\" in operand"));
        assert!(Template::parse("{{ if true }}x").unwrap_err().contains("unexpected EOF"));
        assert!(Template::parse("{{ end }}").unwrap_err().contains("unexpected {{end}}"));
        assert!(Template::parse("{{ else }}").unwrap_err().contains("unexpected {{else}}"));
        assert!(Template::parse("{{ $labels.job ").unwrap_err().contains("unclosed action"));
        assert!(Template::parse("{{ \"abc }}").unwrap_err().contains("unterminated quoted string"));
        assert!(Template::parse("{{ (1 }}").unwrap_err().contains("unclosed left paren"));
        assert!(Template::parse("{{ 1 | 2 }}").unwrap_err().contains("non executable command"));
        assert!(Template::parse("{{ if true }}{{ define \"x\" }}{{ end }}{{ end }}").is_err());
        assert!(
            Template::parse("{{ define \"x\" }}{{ $labels }}{{ end }}").unwrap_err().contains("undefined variable")
        );
        // Execution errors.
        let e = render("{{ gt $value 80 }}", 90.0);
        assert!(e.starts_with("<error expanding template: template: template:1: executing"), "{e}");
        assert!(e.contains("incompatible types for comparison"), "{e}");
        assert!(render("{{ .Nope }}", 0.0).contains("can't evaluate field Nope"));
        assert!(render("{{ humanize \"abc\" }}", 0.0).contains("error calling humanize"));
        assert!(render("{{ reReplaceAll \"(\" \"x\" \"y\" }}", 0.0).contains("error calling reReplaceAll"));
        assert!(render("{{ query \"up\" }}", 0.0).contains("not supported"));
        // Defined Prometheus functions parse even when not executable here.
        assert!(Template::parse("{{ query \"up\" | first | value }}").is_ok());
    }

    #[test]
    fn bounded() {
        let deep = "{{ if true }}".repeat(200) + &"{{ end }}".repeat(200);
        assert!(Template::parse(&deep).unwrap_err().contains("too deep"));
        let parens = format!("{{{{ {}1{} }}}}", "(".repeat(500), ")".repeat(500));
        assert!(Template::parse(&parens).is_err());
        // Nested ranges multiply; the output cap stops them.
        let labels: Labels =
            Labels::from_pairs(&(0..50).map(|i| (format!("l{i}"), "x".repeat(100))).collect::<Vec<_>>());
        let text = "{{ range $labels }}{{ range $labels }}{{ range $labels }}{{ . }}{{ end }}{{ end }}{{ end }}";
        let out = expand(text, &data_with(&labels, 0.0));
        assert!(
            out.starts_with("<error expanding template:") && out.contains("output exceeds"),
            "{}",
            &out[..100.min(out.len())]
        );
        // Hostile bytes never panic.
        for s in [
            "{{",
            "}}",
            "{{-",
            "{{- -}}",
            "{{/*",
            "{{ 'ab' }}",
            "{{ \"\\x\" }}",
            "{{ . . }}",
            "{{ $ }}",
            "{{ 0x }}",
            "{{ 1e }}",
            "\u{0}{{\u{0}}}",
        ] {
            let _ = Template::parse(s);
            let _ = render(s, 1.0);
        }
    }

    #[test]
    fn printf_more_verbs_match_go() {
        // Expected outputs produced by Go's fmt (go1.19) for the same calls.
        check("{{ printf \"%G|%x|%X\" $value $value $value }}", -3.25, "-3.25|-0x1.ap+01|-0X1.AP+01");
        check("{{ printf \"%x\" $value }}", 5e-324, "0x1p-1074");
        check("{{ printf \"%#x|%o|%q\" 255 8 42 }}", 0.0, "0xff|10|'*'");
        check("{{ printf \"%+d|% d|%+.1f\" 5 5 $value }}", 2.25, "+5| 5|+2.2");
        check("{{ printf \"%s\" $labels }}", 0.0, "map[a:aa bb CC instance:host:9100 job:node]");
        check("{{ printf \"%8.2f|%-8.2f|%08.3f\" $value $value $value }}", -3.25, "   -3.25|-3.25   |-003.250");
        check("{{ printf \"%.2s|%5.1s|\" \"hello\" \"hello\" }}", 0.0, "he|    h|");
        check("{{ printf \"%*d|%.*f\" 5 3 2 3.14159 }}", 0.0, "    3|3.14");
        check("{{ js \"a'b<c>\" }}", 0.0, "a\\'b\\u003Cc\\u003E");
        check(
            "{{ . }}",
            1.0,
            "{map[a:aa bb CC instance:host:9100 job:node] map[cluster:eu1] http://warden.example:9464/prefix 1}",
        );
        assert!(render("{{ nil }}", 0.0).contains("nil is not a command"));
        assert!(render("{{ $x = 1 }}", 0.0).contains("undefined variable: $x"));
        check("{{ toUpper \"straße\" }}", 0.0, "STRAßE");
    }

    #[test]
    fn random_input_never_panics() {
        // A small deterministic generator over the characters templates care about.
        let alphabet: Vec<char> =
            "{{}}-$.|()\"'`\\ \n\tabif elsendrangewith:=,0123456789e+*/labels value humanize printf %"
                .chars()
                .collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let labels = Labels::from_pairs(&[("job", "x")]);
        for _ in 0..20_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let len = (state >> 58) as usize;
            let mut t = String::new();
            for _ in 0..len {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                t.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            let out = expand(&t, &data_with(&labels, 1.5));
            assert!(out.len() <= MAX_OUTPUT_BYTES + 200);
        }
    }

    #[test]
    fn nesting_is_bounded_to_protect_the_stack() {
        // Recursion through {{template}} multiplies nesting; the executor's own counter
        // stops it well within a 1 MiB thread stack, even in a debug build.
        let cases = [
            format!(
                "{{{{ define \"r\" }}}}{}{{{{ template \"r\" (((1))) }}}}{}{{{{ end }}}}{{{{ template \"r\" }}}}",
                "{{ if true }}".repeat(45),
                "{{ end }}".repeat(45)
            ),
            format!(
                "{{{{ define \"q\" }}}}{}{{{{ template \"q\" }}}}{}{{{{ end }}}}{{{{ template \"q\" }}}}",
                "{{ range 1 }}{{ with 1 }}".repeat(24),
                "{{ end }}{{ end }}".repeat(24)
            ),
        ];
        for text in cases {
            let out = std::thread::Builder::new()
                .stack_size(1024 * 1024)
                .spawn(move || render(&text, 0.0))
                .unwrap()
                .join()
                .unwrap();
            assert!(out.contains("nesting deeper than 64 levels"), "{out}");
        }
    }

    #[test]
    fn go_float_formats() {
        assert_eq!(go_fmt_g(1234.5678, 4), "1235");
        assert_eq!(go_fmt_g(12.0, 4), "12");
        assert_eq!(go_fmt_g(100000.0, 4), "1e+05");
        assert_eq!(go_fmt_g(0.00001234, 4), "1.234e-05");
        assert_eq!(go_fmt_g(9.99999, 4), "10");
        assert_eq!(go_v(0.1), "0.1");
        assert_eq!(go_v(1e6), "1e+06");
        assert_eq!(go_v(123456789.0), "1.23456789e+08");
        assert_eq!(format_time_ms(-1), "1969-12-31 23:59:59.999 +0000 UTC");
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29 00:00:00 +0000 UTC");
    }
}
