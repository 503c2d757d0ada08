//! A strict parser of Prometheus text format 0.0.4 ([`PromText`]), so tests
//! check `/metrics` without a crate and read values by name and labels.

use std::collections::{HashMap, HashSet};

/// A series' labels as `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// One sample line: `name{label="value",…} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name && labels.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// A scrape of Prometheus text format 0.0.4, checked strictly by
/// [`PromText::parse`].
#[derive(Clone, Debug, Default)]
pub struct PromText {
    pub samples: Vec<Sample>,
    /// Family name → `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value: a decimal float, `+Inf`, `-Inf` or `NaN`.
fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => return Some(f64::INFINITY),
        "-Inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    // Rust also reads "inf", "infinity" and "nan" in any case: not Prometheus.
    let plain = s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !plain || s.is_empty() {
        return None;
    }
    s.parse().ok()
}

/// Labels inside `{…}` (without the braces): `a="x",b="y"`, optional
/// trailing comma, values escaped with `\\`, `\"` and `\n` only.
fn parse_labels(src: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut rest = src;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(labels);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("label without `=` in {{{src}}}"))?;
        let name = rest[..eq].trim_end_matches(' ');
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?} in {{{src}}}"));
        }
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name:?} repeated in {{{src}}}"));
        }
        rest = rest[eq + 1..].trim_start_matches(' ');
        let (value, end) = read_label_value(rest, name, src)?;
        labels.push((name.to_string(), value));
        rest = rest[end + 1..].trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(labels);
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("expected `,` after label {name:?} in {{{src}}}"))?;
    }
}

/// The quoted value at the start of `rest` (label `name` of `{src}`),
/// unescaped, and the index of its closing quote.
fn read_label_value(rest: &str, name: &str, src: &str) -> Result<(String, usize), String> {
    let mut chars = rest.char_indices();
    if chars.next().map(|(_, c)| c) != Some('"') {
        return Err(format!("label {name:?} value is not quoted in {{{src}}}"));
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, i)),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('\\') => value.push('\\'),
                Some('"') => value.push('"'),
                Some('n') => value.push('\n'),
                other => {
                    return Err(format!(
                        "bad escape \\{} in label {name:?} of {{{src}}}",
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            },
            '\n' => return Err(format!("raw newline in label {name:?}")),
            c => value.push(c),
        }
    }
    Err(format!("unterminated value of label {name:?} in {{{src}}}"))
}

/// The index of the `}` closing a label set: the first outside a quoted
/// value.
fn closing_brace(body: &str) -> Option<usize> {
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// Splits `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or_else(|| "a sample line without a value".to_string())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        let body = &line[name_end + 1..];
        let close = closing_brace(body).ok_or_else(|| "unclosed `{`".to_string())?;
        (parse_labels(&body[..close])?, &body[close + 1..])
    } else {
        (Vec::new(), &line[name_end..])
    };
    if !rest.starts_with([' ', '\t']) {
        return Err("no blank between the series and its value".into());
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let value = match fields.as_slice() {
        [v] => *v,
        [v, ts] => {
            ts.parse::<i64>()
                .map_err(|_| format!("timestamp {ts:?} is not integer milliseconds"))?;
            *v
        }
        _ => return Err(format!("expected `value [timestamp]`, got {rest:?}")),
    };
    let value = parse_prom_float(value).ok_or_else(|| format!("value {value:?} is not a float"))?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

impl PromText {
    /// Parses `text` strictly: `# HELP name text`, `# TYPE name type` (once
    /// per family, before its samples), other comments, blank lines, and
    /// samples with a float value; each family's lines form one group; no
    /// series appears twice; counters are non-negative; a histogram's
    /// buckets carry `le`, grow with it, end at `+Inf` and agree with
    /// `_count`. The error names the offending line.
    pub fn parse(text: &str) -> Result<PromText, String> {
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the text does not end with a newline".into());
        }
        let mut out = PromText::default();
        let mut groups = FamilyGroups::default();
        let mut seen_series: HashSet<String> = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if line.trim().is_empty() {
                continue;
            }
            let family = match line.strip_prefix('#') {
                Some(comment) => out.read_comment(comment),
                None => out.read_sample(line, &mut seen_series).map(Some),
            }
            .map_err(at)?;
            if let Some(family) = family {
                groups.enter(family).map_err(at)?;
            }
        }
        out.check_histograms()?;
        Ok(out)
    }

    /// A comment line (after its `#`): `HELP` and `TYPE` are recorded and
    /// answer their family; any other comment answers `None`.
    fn read_comment(&mut self, comment: &str) -> Result<Option<String>, String> {
        let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
        match words.as_slice() {
            ["HELP", name, ..] | ["TYPE", name, ..] if !is_metric_name(name) => {
                Err(format!("bad metric name {name:?}"))
            }
            ["HELP", name, help] => self.read_help(name, help).map(Some),
            ["HELP", name] => {
                self.help.insert(name.to_string(), String::new());
                Ok(Some(name.to_string()))
            }
            ["TYPE", name, kind] => self.read_type(name, kind).map(Some),
            ["TYPE", ..] => Err("TYPE without a type".into()),
            _ => Ok(None),
        }
    }

    /// `# HELP name help`: escapes only `\\` and `\n`, once per family.
    fn read_help(&mut self, name: &str, help: &str) -> Result<String, String> {
        let mut chars = help.chars();
        while let Some(c) = chars.next() {
            if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                return Err("a HELP text escapes something but \\\\ or \\n".into());
            }
        }
        if self
            .help
            .insert(name.to_string(), help.to_string())
            .is_some()
        {
            return Err(format!("second HELP for {name}"));
        }
        Ok(name.to_string())
    }

    /// `# TYPE name kind`: a known kind, once per family, before its samples.
    fn read_type(&mut self, name: &str, kind: &str) -> Result<String, String> {
        if !matches!(
            kind,
            "counter" | "gauge" | "histogram" | "summary" | "untyped"
        ) {
            return Err(format!("unknown type {kind:?}"));
        }
        if self
            .types
            .insert(name.to_string(), kind.to_string())
            .is_some()
        {
            return Err(format!("second TYPE for {name}"));
        }
        if self
            .samples
            .iter()
            .any(|s| family_name(&self.types, &s.name) == name)
        {
            return Err(format!("TYPE of {name} after its samples"));
        }
        Ok(name.to_string())
    }

    /// A sample line, recorded unless its series was `seen` already or it
    /// is a negative counter; answers its family.
    fn read_sample(&mut self, line: &str, seen: &mut HashSet<String>) -> Result<String, String> {
        let sample = parse_sample(line)?;
        let family = family_name(&self.types, &sample.name);
        if self.types.get(&family).map(String::as_str) == Some("counter")
            && (sample.value.is_nan() || sample.value < 0.0)
        {
            return Err("a counter is negative or NaN".into());
        }
        let mut key_labels = sample.labels.clone();
        key_labels.sort();
        if !seen.insert(format!("{}{key_labels:?}", sample.name)) {
            return Err("the same series twice".into());
        }
        self.samples.push(sample);
        Ok(family)
    }

    fn check_histograms(&self) -> Result<(), String> {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let bucket = format!("{family}_bucket");
            for (key, buckets) in self.bucket_groups(&bucket)? {
                self.check_histogram_series(family, &key, buckets)?;
            }
        }
        Ok(())
    }

    /// The `bucket` samples by series (labels without `le`, sorted) as
    /// `(le, value)` pairs.
    fn bucket_groups(&self, bucket: &str) -> Result<HashMap<Labels, Vec<(f64, f64)>>, String> {
        let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let le = s
                .label("le")
                .ok_or_else(|| format!("{bucket} sample without `le`: {s:?}"))?;
            let le = parse_prom_float(le).ok_or_else(|| format!("{bucket} le {le:?}"))?;
            let mut key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect();
            key.sort();
            groups.entry(key).or_default().push((le, s.value));
        }
        Ok(groups)
    }

    /// One histogram series: buckets grow with `le`, end at `+Inf`, and the
    /// last agrees with `_count`; `_sum` is there.
    fn check_histogram_series(
        &self,
        family: &str,
        key: &Labels,
        mut buckets: Vec<(f64, f64)>,
    ) -> Result<(), String> {
        let (bucket, count, sum) = (
            format!("{family}_bucket"),
            format!("{family}_count"),
            format!("{family}_sum"),
        );
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{bucket}{key:?}: buckets shrink: {buckets:?}"));
        }
        let last = buckets.last().expect("a group has a bucket");
        if last.0 != f64::INFINITY {
            return Err(format!("{bucket}{key:?} has no le=\"+Inf\" bucket"));
        }
        let labels: Vec<(&str, &str)> = key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let counted = self.value(&count, &labels);
        if counted != Some(last.1) {
            return Err(format!(
                "{count}{key:?} is {counted:?} but the +Inf bucket holds {}",
                last.1
            ));
        }
        if self.value(&sum, &labels).is_none() {
            return Err(format!("{sum}{key:?} is missing"));
        }
        Ok(())
    }

    /// The samples named `name` carrying every label in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.matches(name, labels))
    }

    /// The value of the one series named `name` with exactly these labels
    /// (ignoring `node`); `None` when absent. Panics when several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .find(name, labels)
            .filter(|s| {
                s.labels
                    .iter()
                    .all(|(k, _)| k == "node" || labels.iter().any(|(l, _)| l == k))
            })
            .collect();
        match found.as_slice() {
            [] => None,
            [one] => Some(one.value),
            many => panic!("{} series match {name}{labels:?}: {many:?}", many.len()),
        }
    }

    /// The sum over every series named `name` carrying `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|s| s.value).sum()
    }
}

/// The family a sample belongs to: its name, or the histogram/summary whose
/// `_bucket`, `_sum` or `_count` it is.
fn family_name(types: &HashMap<String, String>, sample: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && let Some(kind) = types.get(base)
            && (kind == "histogram" || (kind == "summary" && suffix != "_bucket"))
        {
            return base.to_string();
        }
    }
    sample.to_string()
}

/// Which families' lines came so far: each family's lines must form one
/// group.
#[derive(Default)]
struct FamilyGroups {
    current: Option<String>,
    closed: HashSet<String>,
}

impl FamilyGroups {
    /// A line of `family`: an error when its group was closed already.
    fn enter(&mut self, family: String) -> Result<(), String> {
        if self.current.as_deref() == Some(family.as_str()) {
            return Ok(());
        }
        if self.closed.contains(&family) {
            return Err(format!("the lines of {family} are not one group"));
        }
        if let Some(prev) = self.current.replace(family) {
            self.closed.insert(prev);
        }
        Ok(())
    }
}
