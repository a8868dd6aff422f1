//! Miner text made safe to show: markdown sanitised, diffs escaped and coloured
//! by line, links only to http(s).

use maud::{html, Markup, PreEscaped};

/// Lines of a diff shown on a page; the API and the export carry the whole diff.
const DIFF_LINES: usize = 4000;

/// The rationale as HTML: markdown rendered, then cleaned by ammonia (scripts,
/// event handlers, `javascript:` links and images are removed).
pub fn markdown(text: &str) -> Markup {
    let mut html = String::new();
    let parser = pulldown_cmark::Parser::new_ext(text, pulldown_cmark::Options::ENABLE_TABLES);
    pulldown_cmark::html::push_html(&mut html, parser);
    let clean =
        ammonia::Builder::default().rm_tags(["img"]).link_rel(Some("nofollow noopener noreferrer")).clean(&html);
    PreEscaped(clean.to_string())
}

/// A unified diff with each line classed (added, removed, hunk header, file header).
pub fn diff(text: &str) -> Markup {
    let lines: Vec<&str> = text.lines().collect();
    html! {
        pre.diff {
            @for line in lines.iter().take(DIFF_LINES) {
                @let class = line_class(line);
                span class=(class) { (line) }
            }
            @if lines.len() > DIFF_LINES {
                span.meta { "… " (lines.len() - DIFF_LINES) " more lines (the API has the whole diff)" }
            }
        }
    }
}

fn line_class(line: &str) -> &'static str {
    if line.starts_with("+++") || line.starts_with("---") || line.starts_with("diff ") || line.starts_with("index ") {
        "meta"
    } else if line.starts_with("@@") {
        "hunk"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else {
        "ctx"
    }
}

/// A URL worth linking to: http(s) only, so a crafted locator cannot become a
/// `javascript:` link.
pub fn safe_link(url: &str) -> Option<&str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(url)
}

pub fn badge(class: &str) -> Markup {
    html! { span class={ "badge " (class) } { (class.replace('-', " ")) } }
}

pub fn bpb(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())
}

pub fn signed(x: Option<f64>) -> String {
    x.map(|v| format!("{v:+.4}")).unwrap_or_else(|| "—".into())
}

pub fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_markdown_is_neutralised() {
        let evil = "# Hi\n<script>alert(1)</script>\n[x](javascript:alert(2)) <img src=x onerror=alert(3)>\n\
                    <a href=\"https://example.org\" onclick=\"alert(4)\">ok</a>";
        let html = super::markdown(evil).into_string();
        for bad in ["<script", "javascript:", "onerror", "onclick", "<img"] {
            assert!(!html.contains(bad), "{bad} survived: {html}");
        }
        assert!(html.contains("<h1>Hi</h1>") && html.contains("https://example.org"), "{html}");
        let diff = super::diff("+<script>x</script>\n-a\n@@ -1 +1 @@").into_string();
        assert!(diff.contains("&lt;script&gt;") && diff.contains("class=\"add\"") && diff.contains("class=\"hunk\""));
        assert_eq!(super::safe_link("JavaScript:alert(1)"), None);
        assert_eq!(super::safe_link("https://b.example/x"), Some("https://b.example/x"));
    }
}
