//! Repository descriptions: Markdown rendered to HTML, since descriptions come from
//! users, in two steps: HTML written into the Markdown is shown as text (escaped, never
//! interpreted), and the result is sanitized with ammonia, which drops what Markdown
//! itself can produce but a page must not have (`javascript:` links, say).

use pulldown_cmark::{Event, Options, Parser, html};

pub fn render(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut unsafe_html = String::with_capacity(markdown.len() * 3 / 2);
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    html::push_html(&mut unsafe_html, events);
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&unsafe_html)
        .to_string()
}

/// The first line of a description as plain text, for listings.
pub fn summary(markdown: &str) -> String {
    let line = markdown
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let mut summary: String = line.chars().take(160).collect();
    if line.chars().count() > 160 {
        summary.push('…');
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered() {
        let html = render("# Title\n\nSome *emphasis* and `code`.\n\n- one\n- two");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>emphasis</em>"));
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains("<li>one</li>"));
    }

    #[test]
    fn html_in_markdown_is_shown_as_text() {
        let html = render(
            "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n\
             text <a href=\"javascript:alert(4)\">x</a>\n\n\
             <iframe src=\"https://evil.example\"></iframe><style>body{}</style>",
        );
        for bad in ["<script", "<img", "<a ", "<iframe", "<style"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
    }

    #[test]
    fn script_links_are_removed() {
        let html = render("[click](javascript:alert(3)) [data](data:text/html,x)");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(html.contains("click"), "{html}");
    }

    #[test]
    fn links_do_not_leak_the_opener() {
        let html = render("[site](https://example.com)");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(html.contains("noopener"), "{html}");
    }

    #[test]
    fn summary_is_the_first_line() {
        assert_eq!(summary("\n# The UI\n\nmore"), "The UI");
        assert_eq!(summary(""), "");
        assert_eq!(summary(&"x".repeat(200)).chars().count(), 161);
    }
}
