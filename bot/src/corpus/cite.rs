//! Citations for one submission: BibTeX and CITATION.cff. Miner text (the title,
//! the login) is escaped for each format, so a crafted rationale cannot break out
//! of its field.

use super::query::Submission;

/// Who to credit: the GitHub login, else the hotkey.
fn author(s: &Submission) -> String {
    let who = s.summary.github_login.as_deref().or(s.summary.hotkey.as_deref());
    who.unwrap_or("anonymous miner").to_string()
}

/// What the judge found, in one sentence of numbers.
fn finding(s: &Submission) -> String {
    let mut note = format!("Verdict: {}", s.summary.class);
    if let Some(bpb) = s.summary.challenger_bpb {
        note.push_str(&format!("; hidden-eval {bpb:.4} bits per byte"));
    }
    if let (Some(gain), Some(king)) = (s.summary.gain, &s.summary.king_tag) {
        note.push_str(&format!(" (gain {gain:+.4} over {king})"));
    }
    if let Some(tag) = &s.released_as {
        note.push_str(&format!("; released as {tag}"));
    }
    if let Some(d) = &s.summary.bundle_digest {
        note.push_str(&format!("; bundle sha256 {d}"));
    }
    note
}

fn url(s: &Submission, base: &str) -> String {
    format!("{}/submissions/{}", base.trim_end_matches('/'), s.summary.id)
}

/// BibTeX: specials escaped, braces dropped (they could close the field).
fn bib(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '{' | '}' => {}
            '\\' => out.push_str("\\textbackslash "),
            '%' | '&' | '$' | '#' | '_' => {
                out.push('\\');
                out.push(c);
            }
            '^' => out.push_str("\\^{}"),
            '~' => out.push_str("\\~{}"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn bibtex(s: &Submission, base: &str) -> String {
    let t = &s.summary;
    let (year, month) = (&t.judged_at[..4], &t.judged_at[5..7]);
    format!(
        "@misc{{karpa-{id},\n  title = {{{{{title}}}}},\n  author = {{{author}}},\n  year = {{{year}}},\n  \
         month = {{{month}}},\n  howpublished = {{Karpa corpus, {repo} pull request {pr}}},\n  \
         note = {{{note}}},\n  url = {{{url}}}\n}}\n",
        id = t.id,
        title = bib(&t.title),
        author = bib(&author(s)),
        repo = bib(&t.repo),
        pr = t.pr,
        note = bib(&finding(s)),
        url = url(s, base),
    )
}

/// A YAML double-quoted scalar (JSON's string syntax is a subset of it).
fn yaml(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

pub fn cff(s: &Submission, base: &str) -> String {
    let t = &s.summary;
    let mut out = format!(
        "cff-version: 1.2.0\nmessage: \"If you use this result, please cite it as below.\"\ntype: dataset\n\
         title: {title}\nauthors:\n  - alias: {author}\ndate-released: \"{date}\"\nurl: {url}\n\
         identifiers:\n  - type: other\n    value: {id}\n    description: \"Karpa submission id\"\n",
        title = yaml(&t.title),
        author = yaml(&author(s)),
        date = &t.judged_at[..10],
        url = yaml(&url(s, base)),
        id = yaml(&t.id),
    );
    if let Some(d) = &t.bundle_digest {
        out.push_str(&format!(
            "  - type: other\n    value: {}\n    description: \"sha256 of the proof bundle's manifest\"\n",
            yaml(d)
        ));
    }
    out.push_str(&format!("abstract: {}\n", yaml(&finding(s))));
    out
}
