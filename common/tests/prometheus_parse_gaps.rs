//! Why headroom has its own exposition parser: prometheus-parse 0.2.5 (the
//! benchmark peer, a dev-dependency only) gets valid input wrong. Each test
//! asserts its *current* wrong output next to ours, so if prometheus-parse is
//! fixed these tests fail and the claim in the README must be revisited.

use headroom_common::prom;
use prometheus_parse::{Scrape, Value};

fn theirs(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("prometheus-parse never errors")
}

fn their_label<'s>(scrape: &'s Scrape, metric: &str, label: &str) -> Option<&'s str> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric)
        .and_then(|s| s.labels.get(label))
}

#[test]
fn escapes_are_not_decoded() {
    let text = r#"foo{quote="a\"b",path="C:\\DIR"} 1"#;
    let t = theirs(text);
    assert_eq!(their_label(&t, "foo", "quote"), Some(r#"a\"b"#));
    assert_eq!(their_label(&t, "foo", "path"), Some(r"C:\\DIR"));

    let ours = prom::parse(text).unwrap();
    assert_eq!(ours.samples[0].label("quote"), Some("a\"b"));
    assert_eq!(ours.samples[0].label("path"), Some(r"C:\DIR"));
}

#[test]
fn a_value_ending_in_an_escaped_quote_keeps_a_stray_backslash() {
    let text = r#"foo{a="say \"hi\""} 1"#;
    let t = theirs(text);
    assert_eq!(their_label(&t, "foo", "a"), Some(r#"say \"hi\"#));
    assert_eq!(
        prom::parse(text).unwrap().samples[0].label("a"),
        Some(r#"say "hi""#)
    );
}

#[test]
fn commas_and_equals_inside_values_break_labels() {
    let text = r#"foo{a="x,y",b="k=v",c="z"} 1"#;
    let t = theirs(text);
    assert_eq!(
        their_label(&t, "foo", "a"),
        Some("x"),
        "truncated at the comma"
    );
    assert_eq!(
        their_label(&t, "foo", "b"),
        None,
        "dropped: value contains '='"
    );
    assert_eq!(their_label(&t, "foo", "c"), Some("z"));

    let ours = prom::parse(text).unwrap();
    assert_eq!(ours.samples[0].label("a"), Some("x,y"));
    assert_eq!(ours.samples[0].label("b"), Some("k=v"));
}

#[test]
fn samples_are_dropped_entirely() {
    for text in [
        r#"foo{a="}"} 1"#,
        "foo{} 1",
        "foo:bar 1",
        r#"job:rate5m{a="b"} 2"#,
    ] {
        assert!(
            theirs(text).samples.is_empty(),
            "{text}: prometheus-parse now keeps it"
        );
        assert_eq!(prom::parse(text).unwrap().samples.len(), 1, "{text}");
    }
}

#[test]
fn blank_after_comma_becomes_part_of_the_label_name() {
    let text = r#"foo{a="1", b="2"} 1"#;
    let t = theirs(text);
    assert_eq!(their_label(&t, "foo", " b"), Some("2"));
    assert_eq!(their_label(&t, "foo", "b"), None);
    assert_eq!(prom::parse(text).unwrap().samples[0].label("b"), Some("2"));
}

#[test]
fn histogram_sum_and_count_are_untyped() {
    let text =
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    let t = theirs(text);
    let count = t.samples.iter().find(|s| s.metric == "h_count").unwrap();
    assert!(matches!(count.value, Value::Untyped(v) if v == 2.0));
    let sum = t.samples.iter().find(|s| s.metric == "h_sum").unwrap();
    assert!(matches!(sum.value, Value::Untyped(v) if v == 3.0));

    let ours = prom::parse(text).unwrap();
    assert_eq!(
        ours.family_of("h_count").unwrap().metric_type,
        prom::MetricType::Histogram
    );
    assert_eq!(
        ours.family_of("h_sum").unwrap().metric_type,
        prom::MetricType::Histogram
    );
}

#[test]
fn jupyter_server_handler_label_keeps_its_escapes() {
    let text = concat!(
        "# TYPE http_request_duration_seconds histogram\n",
        r#"http_request_duration_seconds_bucket{handler="/api/kernels/(?P<kernel_id>\\w+-\\w+)",le="0.005",method="GET"} 3.0"#,
        "\n"
    );
    let t = theirs(text);
    let handler = t.samples[0].labels.get("handler");
    assert_eq!(handler, Some(r"/api/kernels/(?P<kernel_id>\\w+-\\w+)"));
    assert_eq!(
        prom::parse(text).unwrap().samples[0].label("handler"),
        Some(r"/api/kernels/(?P<kernel_id>\w+-\w+)")
    );
}

#[test]
fn garbage_is_silently_skipped() {
    let text = "good 1\nthis is garbage\nfoo{a=\"b\" 1\nalso_good 2\n";
    let t = theirs(text);
    let names: Vec<_> = t.samples.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(names, ["good", "also_good"]);
    assert_eq!(prom::parse(text).unwrap_err().line, 2);
}
